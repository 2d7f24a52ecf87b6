"""Turn files and fetched bodies into :class:`bot.types.Document` values.

Supported: Markdown, HTML (main content only, as Markdown: knowledge/html.py), plain text (.txt, .rst,
no extension; AsciiDoc sources read as Markdown: knowledge/asciidoc.py), PDF (pypdf, one section per page), DOCX (python-docx, ``Heading N`` styles)
and BEIR-style JSONL corpora (one document per line). Every problem with one input is a
:class:`bot.errors.SourceError` whose ``reason`` is one short line; nothing else escapes.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import yaml
from markdown_it import MarkdownIt

from bot.errors import SourceError
from bot.types import PUBLIC, Document, Section

__all__ = ["SUPPORTED_SUFFIXES", "iter_documents", "load_bytes", "load_file"]

_KIND_BY_SUFFIX = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".rst": "text",
    "": "text",
    ".pdf": "pdf",
    ".docx": "docx",
    ".jsonl": "jsonl",
}
SUPPORTED_SUFFIXES = frozenset(_KIND_BY_SUFFIX)

_KIND_BY_CONTENT_TYPE = {
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "text",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
}

# UTF-32 before UTF-16: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
# Unicode category Cc less the whitespace ones (tab, LF, VT, FF, CR): junk in text, and a
# sign of binary data when there is much of it.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_HEADING_STYLE = re.compile(r"heading ?([1-9])", re.I)
_MARKDOWN = MarkdownIt("commonmark")


class _Unreadable(Exception):
    """Raised by the parsers with a reason; the public functions add the path."""


@dataclass(frozen=True)
class _Parsed:
    title: str | None
    sections: tuple[Section, ...]


# --- public API ------------------------------------------------------------------------------


def load_file(
    path: Path,
    *,
    source: str,
    root: Path | None = None,
    access: tuple[str, ...] = (PUBLIC,),
    max_bytes: int,
) -> list[Document]:
    """Load one file into documents (several for a JSONL corpus, else exactly one).

    The id is ``f"{source}:{relpath}"`` with ``relpath`` taken from ``root`` (the absolute
    path when ``root`` is None or does not contain ``path``); JSONL documents keep their
    ``_id``. ``max_bytes`` limits the file, or each line of a JSONL corpus, whose documents
    are the lines. Raises :class:`SourceError` (never anything else) for unreadable input.
    """
    where = str(path)
    kind = _KIND_BY_SUFFIX.get(path.suffix.lower())
    if kind is None:
        raise SourceError(where, f"unsupported file type {path.suffix.lower()}")
    try:
        stat = path.stat()
        if kind != "jsonl" and stat.st_size > max_bytes:
            raise SourceError(where, f"larger than the {_size(max_bytes)} limit")
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(where, f"cannot read: {exc.strerror or exc}") from None
    # abspath, not resolve(): a symlinked file keeps the id of where it is linked from.
    absolute = Path(os.path.abspath(path))
    try:
        relpath = absolute.relative_to(os.path.abspath(root)).as_posix() if root else absolute.as_posix()
    except ValueError:
        relpath = absolute.as_posix()
    return _documents(
        data,
        kind=kind,
        where=where,
        doc_id=f"{source}:{relpath}",
        url=absolute.as_uri(),
        fallback_title=path.stem or path.name,
        source=source,
        access=access,
        updated_at=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
        max_line_bytes=max_bytes,
    )


def load_bytes(
    data: bytes,
    *,
    name: str,
    url: str,
    source: str,
    content_type: str | None = None,
    access: tuple[str, ...] = (PUBLIC,),
    updated_at: datetime | None = None,
) -> list[Document]:
    """Load fetched content (a web page, an API body) into documents.

    The parser is chosen by ``content_type`` (its ``charset`` is honoured for text), else by
    the suffix of ``name``. The id is ``f"{source}:{url}"``; the size limit is the fetcher's
    job. Raises :class:`SourceError` naming ``url`` (never anything else) for unreadable input.
    """
    mime, _, params = (content_type or "").partition(";")
    mime = mime.strip().lower()
    suffix = PurePosixPath(name).suffix.lower()
    if not mime or mime == "application/octet-stream":  # no real content type: trust the name
        kind = _KIND_BY_SUFFIX.get(suffix)
        if kind is None:
            raise SourceError(url, f"unsupported file type {suffix}")
    else:
        kind = _KIND_BY_CONTENT_TYPE.get(mime) or ("text" if mime.startswith("text/") else None)
        if kind is None:
            raise SourceError(url, f"unsupported content type {mime}")
    charset = re.search(r"charset=\"?([\w.:-]+)", params, re.I)
    stem = PurePosixPath(name).stem
    return _documents(
        data,
        kind=kind,
        where=url,
        doc_id=f"{source}:{url}",
        url=url,
        fallback_title=stem or name,
        source=source,
        access=access,
        updated_at=updated_at,
        charset=charset.group(1) if charset else None,
    )


def iter_documents(
    paths: Sequence[Path],
    *,
    source: str,
    access: tuple[str, ...] = (PUBLIC,),
    max_bytes: int,
) -> Iterator[Document | SourceError]:
    """Yield the documents under ``paths``, and a :class:`SourceError` for each bad file.

    Directories are walked recursively in sorted order, skipping hidden files and folders
    and Office lock files (``~$*``); ids are relative to the directory given (to the parent
    for a file given directly). Files of unsupported types are reported, not skipped, so a
    missing format is visible. Never raises for one bad file.
    """
    for top in paths:
        if top.is_dir():
            walk_errors: list[OSError] = []
            for dirpath, dirnames, filenames in os.walk(top, onerror=walk_errors.append):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for filename in sorted(filenames):
                    if not filename.startswith((".", "~$")):
                        yield from _load_or_error(Path(dirpath, filename), source, top, access, max_bytes)
            for err in walk_errors:
                yield SourceError(str(err.filename or top), f"cannot read: {err.strerror or err}")
        elif top.exists():
            yield from _load_or_error(top, source, top.parent, access, max_bytes)
        else:
            yield SourceError(str(top), "no such file or directory")


# --- plumbing --------------------------------------------------------------------------------


def _load_or_error(
    path: Path, source: str, root: Path, access: tuple[str, ...], max_bytes: int
) -> Iterator[Document | SourceError]:
    try:
        yield from load_file(path, source=source, root=root, access=access, max_bytes=max_bytes)
    except SourceError as exc:
        yield exc


def _documents(
    data: bytes,
    *,
    kind: str,
    where: str,
    doc_id: str,
    url: str,
    fallback_title: str,
    source: str,
    access: tuple[str, ...],
    updated_at: datetime | None,
    charset: str | None = None,
    max_line_bytes: int | None = None,
) -> list[Document]:
    def make(doc_id: str, url: str, parsed: _Parsed) -> Document:
        title = " ".join((parsed.title or "").split())
        return Document(
            id=doc_id,
            source=source,
            title=title,
            sections=parsed.sections,
            url=url,
            content_hash=_content_hash(title, parsed.sections),
            updated_at=updated_at,
            access=access,
        )

    try:
        if not data.strip():
            raise _Unreadable("empty file")
        if kind == "jsonl":
            return [
                make(_id, f"{url}#{quote(_id, safe='')}", parsed)
                for _id, parsed in _parse_jsonl(_decode(data, charset), max_line_bytes)
            ]
        parsed = _PARSERS[kind](data, charset)
        if not parsed.sections:
            raise _Unreadable("no text found")
        return [make(doc_id, url, _Parsed(parsed.title or fallback_title, parsed.sections))]
    except _Unreadable as exc:
        raise SourceError(where, str(exc)) from None


def _size(n: int) -> str:
    """Format a byte limit the way it was most likely configured (50 MB, 100 KB, 10 bytes)."""
    for unit, factor in (("MB", 1 << 20), ("MB", 10**6), ("KB", 1 << 10), ("KB", 10**3)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n} bytes"


def _content_hash(title: str, sections: tuple[Section, ...]) -> str:
    digest = hashlib.sha256(title.encode())
    for section in sections:
        digest.update(b"\x00" + " > ".join(section.heading_path).encode() + b"\x00" + section.text.encode())
    return digest.hexdigest()


def _clean(text: str) -> str:
    """Normalise extracted text: NFC, no control characters, paragraphs split by one blank line."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text.replace("\f", "\n\n").replace("\v", "\n"))  # FF: a page break
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _sections(pairs: list[tuple[tuple[str, ...], list[str]]]) -> tuple[Section, ...]:
    """Build sections from (heading path, blocks), dropping the empty ones."""
    out = []
    for path, blocks in pairs:
        text = "\n\n".join(b for b in (_clean(b) for b in blocks) if b)
        if text:
            out.append(Section(heading_path=path, text=text))
    return tuple(out)


def _decode(data: bytes, charset: str | None = None) -> str:
    """Decode text: a BOM wins, then the declared charset, UTF-8, and cp1252/latin-1 if plausible."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _nonempty(data.decode(encoding))
            except UnicodeDecodeError:
                raise _Unreadable(f"not valid {encoding.upper()} text") from None
    if b"\x00" in data:
        raise _Unreadable("binary file, not text")
    for encoding in filter(None, (charset, "utf-8")):
        try:
            text = data.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
        if _control_ratio(text) > 0.05:
            raise _Unreadable("binary file, not text")
        return _nonempty(text)
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        # Legacy 8-bit text is mostly ASCII with a few accented letters; anything else is
        # more likely binary or another encoding that would decode to mojibake.
        sample = text[:65536]
        if _control_ratio(sample) <= 0.01 and sum(c.isascii() for c in sample) >= 0.7 * len(sample):
            return _nonempty(text)
    raise _Unreadable("not UTF-8 text")


def _nonempty(text: str) -> str:
    if not text.strip():
        raise _Unreadable("empty file")
    return text


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _control_ratio(text: str) -> float:
    return len(_CONTROL.findall(text, 0, 65536)) / max(min(len(text), 65536), 1)


# --- parsers ---------------------------------------------------------------------------------


def _parse_text(data: bytes, charset: str | None) -> _Parsed:
    from knowledge.asciidoc import asciidoc_to_markdown, looks_like_asciidoc

    text = _decode(data, charset)
    if looks_like_asciidoc(text):
        # AsciiDoc sources (git's own docs ship as .txt) read like the HTML rendered from them.
        return _parse_markdown(asciidoc_to_markdown(text), None)
    return _Parsed(None, _sections([((), [text])]))


def _parse_markdown(data: bytes | str, charset: str | None) -> _Parsed:
    text = _decode(data, charset) if isinstance(data, bytes) else data
    text = text.replace("\r\n", "\n")
    title: str | None = None
    if front := _FRONT_MATTER.match(text):
        text = text[front.end() :]
        try:
            # BaseLoader builds only strings, lists and dicts: a bad date elsewhere cannot fail it.
            meta = yaml.load(front.group(1), Loader=yaml.BaseLoader)
        except (yaml.YAMLError, RecursionError):  # optional metadata: bad YAML only loses the title
            meta = None
        if isinstance(meta, dict) and isinstance(meta.get("title"), str):
            title = meta["title"].strip() or None
    lines = text.split("\n")
    stack: list[tuple[int, str]] = []  # (level, heading) of the enclosing headings
    pairs: list[tuple[tuple[str, ...], list[str]]] = [((), [])]
    tokens = _MARKDOWN.parse(text)
    for i, token in enumerate(tokens):
        if token.level != 0 or token.map is None or token.nesting == -1:
            continue
        if token.type == "heading_open":
            level = int(token.tag[1])
            inline = tokens[i + 1].children or []
            # Plain heading text: inline markup (emphasis, link targets) is dropped.
            heading = " ".join("".join(c.content or " " for c in inline).split())
            title = title or (heading if level == 1 else None)
            stack = [(lvl, h) for lvl, h in stack if lvl < level] + [(level, heading)]
            pairs.append((tuple(h for _, h in stack), []))
        elif token.type != "hr" and not token.content.lstrip().startswith("<!--"):
            pairs[-1][1].append("\n".join(lines[token.map[0] : token.map[1]]))
    return _Parsed(title, _sections(pairs))


def _parse_html(data: bytes, charset: str | None) -> _Parsed:
    from knowledge.html import html_to_markdown

    # lxml sniffs the charset of bytes itself (meta tags included) but not BOMs.
    html: bytes | str = data
    if charset or any(data.startswith(bom) for bom, _ in _BOMS):
        html = _decode(data, charset)
    elif b"\x00" in data:
        raise _Unreadable("binary file, not text")
    try:
        # Markdown keeps headings, code blocks, lists and tables; its parser builds the sections.
        title, markdown = html_to_markdown(html)
    except Exception as exc:  # a parser on untrusted input: any failure is bad input
        raise _Unreadable(f"not readable HTML: {_one_line(exc)}") from None
    if not markdown.strip():
        raise _Unreadable("no main content found in the HTML")
    parsed = _parse_markdown(markdown, None)
    return _Parsed(title or parsed.title, parsed.sections)


def _parse_pdf(data: bytes, charset: str | None) -> _Parsed:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise _Unreadable("encrypted PDF")
        title = reader.metadata.title if reader.metadata else None
        pages = [page.extract_text() or "" for page in reader.pages]
    except _Unreadable:
        raise
    except Exception as exc:  # pypdf raises many types on corrupt files; all mean the same here
        raise _Unreadable(f"not a readable PDF: {_one_line(exc)}") from None
    pairs: list[tuple[tuple[str, ...], list[str]]] = []
    for number, page in enumerate(pages, 1):
        # PDF text has hard line breaks: join lines (and words hyphenated across them)
        # so that a paragraph is one line and sentences can be found in it.
        paragraphs = [re.sub(r"(\w)-\n(\w)", r"\1\2", p) for p in re.split(r"\n\s*\n", page)]
        pairs.append(((f"Page {number}",), [" ".join(p.split()) for p in paragraphs]))
    sections = _sections(pairs)
    if not sections:
        raise _Unreadable("no text layer (scanned PDF?)")
    return _Parsed(title.strip() if isinstance(title, str) else None, sections)


def _parse_docx(data: bytes, charset: str | None) -> _Parsed:
    import docx
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
        title = document.core_properties.title or None
        stack: list[tuple[int, str]] = []
        pairs: list[tuple[tuple[str, ...], list[str]]] = [((), [])]
        for block in document.iter_inner_content():
            if isinstance(block, Paragraph):
                style = block.style.name if block.style is not None else ""
                text = block.text.strip()
                if not text:
                    continue
                if style == "Title":
                    title = title or text
                elif heading := _HEADING_STYLE.fullmatch(style or ""):
                    level = int(heading.group(1))
                    stack = [(lvl, h) for lvl, h in stack if lvl < level] + [(level, text)]
                    pairs.append((tuple(h for _, h in stack), []))
                else:
                    pairs[-1][1].append(text)
            else:  # a table: one row a line, so that it stays one paragraph
                # Merged cells repeat in row.cells: keep one copy of consecutive equal cells.
                rows = (groupby(c.text.strip() for c in row.cells) for row in block.rows)
                pairs[-1][1].append("\n".join(" | ".join(k for k, _ in row) for row in rows))
    except Exception as exc:  # zip, XML and OPC errors on a corrupt file all mean the same here
        raise _Unreadable(f"not a readable DOCX: {_one_line(exc)}") from None
    return _Parsed(title, _sections(pairs))


def _parse_jsonl(text: str, max_line_bytes: int | None) -> Iterator[tuple[str, _Parsed]]:
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if max_line_bytes is not None and len(line.encode()) > max_line_bytes:
            raise _Unreadable(f"line {lineno}: larger than the {_size(max_line_bytes)} limit")
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            raise _Unreadable(f"line {lineno}: not valid JSON") from None
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("_id"), str | int)
            or not isinstance(record.get("text", ""), str)
            or not isinstance(record.get("title", ""), str | None)
        ):
            raise _Unreadable(f'line {lineno}: expected an object with "_id", "title" and "text"')
        title = (record.get("title") or "").strip()
        # A record with a title but no text is still findable by its title.
        if sections := _sections([((), [record.get("text") or title])]):
            yield str(record["_id"]), _Parsed(title, sections)


_PARSERS: dict[str, Callable[[bytes, str | None], _Parsed]] = {
    "markdown": _parse_markdown,
    "text": _parse_text,
    "html": _parse_html,
    "pdf": _parse_pdf,
    "docx": _parse_docx,
}
