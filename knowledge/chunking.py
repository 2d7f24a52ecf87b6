"""Split a :class:`bot.types.Document` into passages that follow its structure.

Chunks never cross a section (heading) boundary, except that a tiny section is folded
into the chunk before it. Within a section whole paragraphs are packed up to ``size``
words; longer paragraphs are cut at sentence boundaries, and sentences longer than a
chunk at word boundaries. Consecutive chunks of a section share up to ``overlap`` words,
taken as whole sentences when they fit, so a fact cut by a boundary is still found whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.types import Chunk, Document

__all__ = ["chunk_document"]

# A sentence ends at . ! or ? (optionally followed by a closing quote or bracket) before
# whitespace; a line break inside a paragraph (list items, table rows) also ends one.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"'”’)\]])\s+|\s*\n\s*")
_PARAGRAPH = re.compile(r"\n\s*\n")


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
        )
        for ordinal, (path, text) in enumerate(pieces)
    ]


def _count(text: str) -> int:
    return len(text.split())


def _folds_into(path: tuple[str, ...], prev: tuple[str, ...]) -> bool:
    """Whether a section at ``path`` shares its parent heading with the chunk at ``prev``."""
    return path == prev or (len(path) > 0 and prev[: len(path) - 1] == path[:-1])


def _units(text: str, size: int, overlap: int) -> list[_Unit]:
    units: list[_Unit] = []
    for paragraph in (p.strip() for p in _PARAGRAPH.split(text)):
        words = _count(paragraph)
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


def _tail(text: str, limit: int) -> str:
    """The longest run of whole sentences ending ``text`` with at most ``limit`` words,
    else its last ``limit`` words."""
    if limit <= 0:
        return ""
    for match in _BOUNDARY.finditer(text):
        if _count(text[match.end() :]) <= limit:
            return text[match.end() :]
    return " ".join(text.split()[-limit:])
