"""Document fingerprints: the same page in two formats, or copied into two spaces, is one source.

A 256-bit SimHash of the document's content words (each weighted by ``1 + log(count)``),
computed at ingest and stored with every chunk (:attr:`bot.types.Chunk.fingerprint`). Two
documents whose fingerprints differ in at most ``MAX_DISTANCE`` bits are near-identical: the
answer cites one of them once (the other is neither cited again nor listed under "See also").
Markup differences (an AsciiDoc ``.txt`` source beside its rendered ``.html``) change a few
words among hundreds, which moves a SimHash by a few bits; different pages differ in ~128.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter

from bot.text import content_words
from bot.types import Chunk, Document

BITS = 256
MAX_DISTANCE = 32  # bits of 256: git's .txt/.html pairs median 15, different pages >= 43 (docs/answers.md)
MIN_WORDS = 40  # shorter documents are not fingerprinted: too few words to tell pages apart


def fingerprint_text(text: str) -> str:
    """The SimHash of ``text`` as ``BITS // 4`` hex digits ("" when it has fewer than ``MIN_WORDS`` content words)."""
    counts = Counter(content_words(text))
    if sum(counts.values()) < MIN_WORDS:
        return ""
    totals = [0.0] * BITS
    for word, count in counts.items():
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=BITS // 8).digest(), "big")
        weight = 1.0 + math.log(count)
        for bit in range(BITS):
            totals[bit] += weight if h >> bit & 1 else -weight
    value = sum(1 << bit for bit in range(BITS) if totals[bit] > 0)
    return f"{value:0{BITS // 4}x}"


def document_fingerprint(doc: Document) -> str:
    """The fingerprint of a document's body text (headings included, title not: a ``.txt``
    and an ``.html`` copy of one page are titled differently)."""
    return fingerprint_text("\n".join(" ".join(s.heading_path) + "\n" + s.text for s in doc.sections))


def distance(a: str, b: str) -> int:
    """Differing bits between two fingerprints (``BITS`` when either is missing)."""
    if not a or not b or len(a) != len(b):
        return BITS
    return (int(a, 16) ^ int(b, 16)).bit_count()


def same_document(a: Chunk, b: Chunk) -> bool:
    """Whether two chunks come from near-identical documents (the same document included):
    fingerprints within ``MAX_DISTANCE``, or the same page in two formats side by side
    (``git-commit.txt`` and ``git-commit.html``: one URL but for the file extension; a
    ``.txt`` source can include parts that its fingerprint then lacks)."""
    if a.doc_id == b.doc_id or distance(a.fingerprint, b.fingerprint) <= MAX_DISTANCE:
        return True
    return _without_extension(a.url) == _without_extension(b.url) != ""


def _without_extension(url: str) -> str:
    head, slash, name = url.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    return f"{head}{slash}{stem}" if dot and stem and ext.lower() in _FORMATS else ""


_FORMATS = frozenset({"txt", "html", "htm", "md", "markdown", "rst", "adoc", "asciidoc", "pdf", "docx"})
