"""AsciiDoc sources (often shipped as ``.txt``) read as the Markdown subset the pipeline uses.

Only what changes how a passage reads is converted: two-line and ``==`` headings, delimited
listing and literal blocks (``----``, ``....``) to fenced code, ``term::`` definition lists to
``- **term**:`` items, ``linkgit:git-x[1]`` to ``git-x(1)``, ``'emphasis'`` to plain text,
list continuations (``+``) to blank lines; attribute, anchor, ``ifdef``/``include`` and block
attribute lines are dropped. Anything else is left as it is.
"""

from __future__ import annotations

import re

__all__ = ["asciidoc_to_markdown", "looks_like_asciidoc"]

_UNDERLINE = {"=": 1, "-": 2, "~": 3, "^": 4, "+": 5}
_ONE_LINE_HEADING = re.compile(r"^(={1,6})\s+(\S.*?)\s*=*$")
_DELIMITER = re.compile(r"^(-{4,}|\.{4,})\s*$")
_DIRECTIVE = re.compile(
    r"^(?:\[\[.*\]\]|\[[\w ,=\"'.-]*\]|:[\w-]+:.*|(?:ifdef|ifndef|endif|include|ifeval)::.*\[.*\]|//.*)\s*$"
)
_TERM = re.compile(r"^(\S.*?)(::|;;)(?:\s+(.*))?$")
_LINKGIT = re.compile(r"linkgit:([\w.-]+)\[(\d)\]")
_LINK = re.compile(r"\b(?:link|https?):(\S+?)\[([^\]]*)\]")
_EMPHASIS = re.compile(r"(?<![\w'])'([^'\n]+?)'(?![\w'])")
_ATTRIBUTE = {"{litdd}": "--", "{tilde}": "~", "{caret}": "^", "{startsb}": "[", "{endsb}": "]", "{plus}": "+"}


def looks_like_asciidoc(text: str) -> bool:
    """A two-line title (``Title`` over ``=====``), or ``linkgit:`` macros, near the start."""
    head = text[:4000]
    if "linkgit:" in head:
        return True
    lines = head.split("\n")
    for a, b in zip(lines, lines[1:], strict=False):
        if a.strip() and re.fullmatch(r"(=+|-+)", b.strip()) and abs(len(b.strip()) - len(a.strip())) <= 2:
            return len(a.strip()) >= 3 and b.strip()[0] == "="
    return False


def _inline(line: str) -> str:
    for name, value in _ATTRIBUTE.items():
        line = line.replace(name, value)
    line = _LINKGIT.sub(r"\1(\2)", line)
    line = _LINK.sub(lambda m: m.group(2) or m.group(1), line)
    return _EMPHASIS.sub(r"\1", line)


def asciidoc_to_markdown(text: str) -> str:
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    in_code = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if in_code:
            if stripped == in_code:
                out.append("```")
                in_code = ""
            else:
                out.append(line.replace("\t", "    "))
            i += 1
            continue
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if (
            re.search(r"[^\W_]", stripped)
            and nxt
            and nxt[0] in _UNDERLINE
            and set(nxt) == {nxt[0]}
            and abs(len(nxt) - len(stripped)) <= 2
            and len(nxt) >= 2
        ):
            out.extend(["", "#" * _UNDERLINE[nxt[0]] + " " + _inline(stripped), ""])
            i += 2
            continue
        heading = _ONE_LINE_HEADING.match(stripped)
        if heading:
            out.extend(["", "#" * len(heading.group(1)) + " " + _inline(heading.group(2)), ""])
            i += 1
            continue
        if _DELIMITER.match(stripped):
            out.extend(["", "```"])
            in_code = stripped
            i += 1
            continue
        if _DIRECTIVE.match(stripped):
            i += 1
            continue
        if stripped == "+":
            out.append("")
            i += 1
            continue
        term = _TERM.match(line) if not line[:1].isspace() else None
        if term:
            terms = [_inline(term.group(1).strip())]
            rest = term.group(3) or ""
            # Several terms in a row share one definition ("-q::" then "--quiet::").
            while not rest and i + 1 < len(lines) and (more := _TERM.match(lines[i + 1])) and not lines[i + 1][:1].isspace():
                terms.append(_inline(more.group(1).strip()))
                rest = more.group(3) or ""
                i += 1
            out.extend(["", f"- **{', '.join(terms)}**:" + (f" {_inline(rest)}" if rest else "")])
            i += 1
            # The definition: the indented lines that follow, joined into the item.
            while i < len(lines) and lines[i][:1] in ("\t", " ") and lines[i].strip():
                out[-1] += " " + _inline(lines[i].strip())
                i += 1
            continue
        out.append(_inline(line))
        i += 1
    if in_code:
        out.append("```")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"
