"""A deterministic hashing sparse encoder for keyword search in vector databases (Pinecone hybrid).

Text becomes lower-cased word tokens; English stopwords are dropped; a light suffix
stemmer folds plurals and common endings; each term is hashed (BLAKE2b, not Python's
salted ``hash``) to an index in ``[0, 2**31)``. Document term weights are BM25's saturated
term frequency, ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))``; query terms weigh
1 each. A dot product of the two is then a BM25 score without the IDF factor (a vector
database cannot supply corpus statistics; dropping stopwords does much of IDF's work).

The same encoder must write documents and read queries: anything that changes the
indices or weights changes ``SPARSE_VERSION``, and an index built with another version
must be rebuilt (it is part of the Pinecone index's ``name``).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass

SPARSE_VERSION = "hashbm25-v1"

INDEX_SPACE = 2**31
MAX_TERMS = 1000  # Pinecone accepts at most 1000 non-zero values in a sparse vector.

K1 = 1.2
B = 0.75
AVG_DOC_LEN = 120.0  # content words in a typical chunk (chunks are ~180 words before stopwords go)
CONTEXT_WEIGHT = 3  # a term in the title or heading path counts as three in the body

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)

# Kept here, not shared, on purpose: changing this list changes the vectors (see SPARSE_VERSION).
_STOPWORD_TEXT = """a about above after again against all am an and any are aren't as at be because
    been before
    being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
    don't down during each few for from further had hadn't has hasn't have haven't having he he'd he'll
    he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't
    it it's its itself let's me more most mustn't my myself no nor not of off on once only or other
    ought our ours ourselves out over own same shan't she she'd she'll she's should shouldn't so some
    such than that that's the their theirs them themselves then there there's these they they'd
    they'll they're they've this those through to too under until up very was wasn't we we'd we'll
    we're we've were weren't what what's when when's where where's which while who who's whom why
    why's will with won't would wouldn't you you'd you'll you're you've your yours yourself
    yourselves"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _stem(word: str) -> str:
    """A light suffix stemmer: folds plurals, -ing and -ed; leaves short words alone."""
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("'s"):
        word = word[:-2]
    for suffix, replacement, min_stem in (
        ("sses", "ss", 2),
        ("ies", "y", 2),
        ("ing", "", 3),
        ("ed", "", 3),
        ("es", "", 3),
        ("s", "", 3),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= min_stem:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix == "es" and not word.endswith(("ches", "shes", "xes", "zes", "sses")):
                continue
            stem = word[: len(word) - len(suffix)] + replacement
            # "running" -> "runn" -> "run", "stopped" -> "stopp" -> "stop"
            if suffix in ("ing", "ed") and len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]
            return stem
    return word


def terms(text: str) -> list[str]:
    """The index terms of ``text``, in order, duplicates kept."""
    out: list[str] = []
    for raw in _WORD.findall(text):
        word = raw.lower().replace("’", "'")
        if word in STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        out.append(_stem(word))
    return out


def term_index(term: str) -> int:
    """The stable hashed index of a term in ``[0, 2**31)``."""
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % INDEX_SPACE


@dataclass(frozen=True)
class SparseVector:
    """Parallel indices (ascending, unique) and positive weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.indices)

    def as_dict(self) -> dict[str, list[int] | list[float]]:
        """The ``{"indices": [...], "values": [...]}`` form vector databases take."""
        return {"indices": list(self.indices), "values": list(self.values)}

    def dot(self, other: SparseVector) -> float:
        """The dot product (what a dotproduct index computes for the sparse part)."""
        mine = dict(zip(self.indices, self.values, strict=True))
        return sum(mine.get(i, 0.0) * v for i, v in zip(other.indices, other.values, strict=True))


def _build(weights: dict[int, float]) -> SparseVector:
    if len(weights) > MAX_TERMS:
        # Keep the heaviest terms; ties broken by index so the result is deterministic.
        kept = sorted(weights.items(), key=lambda item: (-item[1], item[0]))[:MAX_TERMS]
        weights = dict(kept)
    ordered = sorted(weights.items())
    return SparseVector(tuple(i for i, _ in ordered), tuple(round(w, 6) for _, w in ordered))


class SparseEncoder:
    """Encodes documents and queries into hashed BM25-like sparse vectors (stateless, thread-safe)."""

    version = SPARSE_VERSION

    def encode_document(self, text: str, context: str = "") -> SparseVector:
        """Weights for a passage; terms of ``context`` (title, headings) count CONTEXT_WEIGHT times."""
        counts: Counter[str] = Counter(terms(text))
        for term in terms(context):
            counts[term] += CONTEXT_WEIGHT
        length = sum(counts.values())
        if not length:
            return SparseVector((), ())
        norm = K1 * (1 - B + B * length / AVG_DOC_LEN)
        weights: dict[int, float] = {}
        for term, tf in counts.items():
            index = term_index(term)
            # Hash collisions (rare at 2**31) add up rather than overwrite.
            weights[index] = weights.get(index, 0.0) + tf * (K1 + 1) / (tf + norm)
        return _build(weights)

    def encode_query(self, text: str) -> SparseVector:
        """Weight 1 for every distinct query term."""
        weights: dict[int, float] = {}
        for term in dict.fromkeys(terms(text)):
            index = term_index(term)
            weights[index] = weights.get(index, 0.0) + 1.0
        return _build(weights)
