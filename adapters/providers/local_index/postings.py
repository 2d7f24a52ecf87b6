"""The keyword side: an inverted index over matrix positions and BM25 over it.

BM25 with k1=0.9, b=0.4 and the chunk context (title, headings) counted ``CONTEXT_WEIGHT``
times (the comparison with FTS5's own bm25 is in docs/measurements.md). A chunk's terms are
stored as a blob (``encode_terms``) and parsed for many chunks at once when loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# BM25: the title and heading path count CONTEXT_WEIGHT times a body occurrence; k1 and b
# were measured on the three evaluation sets (bot/retrieval.py).
CONTEXT_WEIGHT = 3.0
BM25_K1 = 0.9
BM25_B = 0.4


class Postings:
    """An inverted index over matrix positions: a compressed main part plus a small delta.

    ``main`` is CSR by term id (``ptr``, ``pos``, ``ctf``, ``btf``); appends go to the delta
    (flat arrays) and are merged into ``main`` when the delta grows past a quarter of it.
    """

    def __init__(self) -> None:
        self.ptr = np.zeros(1, dtype=np.int64)
        self.pos = np.zeros(0, dtype=np.int32)
        self.ctf = np.zeros(0, dtype=np.float32)
        self.btf = np.zeros(0, dtype=np.float32)
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._delta: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._delta_size = 0

    def add(
        self, terms: np.ndarray, pos: np.ndarray, ctf: np.ndarray, btf: np.ndarray, *, merge: bool = True
    ) -> None:
        """Add postings; ``merge=False`` defers merging (the caller rebuilds once after a bulk load)."""
        if not len(terms):
            return
        self._parts.append((terms, pos, ctf, btf))
        self._delta = None
        self._delta_size += len(terms)
        if merge and self._delta_size > max(50_000, len(self.pos) // 4):
            self.rebuild()

    def _flat_delta(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._delta is None:
            if self._parts:
                t, p, c, b = (np.concatenate(x) for x in zip(*self._parts, strict=True))
                self._parts = [(t, p, c, b)]
                self._delta = (t, p, c, b)
            else:
                e = np.zeros(0, dtype=np.int32)
                self._delta = (e, e, e.astype(np.float32), e.astype(np.float32))
        return self._delta

    def _all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        counts = np.diff(self.ptr)
        terms = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        dt, dp, dc, db = self._flat_delta()
        return (
            np.concatenate([terms, dt]),
            np.concatenate([self.pos, dp]),
            np.concatenate([self.ctf, dc]),
            np.concatenate([self.btf, db]),
        )

    def rebuild(self, remap: np.ndarray | None = None) -> None:
        """Merge the delta into the main part; ``remap`` maps old positions to new (-1: drop)."""
        terms, pos, ctf, btf = self._all()
        if remap is not None:
            pos = remap[pos]
            keep = pos >= 0
            terms, pos, ctf, btf = terms[keep], pos[keep].astype(np.int32), ctf[keep], btf[keep]
        order = np.argsort(terms, kind="stable")
        size = int(terms.max()) + 1 if len(terms) else 0
        self.ptr = np.concatenate([[0], np.cumsum(np.bincount(terms, minlength=size))]).astype(np.int64)
        self.pos, self.ctf, self.btf = pos[order], ctf[order], btf[order]
        self._parts, self._delta, self._delta_size = [], None, 0

    def get(self, term: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if term + 1 < len(self.ptr):
            a, b = self.ptr[term], self.ptr[term + 1]
            pos, ctf, btf = self.pos[a:b], self.ctf[a:b], self.btf[a:b]
        else:
            pos, ctf, btf = self.pos[:0], self.ctf[:0], self.btf[:0]
        if self._parts:
            dt, dp, dc, db = self._flat_delta()
            hit = np.flatnonzero(dt == term)
            if len(hit):
                pos = np.concatenate([pos, dp[hit]])
                ctf = np.concatenate([ctf, dc[hit]])
                btf = np.concatenate([btf, db[hit]])
        return pos, ctf, btf


def encode_terms(ids: Sequence[int], ctx: Sequence[int], body: Sequence[int]) -> bytes:
    """Blob: [context length, body length, term ids..., context counts..., body counts...] (int32)."""
    head = [sum(ctx), sum(body)]
    return np.asarray([*head, *ids, *ctx, *body], dtype=np.int32).tobytes()


def bm25_scores(
    postings: Postings, term_ids: Sequence[int], alive: np.ndarray, length: np.ndarray
) -> np.ndarray | None:
    """BM25 of every position for the query terms ``term_ids`` (0 = no term); None when no
    position is alive. ``alive`` and ``length`` (terms per position) cover every position."""
    n = len(alive)
    total = int(np.count_nonzero(alive))
    if total == 0:
        return None
    avg = float(length[alive].mean()) or 1.0
    scores = np.zeros(n, dtype=np.float32)
    for term in term_ids:
        pos, ctf, btf = postings.get(term)
        live = alive[pos]
        pos, tf = pos[live], CONTEXT_WEIGHT * ctf[live] + btf[live]
        if not len(pos):
            continue
        df = len(pos)
        idf = np.log(1 + (total - df + 0.5) / (df + 0.5))
        norm = BM25_K1 * (1 - BM25_B + BM25_B * length[pos] / avg)
        scores[pos] += (idf * tf * (BM25_K1 + 1) / (tf + norm)).astype(np.float32)
    return scores
