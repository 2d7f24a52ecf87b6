"""Hybrid retrieval: dense and keyword candidates, fused, access-filtered in the index, reranked.

Filters (access groups, sources, dates) are applied inside the index before ranking, so a
passage the viewer may not see never competes for a place. Near-duplicate passages are
collapsed so one fact copied into three documents does not take three places.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from bot.ports import ChunkIndex, Embedder, Reranker
from bot.types import ScoredChunk, SearchFilters
from knowledge.text import content_words


@dataclass(frozen=True)
class RetrievalConfig:
    """Knobs of the hybrid search; the defaults are what bench/retrieval.py measured best."""

    candidates: int = 50
    dense_weight: float = 0.5
    dedupe_jaccard: float = 0.9


@dataclass(frozen=True)
class Retrieval:
    """Ranked passages and how they were found."""

    query: str
    passages: tuple[ScoredChunk, ...]
    dense: tuple[ScoredChunk, ...] = ()
    keyword: tuple[ScoredChunk, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)


def _max_normalised(hits: Sequence[ScoredChunk], key: str) -> dict[str, float]:
    if not hits:
        return {}
    top = max(h.scores.get(key, h.score) for h in hits)
    if top <= 0:
        return {h.chunk.id: 0.0 for h in hits}
    return {h.chunk.id: max(h.scores.get(key, h.score), 0.0) / top for h in hits}


def fuse(dense: Sequence[ScoredChunk], keyword: Sequence[ScoredChunk], config: RetrievalConfig) -> list[ScoredChunk]:
    """Weighted fusion of max-normalised dense and keyword scores."""
    nd = _max_normalised(dense, "dense")
    nk = _max_normalised(keyword, "keyword")
    by_id: dict[str, ScoredChunk] = {h.chunk.id: h for h in keyword}
    by_id.update({h.chunk.id: h for h in dense})
    dense_raw = {h.chunk.id: h.scores.get("dense", h.score) for h in dense}
    kw_raw = {h.chunk.id: h.scores.get("keyword", h.score) for h in keyword}
    fused: list[ScoredChunk] = []
    w = config.dense_weight
    for cid, hit in by_id.items():
        score = w * nd.get(cid, 0.0) + (1 - w) * nk.get(cid, 0.0)
        scores = {"fused": score}
        if cid in dense_raw:
            scores["dense"] = dense_raw[cid]
        if cid in kw_raw:
            scores["keyword"] = kw_raw[cid]
        fused.append(ScoredChunk(hit.chunk, score, MappingProxyType(scores)))
    fused.sort(key=lambda h: -h.score)
    return fused


def _shingles(text: str) -> set[tuple[str, ...]]:
    w = content_words(text)
    return {tuple(w[i : i + 3]) for i in range(max(len(w) - 2, 1))}


def collapse_near_duplicates(hits: Sequence[ScoredChunk], threshold: float) -> list[ScoredChunk]:
    """Drop passages whose word 3-shingles overlap a better-ranked passage by ``threshold`` (Jaccard)."""
    kept: list[ScoredChunk] = []
    kept_shingles: list[set[tuple[str, ...]]] = []
    for hit in hits:
        sh = _shingles(hit.chunk.text)
        if any(sh and len(sh & other) / len(sh | other) >= threshold for other in kept_shingles):
            continue
        kept.append(hit)
        kept_shingles.append(sh)
    return kept


class Retriever:
    """Hybrid search over one index with one embedder and an optional reranker."""

    def __init__(
        self,
        embedder: Embedder,
        index: ChunkIndex,
        reranker: Reranker | None = None,
        config: RetrievalConfig | None = None,
    ) -> None:
        self.embedder = embedder
        self.index = index
        self.reranker = reranker
        self.config = config or RetrievalConfig()

    def search(self, query: str, k: int, filters: SearchFilters) -> Retrieval:
        """The ``k`` best passages for ``query`` that ``filters`` allow, best first."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        vector = self.embedder.embed_query(query)
        t1 = time.perf_counter()
        dense = self.index.dense_search(vector, self.config.candidates, filters)
        t2 = time.perf_counter()
        keyword = self.index.keyword_search(query, self.config.candidates, filters)
        t3 = time.perf_counter()
        fused = fuse(dense, keyword, self.config)
        fused = collapse_near_duplicates(fused[: max(k * 3, 20)], self.config.dedupe_jaccard)
        if self.reranker is not None and fused:
            fused = self.reranker.rerank(query, fused[: self.config.candidates], top_k=k)
        t4 = time.perf_counter()
        timings.update(
            embed=(t1 - t0) * 1000, dense=(t2 - t1) * 1000, keyword=(t3 - t2) * 1000, fuse_rerank=(t4 - t3) * 1000
        )
        return Retrieval(query, tuple(fused[:k]), tuple(dense), tuple(keyword), timings)
