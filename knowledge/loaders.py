"""Turn files and fetched bodies into :class:`bot.types.Document` values.

Supported: Markdown, HTML (main content only, as Markdown: knowledge/html.py),
reStructuredText (.rst, rendered by docutils and read as HTML: knowledge/rst.py), plain text
(.txt, no extension, and any file whose content is text, such as ``README.Debian``; AsciiDoc
sources read as Markdown: knowledge/asciidoc.py), PDF (pypdf, one section per page), DOCX
(python-docx, ``Heading N`` styles) and BEIR-style JSONL corpora (one document per line); any
of the text formats gzip-compressed (``guide.md.gz``: read by the name inside, refused when
it inflates past the size limit). Every
problem with one input is a :class:`bot.errors.SourceError` whose ``reason`` is one short line;
nothing else escapes. Files left out on purpose (unsupported type, excluded by a pattern or an
ignore file, empty) are :class:`bot.errors.SourceSkipped`, a SourceError that is not a failure.

Which files of a folder are read is decided by :func:`walk_files` with a :class:`FileSelection`
(``--include``/``--exclude`` glob patterns and ``.gitignore``-style ignore files).
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import json
import mimetypes
import os
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from markdown_it import MarkdownIt

from bot.errors import SourceError, SourceSkipped
from bot.identity import document_id
from bot.types import PUBLIC, Document, Section
from knowledge.progress import IngestProgress
from knowledge.sphinx import CODE_ROLES, CONTENT_DIRECTIVES, DROPPED_DIRECTIVES, role_text

__all__ = [
    "SUPPORTED_SUFFIXES",
    "FileEntry",
    "FileSelection",
    "file_kind",
    "iter_documents",
    "load_bytes",
    "load_file",
    "walk_files",
]

_KIND_BY_SUFFIX = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".rst": "rst",
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
    "text/x-rst": "rst",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
}

# The interpreter's built-in table only (not /etc/mime.types): the same answer on every machine.
_MIME = mimetypes.MimeTypes()
# text/* types that are code or styling rather than something a person reads as documentation.
_NOT_PROSE = frozenset({"text/css", "text/javascript", "text/x-python", "text/x-c", "text/x-c++src", "text/x-java"})
_SNIFF_BYTES = 8192

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


class _Empty(_Unreadable):
    """Nothing in the file but whitespace: skipped, not failed."""


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

    The id comes from the source and the file's absolute path (:mod:`bot.identity`;
    ``root`` no longer plays a part: two folders with the same file names give distinct
    documents); a JSONL row's adds its ``_id``. ``max_bytes`` limits the file, or each line
    of a JSONL corpus, whose documents are the lines. Raises :class:`SourceError` (never
    anything else) for unreadable input.
    """
    where = str(path)
    kind = file_kind(path)
    if kind is None:
        raise SourceSkipped(where, _unsupported(path))
    compressed = path.suffix.lower() == ".gz"
    try:
        stat = path.stat()
        if kind != "jsonl" and stat.st_size > max_bytes:
            raise SourceError(where, f"larger than the {_size(max_bytes)} limit")
        data = _gunzip(path, where, max_bytes) if compressed else path.read_bytes()
    except OSError as exc:
        raise SourceError(where, f"cannot read: {exc.strerror or exc}") from None
    # abspath, not resolve(): a symlinked file keeps the id of where it is linked from.
    url = Path(os.path.abspath(path)).as_uri()
    name = Path(path.stem) if compressed else path
    return _documents(
        data,
        kind=kind,
        where=where,
        doc_id=document_id(source, url),
        url=url,
        fallback_title=name.stem or name.name,
        source=source,
        access=access,
        updated_at=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
        max_line_bytes=max_bytes,
    )


def _gunzip(path: Path, where: str, max_bytes: int) -> bytes:
    """The decompressed content of a gzip file, refused past ``max_bytes`` (a small file that
    inflates to gigabytes must not fill the memory)."""
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise SourceError(where, f"not a readable gzip file: {_one_line(exc)}") from None
    if len(data) > max_bytes:
        raise SourceError(where, f"larger than the {_size(max_bytes)} limit once decompressed")
    return data


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
    the suffix of ``name``; a generic ``text/plain`` defers to a ``.md`` or ``.rst`` name. The
    id is ``f"{source}:{url}"`` (a JSONL row's adds its ``_id``, :mod:`bot.identity`); the size
    limit is the fetcher's job. Raises :class:`SourceError` naming ``url`` (never anything else) for unreadable input.
    """
    mime, _, params = (content_type or "").partition(";")
    mime = mime.strip().lower()
    suffix = PurePosixPath(name).suffix.lower()
    if not mime or mime == "application/octet-stream":  # no real content type: trust the name
        kind = _KIND_BY_SUFFIX.get(suffix)
        if kind is None:
            raise SourceSkipped(url, f"unsupported file type {suffix}")
    else:
        kind = _KIND_BY_CONTENT_TYPE.get(mime) or ("text" if mime.startswith("text/") else None)
        if kind is None:
            raise SourceSkipped(url, f"unsupported content type {mime}")
        if kind == "text" and _KIND_BY_SUFFIX.get(suffix) in ("markdown", "rst"):
            kind = _KIND_BY_SUFFIX[suffix]  # raw files (GitHub's among them) serve .md and .rst as text/plain
    charset = re.search(r"charset=\"?([\w.:-]+)", params, re.I)
    stem = PurePosixPath(name).stem
    return _documents(
        data,
        kind=kind,
        where=url,
        doc_id=document_id(source, url),
        url=url,
        fallback_title=stem or name,
        source=source,
        access=access,
        updated_at=updated_at,
        charset=charset.group(1) if charset else None,
    )


def file_kind(path: Path) -> str | None:
    """The parser for a file: by its suffix when we know it, else by its content.

    A suffix the standard MIME table knows (``.png``, ``.zip``, ``.css``) decides; an unknown
    one (``README.Debian``, ``git-p4.README``, ``guide.1``) is decided by the first bytes:
    text (or HTML) is read, binary is not. None means unsupported.
    """
    suffix = path.suffix.lower()
    if suffix == ".gz":
        # Compressed documentation (Debian's /usr/share/doc: "pip_install.rst.gz"): the name
        # inside decides; the content is not sniffed (it would have to be decompressed).
        inner = Path(path.stem)
        kind = _KIND_BY_SUFFIX.get(inner.suffix.lower()) if inner.suffix else None
        return None if kind == "jsonl" else kind
    if suffix in _KIND_BY_SUFFIX:
        return _KIND_BY_SUFFIX[suffix]
    mime, _ = _MIME.guess_type(path.name, strict=False)
    if mime is not None:
        if mime in _KIND_BY_CONTENT_TYPE:
            return _KIND_BY_CONTENT_TYPE[mime]
        return "text" if mime.startswith("text/") and mime not in _NOT_PROSE else None
    return _sniff(path)


def _sniff(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return "text"  # let the loader report why it cannot be read
    if any(head.startswith(bom) for bom, _ in _BOMS):
        return "text"
    if b"\x00" in head:
        return None
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head)  # a cut character is not an error
    except UnicodeDecodeError:
        text = head.decode("cp1252", "replace")
        if sum(c.isascii() for c in text) < 0.7 * max(len(text), 1):
            return None
    if _control_ratio(text) > 0.01:
        return None
    start = text.lstrip()[:64].lower()
    return "html" if start.startswith(("<!doctype html", "<html")) else "text"


def _unsupported(path: Path) -> str:
    return f"unsupported file type {path.suffix.lower() or path.name}"


@dataclass(frozen=True)
class FileSelection:
    """Which files of a folder to read.

    ``include`` and ``exclude`` are glob patterns with ``.gitignore`` semantics, matched
    against the path relative to the folder given: ``*.md`` matches at any depth, ``drafts/``
    a folder, ``docs/**/*.txt`` a path. With ``include`` only matching files are read;
    ``exclude`` wins over ``include``. ``ignore_files`` are read in every folder walked
    (``.gitignore`` style: their patterns apply below the folder that holds them).
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    ignore_files: tuple[str, ...] = (".gitignore", ".supportbotignore")
    _specs: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_text(cls, include: str = "", exclude: str = "", ignore_files: str | None = None) -> FileSelection:
        """From comma-separated option values (a folder source's ``-o include=*.md,*.txt``)."""

        def split(text: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in text.split(",") if p.strip())

        if ignore_files is None:
            return cls(split(include), split(exclude))
        return cls(split(include), split(exclude), split(ignore_files))

    def _spec(self, patterns: tuple[str, ...]) -> object:
        import pathspec

        key = "\n".join(patterns)
        if key not in self._specs:
            self._specs[key] = pathspec.GitIgnoreSpec.from_lines(patterns)
        return self._specs[key]

    def excluded(self, relpath: str, is_dir: bool = False) -> str:
        """Why ``relpath`` (posix, relative to the folder given) is left out, or ""."""
        name = relpath + "/" if is_dir else relpath
        if self.exclude and self._spec(self.exclude).match_file(name):  # type: ignore[attr-defined]
            return "excluded by --exclude"
        if self.include and not is_dir and not self._spec(self.include).match_file(name):  # type: ignore[attr-defined]
            return "not matched by --include"
        return ""


ALL_FILES = FileSelection()


@dataclass(frozen=True)
class FileEntry:
    """A file found under a target: ``skip`` or ``error`` says why it will not be read."""

    path: Path
    root: Path  # the folder given (patterns are relative to it; ids come from the absolute path)
    skip: str = ""
    error: str = ""


class _Ignores:
    """The ignore-file patterns in force in each folder walked (inherited by its subfolders)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.by_dir: dict[str, list[tuple[str, object, str]]] = {}

    def enter(self, dirpath: str, parent: str | None) -> None:
        import pathspec

        specs = list(self.by_dir.get(parent, [])) if parent is not None else []
        for name in self.names:
            try:
                lines = Path(dirpath, name).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            specs.append((dirpath, pathspec.GitIgnoreSpec.from_lines(lines), name))
        self.by_dir[dirpath] = specs

    def match(self, dirpath: str, path: str, is_dir: bool) -> str:
        for base, spec, name in self.by_dir.get(dirpath, []):
            rel = os.path.relpath(path, base).replace(os.sep, "/") + ("/" if is_dir else "")
            if spec.match_file(rel):  # type: ignore[attr-defined]
                return f"ignored by {name}"
        return ""


def walk_files(paths: Sequence[Path], select: FileSelection = ALL_FILES) -> Iterator[FileEntry]:
    """Every file under ``paths`` with the reason it is left out, if it is; cheap (no parsing).

    Folders are walked recursively in sorted order; hidden files and folders and Office lock
    files (``~$*``) are passed over silently; a folder excluded or ignored is one entry (its
    files are not listed). A missing path is an entry with an ``error``.
    """
    for top in paths:
        if top.is_dir():
            walk_errors: list[OSError] = []
            ignores = _Ignores(select.ignore_files)
            for dirpath, dirnames, filenames in os.walk(top, onerror=walk_errors.append):
                ignores.enter(dirpath, os.path.dirname(dirpath) if dirpath != str(top) else None)
                kept = []
                for d in sorted(dirnames):
                    if d.startswith("."):
                        continue
                    full = os.path.join(dirpath, d)
                    rel = Path(full).relative_to(top).as_posix()
                    why = ignores.match(dirpath, full, True) or select.excluded(rel, True)
                    if why:
                        yield FileEntry(Path(full), top, skip=why)
                    else:
                        kept.append(d)
                dirnames[:] = kept
                for filename in sorted(filenames):
                    if filename.startswith((".", "~$")):
                        continue
                    path = Path(dirpath, filename)
                    rel = path.relative_to(top).as_posix()
                    why = ignores.match(dirpath, str(path), False) or select.excluded(rel)
                    yield FileEntry(path, top, skip=why or ("" if file_kind(path) else _unsupported(path)))
            for err in walk_errors:
                yield FileEntry(Path(str(err.filename or top)), top, error=f"cannot read: {err.strerror or err}")
        elif top.exists():
            why = select.excluded(top.name)
            yield FileEntry(top, top.parent, skip=why or ("" if file_kind(top) else _unsupported(top)))
        else:
            yield FileEntry(top, top.parent, error="no such file or directory")


def iter_documents(
    paths: Sequence[Path] | Sequence[FileEntry],
    *,
    source: str,
    access: tuple[str, ...] = (PUBLIC,),
    max_bytes: int,
    select: FileSelection = ALL_FILES,
    progress: IngestProgress | None = None,
) -> Iterator[Document | SourceError]:
    """Yield the documents under ``paths``, a :class:`SourceSkipped` for each file left out and a
    :class:`SourceError` for each bad one.

    ``paths`` are walked by :func:`walk_files` (or are its entries already, e.g. counted up
    front for a progress bar); ids are relative to the directory given (to the parent for a
    file given directly). ``progress`` is told each file as it is read. Never raises for one
    bad file.
    """
    listing: Iterator[FileEntry] = (
        iter(paths)  # type: ignore[arg-type]
        if paths and isinstance(paths[0], FileEntry)
        else walk_files(paths, select)  # type: ignore[arg-type]
    )
    for entry in listing:
        if progress is not None:
            progress.file(str(entry.path))
        if entry.error:
            yield SourceError(str(entry.path), entry.error)
        elif entry.skip:
            yield SourceSkipped(str(entry.path), entry.skip)
        else:
            yield from _load_or_error(entry.path, source, entry.root, access, max_bytes)


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
            raise _Empty("empty file")
        if kind == "jsonl":
            rows = []
            for _id, parsed in _parse_jsonl(_decode(data, charset), max_line_bytes):
                row_url = f"{url}#{quote(_id, safe='')}"
                rows.append(make(document_id(source, row_url), row_url, parsed))
            return rows
        parsed = _PARSERS[kind](data, charset)
        if not parsed.sections:
            raise _Unreadable("no text found")
        return [make(doc_id, url, _Parsed(parsed.title or fallback_title, parsed.sections))]
    except _Empty as exc:
        raise SourceSkipped(where, str(exc)) from None
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
        raise _Empty("empty file")
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
        return _parse_markdown(asciidoc_to_markdown(text), None, raw_html=False)
    return _Parsed(None, _sections([((), [text])]))


def _parse_markdown(data: bytes | str, charset: str | None, *, raw_html: bool = True) -> _Parsed:
    """Sections of Markdown. ``raw_html``: the text is a person's Markdown, whose HTML tags are
    markup (a README's ``<details>``); False for Markdown this loader made from HTML, reST or
    AsciiDoc, where a ``<b>`` left in the text is what the page says."""
    text = _decode(data, charset) if isinstance(data, bytes) else data
    text = text.replace("\r\n", "\n")
    title: str | None = None
    if front := _FRONT_MATTER.match(text):
        import yaml  # here: only files with front matter need it (a re-ingest of plain files starts faster)

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
            if token.markup in ("=", "-") and token.map[1] - token.map[0] > 2:
                # A setext underline makes the whole paragraph above it the heading; in a
                # plain-text README only its last line is ("Compilation" over "-----"): the
                # lines before it stay text of the section they are in.
                pairs[-1][1].append("\n".join(lines[token.map[0] : token.map[1] - 2]))
                last = [n for n, c in enumerate(inline) if c.type in ("softbreak", "hardbreak")]
                inline = inline[last[-1] + 1 :] if last else inline
            # Plain heading text: inline markup (emphasis, link targets) is dropped.
            heading = " ".join("".join(c.content or " " for c in inline).split())
            title = title or (heading if level == 1 else None)
            stack = [(lvl, h) for lvl, h in stack if lvl < level] + [(level, heading)]
            pairs.append((tuple(h for _, h in stack), []))
        elif token.type == "fence" and token.info.startswith("{"):
            if (kept := _myst_directive(token.info, token.content)) is not None:
                pairs[-1][1].append(kept)
        elif token.type in ("fence", "code_block"):
            pairs[-1][1].append("\n".join(lines[token.map[0] : token.map[1]]))
        elif token.type == "html_block" and token.content.lstrip().startswith("<!--"):
            continue
        elif token.type == "html_block" and raw_html:
            # Raw HTML in Markdown (a README's centred logo, <details>, a <table>): its text, as
            # Markdown, the way a rendered page shows it.
            if block := _html_block(token.content):
                pairs[-1][1].append(block)
        elif token.type != "hr":
            text = _myst_roles("\n".join(lines[token.map[0] : token.map[1]]))
            pairs[-1][1].append(_inline_html(text) if raw_html else text)
    return _Parsed(title, _sections(pairs))


# MyST directives whose body is prose (admonitions and layout); any other is shown as code.
_MYST_TEXT = frozenset(
    ("note", "warning", "tip", "important", "caution", "attention", "danger", "error", "hint",
     "admonition", "margin", "sidebar", "topic", "rubric", "epigraph", "div", "table", "list-table")
)  # fmt: skip
# {role}`text` in MyST Markdown; "text <target>" shows its text.
_MYST_ROLE = re.compile(r"\{([\w:.-]+)\}`([^`\n]+)`")


_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_TAG = re.compile(r"<(/?)([A-Za-z][\w-]*)((?:\s[^<>]*)?)/?>")
_ALT = re.compile(r"""\balt\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_CODE_TAGS = frozenset(("code", "kbd", "samp", "tt", "var"))
# Inline HTML tags seen in Markdown prose (others, "List<String>", are text).
_INLINE_TAGS = _CODE_TAGS | frozenset(
    ("a", "abbr", "b", "br", "del", "em", "font", "i", "img", "ins", "mark", "q", "s", "small", "span",
     "strong", "sub", "sup", "u", "p", "div", "center", "details", "summary", "picture", "source")
)  # fmt: skip


def _html_block(raw: str) -> str:
    from knowledge.html import html_to_markdown

    try:
        return html_to_markdown(f"<html><body>{raw}</body></html>")[1].strip()
    except ValueError:
        return ""


def _inline_html(text: str) -> str:
    """Inline HTML tags in Markdown prose as what they show (``<kbd>Ctrl</kbd>`` as inline
    code, ``<img alt>`` as its text, ``<br>`` as a line break, other tags dropped, their text
    kept); code spans are left alone."""

    def tag(m: re.Match[str]) -> str:
        name = m.group(2).lower()
        if name not in _INLINE_TAGS or m.group(2) != m.group(2).lower() and m.group(2) != m.group(2).upper():
            return m.group(0)
        if name == "br":
            return "\n"
        if name == "img":
            alt = _ALT.search(m.group(3) or "")
            return (alt.group(1) or alt.group(2) or "") if alt else ""
        return "`" if name in _CODE_TAGS else ""

    if "<" not in text:
        return text
    out: list[str] = []
    at = 0
    for span in _CODE_SPAN.finditer(text):
        out.append(_TAG.sub(tag, text[at : span.start()]))
        out.append(span.group(0))
        at = span.end()
    out.append(_TAG.sub(tag, text[at:]))
    return "".join(out)


def _myst_directive(info: str, body: str) -> str | None:
    """What a MyST directive fence (```` ```{name} argument ````, Sphinx's Markdown) shows a
    reader: nothing for navigation and generated content (``toctree``, ``automodule``, …;
    knowledge/rst.py); the body as text for notes, tabs and the like; code for anything else
    (``code-block`` and a project's own directives, such as pip's ``{pip-cli}`` examples)."""
    name, _, argument = info[1:].partition("}")
    name, argument = name.strip(), argument.strip()
    if name in DROPPED_DIRECTIVES:
        return None
    # ":option: value" lines at the top of the body configure the directive.
    lines = body.split("\n")
    while lines and re.match(r"^:[\w-]+:", lines[0]):
        lines.pop(0)
    text = "\n".join(lines).strip("\n")
    if name in _MYST_TEXT or name in CONTENT_DIRECTIVES:
        return "\n\n".join(part for part in (_myst_roles(argument), _myst_roles(text)) if part) or None
    return f"```\n{text}\n```" if text else None


def _myst_roles(text: str) -> str:
    """MyST roles as what they show: names of things as inline code, the rest as words."""
    def shown(m: re.Match[str]) -> str:
        words = role_text(m.group(2))
        return f"`{words}`" if m.group(1) in CODE_ROLES else words

    return _MYST_ROLE.sub(shown, text)


_DECLARED_CHARSET = re.compile(rb"<meta[^>]+charset|<\?xml[^>]+encoding", re.I)


def _parse_html(data: bytes, charset: str | None) -> _Parsed:
    from knowledge.html import html_to_markdown

    # lxml sniffs the charset of bytes itself (meta tags included) but not BOMs.
    html: bytes | str = data
    if charset or any(data.startswith(bom) for bom, _ in _BOMS):
        html = _decode(data, charset)
    elif b"\x00" in data:
        raise _Unreadable("binary file, not text")
    elif not _DECLARED_CHARSET.search(data[:4096]):
        # No charset declared: lxml would read Latin-1, and a UTF-8 page ("café", a zero-width
        # space) would come out garbled. Today's pages without a declaration are UTF-8.
        with contextlib.suppress(UnicodeDecodeError):  # not UTF-8: lxml reads it as before
            html = data.decode("utf-8")
    try:
        # Markdown keeps headings, code blocks, lists and tables; its parser builds the sections.
        title, markdown = html_to_markdown(html)
    except Exception as exc:  # a parser on untrusted input: any failure is bad input
        raise _Unreadable(f"not readable HTML: {_one_line(exc)}") from None
    if not markdown.strip():
        raise _Unreadable("no main content found in the HTML")
    return _page(title, markdown)


def _page(title: str | None, markdown: str) -> _Parsed:
    """A rendered page (its title, its text as Markdown) as sections."""
    parsed = _parse_markdown(markdown, None, raw_html=False)
    return _Parsed(title or parsed.title, parsed.sections)


def _parse_rst(data: bytes, charset: str | None) -> _Parsed:
    from knowledge.html import html_to_markdown
    from knowledge.rst import rst_to_html

    text = _decode(data, charset)
    try:
        # Sphinx sources: docutils renders headings, code, lists and tables as HTML, which
        # reads as Markdown like any web page (knowledge/rst.py registers Sphinx's directives).
        title, markdown = html_to_markdown(rst_to_html(text))
    except Exception:  # a parser on untrusted input: what it cannot read is read as plain text
        return _parse_text(data, charset)
    return _page(title, markdown) if markdown.strip() else _parse_text(data, charset)


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
    "rst": _parse_rst,
    "html": _parse_html,
    "pdf": _parse_pdf,
    "docx": _parse_docx,
}
