"""HTML to Markdown that keeps what an answer needs: headings, code, lists and tables.

Only the page's main content is kept: ``<main>`` (or ``role="main"``, a single ``<article>``)
when the page marks it, else the body; navigation, page headers and footers,
sidebars, forms, cookie and consent banners and tables of contents are removed even on a
small page, by element (``nav``, ``header``, ``footer``, ``aside``), by ARIA role, and by
class or id words (``navbar``, ``sidebar``, ``cookie``, ``breadcrumb``, …).

What comes out is the Markdown subset the rest of the pipeline reads: ``#`` headings,
paragraphs, fenced code blocks from ``<pre>`` (a ``#`` line inside ``<pre>`` stays code),
inline code from ``<code>``/``<kbd>``/``<tt>``, ``-``/``1.`` list items from ``<li>``,
definition lists (AsciiDoc's option lists) as ``- **term**: text`` items, and tables as
``|`` rows. A table that lays a page out rather than holding data (a cell with a heading,
code, a list or several paragraphs: DocBook's FAQ pages, old manuals) gives its cells' blocks
in order instead, so its headings stay headings. Links keep their text only.
"""

from __future__ import annotations

import re

import lxml.html
from lxml import etree

__all__ = ["html_to_markdown"]

_DROP_TAGS = frozenset(
    ["script", "style", "noscript", "template", "svg", "canvas", "nav", "header", "footer", "aside", "form", "button", "iframe", "dialog", "select", "input", "textarea", "object", "embed"]
)
_DROP_ROLES = frozenset(["navigation", "banner", "contentinfo", "complementary", "search", "dialog", "alertdialog", "menu", "menubar"])
# Words in a class or id that mark page furniture, not content ("linenos": the line-number
# gutter of a highlighted code block, Sphinx's and MkDocs').
_FURNITURE = frozenset(
    ["nav", "navbar", "navigation", "menu", "menubar", "breadcrumb", "breadcrumbs", "sidebar", "side-bar", "sidenav", "toc", "footer", "cookie", "cookies", "consent", "gdpr", "skip", "skiplink", "social", "share", "sharing", "pagination", "linenos", "lineno"]
)
_BLOCK_TAGS = frozenset(
    ["p", "div", "section", "article", "main", "body", "html", "blockquote", "figure", "figcaption", "center", "details", "summary", "address", "hgroup", "fieldset"]
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_SPACE = re.compile(r"\s+")
_BR = "\ue000"  # a <br> while whitespace is collapsed (a private-use character)


def html_to_markdown(html: bytes | str) -> tuple[str | None, str]:
    """(title, Markdown) of a page's main content. Raises ``ValueError`` for unparsable input."""
    try:
        doc = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError) as exc:
        raise ValueError(str(exc) or "empty document") from None
    page_title = doc.findtext(".//title")
    root = _main(doc)
    _strip_furniture(root)
    blocks: list[str] = []
    _blocks(root, blocks)
    markdown = "\n\n".join(b for b in blocks if b.strip())
    first_h1 = next((el for el in root.iter("h1")), None)
    title = _inline(first_h1).strip() if first_h1 is not None else None
    if not title and page_title:
        title = " ".join(page_title.split())
    return title or None, markdown


def _main(doc: lxml.html.HtmlElement) -> lxml.html.HtmlElement:
    for query in ("//main", "//*[@role='main']"):
        found = doc.xpath(query)
        if found:
            return found[0]
    articles = doc.xpath("//article")
    if len(articles) == 1:
        return articles[0]
    body = doc.find("body")
    return body if body is not None else doc


# The text of a heading's permalink (Sphinx and MkDocs "¶", Docusaurus' zero-width "#").
_PERMALINK_TEXT = frozenset(("", "¶", "#", "§", "🔗", "\u200b", "\u200b#"))


def _is_permalink(el: lxml.html.HtmlElement, tag: str) -> bool:
    """An in-page link that only marks where a heading is ("Installation¶")."""
    if tag != "a" or not (el.get("href") or "").startswith("#"):
        return False
    return "headerlink" in (el.get("class") or "") or "".join(el.itertext()).strip() in _PERMALINK_TEXT


def _is_furniture(el: lxml.html.HtmlElement) -> bool:
    tag = el.tag if isinstance(el.tag, str) else ""
    if tag in _DROP_TAGS or _is_permalink(el, tag):
        return True
    if (el.get("role") or "").lower() in _DROP_ROLES:
        return True
    if el.get("hidden") is not None or (el.get("aria-hidden") or "").lower() == "true":
        return True
    words = set(re.split(r"[\s_]+", f"{el.get('class') or ''} {el.get('id') or ''}".lower()))
    words |= {part for w in list(words) for part in w.split("-")}
    return bool(words & _FURNITURE)


def _strip_furniture(root: lxml.html.HtmlElement) -> None:
    for el in list(root.iter()):
        if el is root or not isinstance(el.tag, str):
            if not isinstance(el.tag, str) and el.getparent() is not None:  # comments, processing instructions
                _remove(el)
            continue
        if el.getparent() is not None and _is_furniture(el):
            _remove(el)


def _remove(el: lxml.html.HtmlElement) -> None:
    """Remove ``el`` but keep the text that follows it (lxml stores it on the element as tail)."""
    parent = el.getparent()
    if parent is None:
        return
    tail = el.tail
    if tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(el)


def _inline(el: lxml.html.HtmlElement, code: bool = False) -> str:
    """The text of ``el`` with inline code as `code`, whitespace collapsed (not inside code)."""
    parts: list[str] = [el.text or ""]
    for child in el:
        if not isinstance(child.tag, str):
            parts.append(child.tail or "")
            continue
        tag = child.tag
        if tag == "br":
            parts.append(_BR)
        elif tag in ("code", "kbd", "tt", "samp") and not code:
            inner = "".join(child.itertext())
            inner = " ".join(inner.split())
            if inner:
                tick = "``" if "`" in inner else "`"
                parts.append(f"{tick}{inner}{tick}")
        elif tag == "img":
            parts.append(child.get("alt") or "")
        else:
            parts.append(_inline(child, code))
        parts.append(child.tail or "")
    text = "".join(parts)
    return text if code else _SPACE.sub(" ", text)


def _line(text: str) -> str:
    """One paragraph's text: whitespace collapsed, a ``<br>`` kept as a line break."""
    return "\n".join(" ".join(part.split()) for part in text.split(_BR)).strip()


def _fence(code: str) -> str:
    code = code.strip("\n").rstrip()
    fence = "~~~~" if "```" in code else "```"
    return f"{fence}\n{code}\n{fence}"


def _has_blocks(el: lxml.html.HtmlElement) -> bool:
    return any(
        isinstance(c.tag, str) and (c.tag in _BLOCK_TAGS or c.tag in ("pre", "ul", "ol", "dl", "table") or c.tag in _HEADINGS)
        for c in el.iter()
        if c is not el
    )


def _blocks(el: lxml.html.HtmlElement, out: list[str]) -> None:
    """Append the Markdown blocks of ``el``'s content to ``out``."""
    tag = el.tag if isinstance(el.tag, str) else ""
    if tag in _HEADINGS:
        text = _line(_inline(el))
        if text:
            out.append("#" * _HEADINGS[tag] + " " + text)
        return
    if tag == "pre":
        code = "".join(el.itertext())
        if code.strip():
            out.append(_fence(code))
        return
    if tag in ("ul", "ol"):
        out.append(_list(el))
        return
    if tag == "dl":
        out.append(_definitions(el))
        return
    if tag == "table":
        out.append(_table(el))
        return
    if tag == "hr":
        return
    # A block container: runs of inline content become paragraphs, block children recurse.
    run: list[str] = [el.text or ""]

    def flush() -> None:
        paragraph = _literal(re.sub(r"\n{2,}", "\n", _line("".join(run))))
        if paragraph:
            out.append(paragraph)
        run.clear()

    for child in el:
        if not isinstance(child.tag, str):
            run.append(child.tail or "")
            continue
        if child.tag in _BLOCK_TAGS or child.tag in _HEADINGS or child.tag in ("pre", "ul", "ol", "dl", "table", "hr"):
            flush()
            _blocks(child, out)
        else:
            run.append(_inline_element(child))
        run.append(child.tail or "")
    flush()


# A paragraph line the Markdown reader would take for a heading ("# of seats", "#1 rule").
_HEADING_LIKE = re.compile(r"^(#{1,6})(?=\s|$)", re.MULTILINE)


# A line of a paragraph that Markdown would take for a code fence: "~~~~" under a title in a
# plain-text README shown as HTML is decoration; a line starting with ``` is page text.
_TILDE_RULE = re.compile(r"^~{3,}[ \t]*\n?", re.MULTILINE)
_FENCE_LIKE = re.compile(r"^(`{3,})", re.MULTILINE)


def _literal(paragraph: str) -> str:
    """``paragraph`` as page text for Markdown: a leading ``#`` escaped (not a heading), a
    fence-like line escaped or, when it is only tildes, dropped (not the start of code)."""
    paragraph = _TILDE_RULE.sub("", paragraph).strip("\n")
    return _FENCE_LIKE.sub(r"\\\1", _HEADING_LIKE.sub(r"\\\1", paragraph))


def _inline_element(el: lxml.html.HtmlElement) -> str:
    tag = el.tag
    if tag == "br":
        return _BR
    if tag in ("code", "kbd", "tt", "samp"):
        inner = " ".join("".join(el.itertext()).split())
        tick = "``" if "`" in inner else "`"
        return f"{tick}{inner}{tick}" if inner else ""
    if tag == "img":
        return el.get("alt") or ""
    return _inline(el)


def _item_blocks(el: lxml.html.HtmlElement) -> list[str]:
    blocks: list[str] = []
    if _has_blocks(el):
        _blocks(el, blocks)
    else:
        text = _line(_inline(el))
        if text:
            blocks.append(text)
    return blocks


def _indent(block: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else line for line in block.split("\n"))


def _list(el: lxml.html.HtmlElement) -> str:
    ordered = el.tag == "ol"
    items: list[str] = []
    n = int(el.get("start") or 1) if (el.get("start") or "1").isdigit() else 1
    for li in el:
        if not isinstance(li.tag, str) or li.tag != "li":
            continue
        blocks = _item_blocks(li)
        marker = f"{n}. " if ordered else "- "
        n += 1
        if not blocks:
            continue
        first, rest = blocks[0], blocks[1:]
        if first.startswith(("```", "~~~~")):
            first, rest = "", blocks
        item = marker + first.replace("\n", " ") if first else marker.rstrip()
        for block in rest:
            item += "\n" + _indent(block, " " * len(marker))
        items.append(item)
    return "\n".join(items)


def _definitions(el: lxml.html.HtmlElement) -> str:
    """A definition list (AsciiDoc's option and example lists) as ``- **term**: text`` items."""
    items: list[str] = []
    terms: list[str] = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if child.tag == "dt":
            terms.append(_line(_inline(child)))
        elif child.tag == "dd":
            term = ", ".join(t for t in terms if t)
            terms = []
            blocks = _item_blocks(child)
            if blocks and not blocks[0].startswith(("```", "~~~~", "- ", "1. ", "|")):
                head = f"- **{term}**: {blocks[0]}" if term else f"- {blocks[0]}"
                rest = blocks[1:]
            else:
                head = f"- **{term}**:" if term else "-"
                rest = blocks
            items.append("\n".join([head, *(_indent(b, "  ") for b in rest)]))
    items.extend(f"- **{t}**" for t in terms if t)
    return "\n".join(items)


_LAYOUT_BLOCKS = frozenset(("pre", "ul", "ol", "dl", "table", *_HEADINGS))


def _is_layout(el: lxml.html.HtmlElement) -> bool:
    """A table used to lay a page out (DocBook's FAQ, old manuals), not to hold data: a cell
    holds a heading, code, a list, another table or more than one paragraph."""
    for cell in el.iter("td", "th"):
        if any(isinstance(c.tag, str) and c.tag in _LAYOUT_BLOCKS for c in cell.iter() if c is not cell):
            return True
        if sum(1 for c in cell if isinstance(c.tag, str) and c.tag == "p") > 1:
            return True
    return False


def _layout(el: lxml.html.HtmlElement) -> list[str]:
    """A layout table's cells as the blocks they hold, row by row; a short first cell ("5.1.",
    "Note:") leads the next cell's first block."""
    out: list[str] = []
    rows = [tr for tr in el.iter("tr") if tr.getparent() is el or tr.getparent().getparent() is el]
    for tr in rows:
        lead = ""
        for cell in (c for c in tr if isinstance(c.tag, str) and c.tag in ("td", "th")):
            blocks = _item_blocks(cell)
            if not blocks:
                continue
            if lead and not blocks[0].startswith(("#", "```", "~~~~", "- ", "|")):
                blocks[0] = f"{lead} {blocks[0]}"
            elif lead:
                out.append(lead)
            lead = ""
            if len(blocks) == 1 and len(blocks[0].split()) <= 3 and not blocks[0].startswith(("#", "```", "~~~~")):
                lead = blocks[0]
                continue
            out.extend(blocks)
        if lead:
            out.append(lead)
    return out


def _table(el: lxml.html.HtmlElement) -> str:
    if _is_layout(el):
        return "\n\n".join(_layout(el))
    rows: list[list[str]] = []
    header = False
    for tr in el.iter("tr"):
        cells = [c for c in tr if isinstance(c.tag, str) and c.tag in ("td", "th")]
        if not cells:
            continue
        if not rows and all(c.tag == "th" for c in cells):
            header = True
        rows.append([_line(_inline(c)).replace("|", "\\|") for c in cells])
    if not rows:
        return ""
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    if header and len(rows) > 1:
        lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines)
