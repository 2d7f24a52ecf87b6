"""Split a :class:`bot.types.Document` into passages that follow its structure.

Chunks never cross a section (heading) boundary, except that a tiny section is folded
into the chunk before it. A fenced code block or a table is kept whole in one chunk (up to
three chunk sizes; a longer one is cut between lines and each piece fenced again; a list whose
items hold code blocks is cut only between them), and an introduction ending in ":" stays
with the block after it. Within a section whole paragraphs are packed up to ``size``
words; longer paragraphs are cut at sentence boundaries, and sentences longer than a
chunk at word boundaries. Consecutive chunks of a section share up to ``overlap`` words,
taken as whole sentences when they fit, so a fact cut by a boundary is still found whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.fingerprint import document_fingerprint
from bot.types import Chunk, Document

__all__ = ["chunk_document"]

# A sentence ends at . ! or ? (optionally followed by a closing quote or bracket) before
# whitespace; a line break inside a paragraph (list items, table rows) also ends one.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"'”’)\]])\s+|\s*\n\s*")
_PARAGRAPH = re.compile(r"\n\s*\n")
_FENCE = re.compile(r"^\s*(```+|~~~+)")
# A code block or table up to this many times the chunk size is kept whole, in one chunk.
_ATOMIC = 3


@dataclass(frozen=True)
class _Unit:
    """A piece that is never split further: a paragraph, a sentence or a run of words."""

    text: str
    words: int
    sep: str  # what joins it to the unit before it in the same chunk


def chunk_document(doc: Document, *, size: int, overlap: int) -> list[Chunk]:
    """Split ``doc`` into chunks of at most ``size`` words, ``overlap`` words shared in a section.

    Chunk ids are ``f"{doc.id}#{ordinal}"`` with ordinals 0..n-1; each chunk carries the
    document's metadata and its section's heading path. ``text`` holds only body text:
    the title and heading path are in :attr:`Chunk.context`. Deterministic; a document
    without text gives no chunks. Raises ``ValueError`` unless ``0 <= overlap < size``.
    """
    if not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
    fingerprint = document_fingerprint(doc)
    pieces: list[tuple[tuple[str, ...], str]] = []
    for section in doc.sections:
        texts = _pack(_units(section.text, size, overlap), size, overlap)
        path = section.heading_path
        if len(texts) == 1 and 8 * _count(texts[0]) < size and pieces and _folds_into(path, pieces[-1][0]):
            prev_path, prev_text = pieces[-1]
            # The chunk keeps the previous heading path, so the folded section's own
            # heading goes into the text: without it the passage would lose its subject.
            extra = texts[0] if path == prev_path else f"{path[-1]}\n\n{texts[0]}"
            if _count(prev_text) + _count(extra) <= size:
                pieces[-1] = (prev_path, f"{prev_text}\n\n{extra}")
                continue
        pieces.extend((path, text) for text in texts)
    return [
        Chunk(
            id=f"{doc.id}#{ordinal}",
            doc_id=doc.id,
            ordinal=ordinal,
            text=text,
            title=doc.title,
            heading_path=path,
            url=doc.url,
            source=doc.source,
            content_hash=doc.content_hash,
            updated_at=doc.updated_at,
            access=doc.access,
            fingerprint=fingerprint,
        )
        for ordinal, (path, text) in enumerate(pieces)
    ]


def _count(text: str) -> int:
    return len(text.split())


def _folds_into(path: tuple[str, ...], prev: tuple[str, ...]) -> bool:
    """Whether a section at ``path`` shares its parent heading with the chunk at ``prev``."""
    return path == prev or (len(path) > 0 and prev[: len(path) - 1] == path[:-1])


def _after_line(fence: str, line: str) -> str:
    """The open code fence ("```", "~~~" or "" outside code) after ``line``, given the one before it."""
    marker = _FENCE.match(line)
    if marker and (not fence or marker.group(1).startswith(fence)):
        return "" if fence else marker.group(1)[:3]
    return fence


def _paragraphs(text: str, size: int) -> list[str]:
    """The blank-line separated paragraphs of ``text``, a fenced code block whole (blank lines
    inside it included), and an introduction ending in ":" joined to the block it introduces."""
    out: list[str] = []
    fence = ""
    for part in _PARAGRAPH.split(text):
        part = part.strip("\n")
        if not part.strip():
            continue
        if fence:
            out[-1] = f"{out[-1]}\n\n{part}"
        else:
            out.append(part)
        for line in part.split("\n"):
            fence = _after_line(fence, line)
    joined: list[str] = []
    for part in out:
        if (
            joined
            and joined[-1].rstrip().endswith(":")
            and _count(joined[-1]) + _count(part) <= max(size, _ATOMIC * size)
            and _count(joined[-1]) <= size // 2
        ):
            joined[-1] = f"{joined[-1]}\n\n{part}"
        else:
            joined.append(part)
    return [p.strip() for p in joined]


def _is_block(paragraph: str) -> bool:
    """A code block or a table: split only between lines, and only when it must be."""
    lines = paragraph.split("\n")
    return bool(_FENCE.match(lines[0])) or all(line.lstrip().startswith("|") for line in lines)


def _units(text: str, size: int, overlap: int) -> list[_Unit]:
    units: list[_Unit] = []
    for paragraph in _paragraphs(text, size):
        words = _count(paragraph)
        lines = paragraph.split("\n")
        fenced = any(_FENCE.match(line) for line in lines[1:])  # a list item's code block is indented
        if _is_block(paragraph) or fenced:
            if words <= _ATOMIC * size:
                units.append(_Unit(paragraph, words, "\n\n"))  # a chunk of its own if it must
                continue
            runs = _line_runs(paragraph, size) if _is_block(paragraph) else _runs_between_fences(lines, size)
            units.extend(_Unit(run, _count(run), "\n\n") for run in runs)
            continue
        if words <= size:
            if words:
                units.append(_Unit(paragraph, words, "\n\n"))
            continue
        sep, start = "\n\n", 0
        ends = [(m.start(), m.end(), "\n" if "\n" in m[0] else " ") for m in _BOUNDARY.finditer(paragraph)]
        for end, next_start, next_sep in [*ends, (len(paragraph), len(paragraph), "")]:
            sentence = paragraph[start:end]
            start, n = next_start, _count(sentence)
            if n <= size:
                units.append(_Unit(sentence, n, sep))
            else:
                # Runs of size - overlap words, so that a run plus the overlap carried
                # from the chunk before still fits in one chunk.
                tokens, step = sentence.split(), size - overlap
                for i in range(0, len(tokens), step):
                    run = tokens[i : i + step]
                    units.append(_Unit(" ".join(run), len(run), sep if i == 0 else " "))
            sep = next_sep
    return units


def _pack(units: list[_Unit], size: int, overlap: int) -> list[str]:
    chunks: list[str] = []
    current, words = "", 0
    for unit in units:
        if current and words + unit.words > size:
            chunks.append(current)
            current = _tail(current, min(overlap, size - unit.words))
            words = _count(current)
        current = f"{current}{unit.sep}{unit.text}" if current else unit.text
        words += unit.words
    if current:
        chunks.append(current)
    return chunks


def _line_runs(block: str, size: int) -> list[str]:
    """A code block too long for one chunk, as runs of whole lines of about ``size`` words,
    each fenced again so that every piece still reads as code."""
    lines = block.split("\n")
    fence = ""
    if _FENCE.match(lines[0]):
        fence = _FENCE.match(lines[0]).group(1)  # type: ignore[union-attr]
        lines = lines[1:-1] if len(lines) > 1 and lines[-1].strip().startswith(fence[:3]) else lines[1:]
    runs: list[list[str]] = [[]]
    for line in lines:
        if runs[-1] and _count("\n".join(runs[-1] + [line])) > size:
            runs.append([])
        runs[-1].append(line)
    return [f"{fence}\n" + "\n".join(r) + f"\n{fence}" if fence else "\n".join(r) for r in runs if r]


def _runs_between_fences(lines: list[str], size: int) -> list[str]:
    """Prose with code blocks inside it (a list whose items hold code), too long for one
    chunk, as runs of whole lines of about ``size`` words, cut only outside a code block:
    a cut inside one would leave each piece with one fence, read as the start of code."""
    runs: list[list[str]] = [[]]
    fence = ""
    for line in lines:
        if not fence and runs[-1] and _count("\n".join(runs[-1] + [line])) > size:
            runs.append([])
        runs[-1].append(line)
        fence = _after_line(fence, line)
    return ["\n".join(r) for r in runs if r]


def _tail(text: str, limit: int) -> str:
    """The longest run of whole sentences ending ``text`` with at most ``limit`` words,
    else its last ``limit`` words; nothing when ``text`` ends in a code block or table
    (a piece of one, repeated, would read as a broken block)."""
    if limit <= 0:
        return ""
    last = text.rsplit("\n\n", 1)[-1]
    if _is_block(last) or last.rstrip().endswith(("```", "~~~")):
        return ""
    for match in _BOUNDARY.finditer(text):
        tail = text[match.end() :]
        # A tail holding one fence of a code block (its end, say) would open a code block
        # that never closes in the next chunk: start after it instead.
        if _count(tail) <= limit and sum(1 for line in tail.split("\n") if _FENCE.match(line)) % 2 == 0:
            return tail
    if any(_FENCE.match(line) for line in text.split("\n")[-limit:]):
        return ""
    return " ".join(text.split()[-limit:])
