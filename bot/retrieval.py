"""Hybrid retrieval: dense and keyword candidates, fused, access-filtered in the index, reranked.

Filters (access groups, sources, dates) are applied inside the index before ranking, so a
passage the viewer may not see never competes for a place. Near-duplicate passages are
collapsed so one fact copied into three documents does not take three places; the
collapsed ones stay attached to the passage that represents them
(``Retrieval.duplicates_of``), so a citation can say "also in …". The document ranking
used for evaluation (``bot.evaluation.doc_ranking``) credits only the passages returned.

Steps (what each costs, and the comparisons that chose them: docs/measurements.md):

1. Candidates: ``candidates`` (50) by dense cosine and 50 by BM25 (the local index: k1=0.9,
   b=0.4, title/headings x3).
2. Complete scores: a dense candidate the keyword list missed gets its own BM25 score, so
   every candidate is scored by both signals (``complete_scores``; needs an index that is a
   :class:`CandidateScorer`, as the local one is).
3. Fusion of min-max normalised scores with one fixed dense weight (0.7). The weight, the
   normalisation and the phrase bonus were chosen leave-one-set-out (bench/generalization.py):
   each of the five evaluation sets is measured with the setting picked on the other four.
   (Before, a *keyword-coverage* rule handed the ranking to BM25 (dense 0.3) whenever the best
   keyword hit held 85% of the query's words, else to vectors (0.8); that rule is still
   available (``dense_weight`` != ``dense_weight_uncovered``), but in a large documentation
   corpus nearly every query is "covered", where dense ranking is the better one: it lost to
   a plain fusion on sets nobody tuned on.)
4. Dense pseudo-relevance feedback (Rocchio): the query vector plus the mean vector of the 3
   best fused passages re-scores every candidate, and the fusion is redone with that dense
   score. ``scores["dense"]`` stays the plain query
   cosine (answer policies read it); the feedback cosine is ``scores["dense_prf"]``.
5. Phrase bonus: a passage whose text has the query's adjacent content words side by side
   ("menu language", stopwords skipped, lightly stemmed) gains ``phrase_weight`` (0.3) x the
   share of the query's pairs it has.
6. Near-duplicate grouping (word 3-shingle Jaccard >= 0.9), then the optional reranker.

The keyword search runs in a small thread pool while the query is embedded. Leave-one-set-out
nDCG@10 against a plain fusion: README "Measured quality and speed"; the grid searched and
the alternatives dropped (rank fusion, a per-knowledge-base weight): docs/measurements.md.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

import numpy as np

from bot.feedback import FeedbackRanker
from bot.ports import CandidateScorer, ChunkIndex, Embedder, Reranker, Vector
from bot.text import content_words
from bot.threads import process_pool
from bot.types import ScoredChunk, SearchFilters

if TYPE_CHECKING:
    from bot.verified import VerifiedRanker


@dataclass(frozen=True)
class RetrievalConfig:
    """Knobs of the hybrid search; the defaults were chosen leave-one-set-out (module docstring).

    ``normalise``: how each list's scores are scaled before fusion ("minmax": (s - min) /
    (max - min) over the candidates; "max": s / max).

    ``dense_weight`` is the dense share of the fused score when the best keyword hit covers
    at least ``coverage_threshold`` of the query's content words, ``dense_weight_uncovered``
    when it covers less. Setting both equal gives a fixed-weight fusion. ``prf_weight`` is the
    weight of the mean vector of the ``prf_passages`` best fused passages added to the query
    vector for the second dense pass (0 turns it off). With ``complete_scores`` a dense
    candidate the keyword list missed still gets its keyword score (the index must be a
    :class:`CandidateScorer`; the feedback pass needs one too). ``phrase_weight`` (covered
    queries) and ``phrase_weight_uncovered`` scale the phrase bonus: the share of the query's
    adjacent content-word pairs that a passage's text also has side by side (0 turns it off).
    """

    candidates: int = 50
    dense_weight: float = 0.7
    dense_weight_uncovered: float = 0.7
    coverage_threshold: float = 0.85
    dedupe_jaccard: float = 0.9
    complete_scores: bool = True
    prf_weight: float = 1.0
    prf_passages: int = 3
    phrase_weight: float = 0.3
    phrase_weight_uncovered: float = 0.3
    normalise: Literal["max", "minmax"] = "minmax"


@dataclass(frozen=True)
class Retrieval:
    """Ranked passages and how they were found.

    ``coverage`` is the keyword coverage of the query by the best keyword hit (``None``
    without keyword hits) and ``dense_weight`` the weight the fusion used for it.
    ``duplicates_of`` maps a passage's chunk id to the near-duplicate passages collapsed into
    it (best first); passages without duplicates are absent.
    """

    query: str
    passages: tuple[ScoredChunk, ...]
    dense: tuple[ScoredChunk, ...] = ()
    keyword: tuple[ScoredChunk, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    coverage: float | None = None
    dense_weight: float = 0.5
    duplicates_of: Mapping[str, tuple[ScoredChunk, ...]] = field(default_factory=dict)


# Light suffix stripping so "installing" covers "install" (FTS5 uses Porter; this only has
# to agree with it often enough to tell a covered query from a paraphrase).
_SUFFIXES = ("ational", "ations", "ation", "ings", "ing", "ies", "ied", "ers", "er", "es", "ed", "ly", "s")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:6]


def light_stem(word: str) -> str:
    """The light stem used to compare query and passage words ("installing" meets "install")."""
    return _stem(word)


def keyword_coverage(query: str, hit: ScoredChunk) -> float:
    """The share (0..1) of the query's distinct content words found in ``hit``'s context or text."""
    terms = {_stem(w) for w in content_words(query)}
    if not terms:
        return 0.0
    have = {_stem(w) for w in content_words(f"{hit.chunk.context}\n{hit.chunk.text}")}
    return len(terms & have) / len(terms)


def is_covered(coverage: float | None, config: RetrievalConfig) -> bool:
    """Whether the best keyword hit covers the query (``coverage``; ``None``: no hit) enough to trust keywords."""
    return coverage is not None and coverage >= config.coverage_threshold


def adaptive_dense_weight(coverage: float | None, config: RetrievalConfig) -> float:
    """The dense weight for a query whose best keyword hit has ``coverage`` (``None``: no hit)."""
    return config.dense_weight if is_covered(coverage, config) else config.dense_weight_uncovered


# Punctuation to spaces, apostrophes kept: a faster tokeniser than ``bot.text.words``
# for scanning every candidate's text on each query (it only has to agree with itself).
_SPACES = str.maketrans(dict.fromkeys('!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~‘“”…–—', " ") | {"’": "'"})


def _tokens(text: str) -> list[str]:
    """Lower-cased word tokens by the fast tokeniser (stopwords kept)."""
    return text.lower().translate(_SPACES).split()


@functools.lru_cache(maxsize=100_000)
def _content_word(word: str) -> str:
    """``word`` (a lower-cased token) when it is a content word (as ``content_words``), else ""."""
    kept = content_words(word)
    return kept[0] if len(kept) == 1 else ""


@functools.lru_cache(maxsize=100_000)
def _content_stem(word: str) -> str:
    """The light stem of a lower-cased word token, or "" for a stopword (as ``content_words``)."""
    kept = _content_word(word)
    return _stem(kept) if kept else ""


@functools.lru_cache(maxsize=4096)
def _pairs(text: str) -> frozenset[tuple[str, str]]:
    """The adjacent pairs of content-word stems in ``text`` (cached: popular passages recur)."""
    stems = [s for s in map(_content_stem, _tokens(text)) if s]
    return frozenset(zip(stems, stems[1:], strict=False))


def phrase_match(query: str, hit: ScoredChunk) -> float:
    """The share (0..1) of the query's adjacent content-word pairs (lightly stemmed) that
    ``hit``'s text has side by side: "menu language" in the question and in the passage."""
    return _share(_pairs(query), hit.chunk.text)


def _share(wanted: frozenset[tuple[str, str]], text: str) -> float:
    return len(wanted & _pairs(text)) / len(wanted) if wanted else 0.0


def with_phrase_bonus(query: str, hits: Sequence[ScoredChunk], weight: float) -> list[ScoredChunk]:
    """``hits`` re-sorted by fused score + ``weight`` x :func:`phrase_match`; the bonus is
    kept as ``scores["phrase"]``."""
    wanted = _pairs(query)
    if weight <= 0 or not wanted:
        return list(hits)
    out: list[ScoredChunk] = []
    for hit in hits:
        match = _share(wanted, hit.chunk.text)
        scores = dict(hit.scores)
        scores.update(phrase=match, fused=hit.score + weight * match)
        out.append(ScoredChunk(hit.chunk, scores["fused"], MappingProxyType(scores)))
    out.sort(key=lambda h: -h.score)
    return out


def _max_normalised(hits: Sequence[ScoredChunk], key: str, minmax: bool = False) -> dict[str, float]:
    if not hits:
        return {}
    if minmax:
        values = [h.scores.get(key, h.score) for h in hits]
        lo, hi = min(values), max(values)
        span = hi - lo
        return {h.chunk.id: (v - lo) / span if span > 0 else 1.0 for h, v in zip(hits, values, strict=True)}
    top = max(h.scores.get(key, h.score) for h in hits)
    if top <= 0:
        return {h.chunk.id: 0.0 for h in hits}
    return {h.chunk.id: max(h.scores.get(key, h.score), 0.0) / top for h in hits}


def fuse(
    dense: Sequence[ScoredChunk],
    keyword: Sequence[ScoredChunk],
    config: RetrievalConfig,
    *,
    dense_weight: float | None = None,
) -> list[ScoredChunk]:
    """Weighted fusion of max-normalised dense and keyword scores, best first.

    ``dense_weight`` overrides ``config.dense_weight`` (the retriever passes the adaptive
    weight). A passage missing from one list gets 0 from it, so one found by both lists
    outranks one found by a single list with the same normalised score. Ties keep the
    dense order, then the keyword order.
    """
    w = config.dense_weight if dense_weight is None else dense_weight
    minmax = config.normalise == "minmax"
    nd = _max_normalised(dense, "dense", minmax)
    nk = _max_normalised(keyword, "keyword", minmax)
    by_id: dict[str, ScoredChunk] = {h.chunk.id: h for h in dense}
    for h in keyword:
        by_id.setdefault(h.chunk.id, h)
    dense_raw = {h.chunk.id: h.scores.get("dense", h.score) for h in dense}
    kw_raw = {h.chunk.id: h.scores.get("keyword", h.score) for h in keyword}
    fused: list[ScoredChunk] = []
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


@functools.lru_cache(maxsize=4096)
def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    """The word 3-shingles of ``text``'s content words (cached: popular passages recur)."""
    w = [c for c in map(_content_word, _tokens(text)) if c]
    return frozenset(tuple(w[i : i + 3]) for i in range(max(len(w) - 2, 1)))


def group_near_duplicates(
    hits: Sequence[ScoredChunk], threshold: float
) -> tuple[list[ScoredChunk], dict[str, tuple[ScoredChunk, ...]]]:
    """Collapse passages whose word 3-shingles overlap a better-ranked passage by ``threshold``
    (Jaccard) into that passage.

    Returns the representatives (best first) and, per representative chunk id that absorbed
    any, its duplicates in rank order — so a citation can say "also in …" and a document
    ranking can list the duplicate documents right after the representative.
    """
    kept: list[ScoredChunk] = []
    kept_shingles: list[frozenset[tuple[str, ...]]] = []
    duplicates: dict[str, list[ScoredChunk]] = {}
    for hit in hits:
        sh = _shingles(hit.chunk.text)
        owner = next(
            (
                i
                for i, other in enumerate(kept_shingles)
                if sh and len(sh & other) / len(sh | other) >= threshold
            ),
            None,
        )
        if owner is not None:
            duplicates.setdefault(kept[owner].chunk.id, []).append(hit)
            continue
        kept.append(hit)
        kept_shingles.append(sh)
    return kept, {cid: tuple(d) for cid, d in duplicates.items()}


def collapse_near_duplicates(hits: Sequence[ScoredChunk], threshold: float) -> list[ScoredChunk]:
    """Drop passages whose word 3-shingles overlap a better-ranked passage by ``threshold`` (Jaccard)."""
    return group_near_duplicates(hits, threshold)[0]


def _candidate_scorer(index: ChunkIndex) -> CandidateScorer | None:
    """``index`` as a CandidateScorer, when it is one."""
    return index if isinstance(index, CandidateScorer) else None


def _with_keyword_scores(
    query: str, dense: Sequence[ScoredChunk], keyword: Sequence[ScoredChunk], scorer: CandidateScorer
) -> list[ScoredChunk]:
    """``keyword`` plus the dense candidates it missed, each with its own keyword score (if any)."""
    have = {h.chunk.id for h in keyword}
    missed = [h for h in dense if h.chunk.id not in have]
    scores = scorer.keyword_scores(query, [h.chunk.id for h in missed]) if missed else []
    extra = [
        ScoredChunk(h.chunk, s, MappingProxyType({"keyword": s}))
        for h, s in zip(missed, scores, strict=True)
        if s > 0
    ]
    return sorted([*keyword, *extra], key=lambda h: -h.score)


KEYWORD_THREADS = 4  # keyword searches in flight at once (one per concurrent search)


def _keyword_pool() -> ThreadPoolExecutor:
    """The process's keyword-search threads, shared by every Retriever (made on first use)."""
    return process_pool("keyword", KEYWORD_THREADS)


class Retriever:
    """Hybrid search over one index with one embedder and an optional reranker."""

    def __init__(
        self,
        embedder: Embedder,
        index: ChunkIndex,
        reranker: Reranker | None = None,
        config: RetrievalConfig | None = None,
        feedback: FeedbackRanker | None = None,
        verified: VerifiedRanker | None = None,
    ) -> None:
        self.embedder = embedder
        self.index = index
        self.reranker = reranker
        self.config = config or RetrievalConfig()
        self.feedback = feedback
        self.verified = verified  # expert-verified answers first when they match (bot/verified.py)

    def _timed_keyword_search(self, query: str, filters: SearchFilters) -> tuple[list[ScoredChunk], float]:
        started = time.perf_counter()
        hits = self.index.keyword_search(query, self.config.candidates, filters)
        return hits, (time.perf_counter() - started) * 1000

    def _feedback_pass(
        self,
        vector: Vector,
        fused: list[ScoredChunk],
        keyword: Sequence[ScoredChunk],
        weight: float,
        index: CandidateScorer,
    ) -> list[ScoredChunk]:
        """Rocchio on the dense side: re-score every candidate against the query vector plus
        ``prf_weight`` times the mean vector of the best fused passages, and fuse again.

        Candidates found by keywords only get a dense score this way too. The ``dense`` score
        each passage carries stays the original query's cosine (answer policies read it); the
        feedback cosine is ``dense_prf``.
        """
        matrix = index.vectors([h.chunk.id for h in fused])
        top = matrix[: self.config.prf_passages].mean(axis=0)
        expanded = np.asarray(vector, dtype=np.float32) + self.config.prf_weight * top
        expanded /= float(np.linalg.norm(expanded)) or 1.0
        cosines = matrix @ expanded
        second = sorted(
            (
                ScoredChunk(h.chunk, float(c), {"dense": float(c)})
                for h, c in zip(fused, cosines, strict=True)
            ),
            key=lambda h: -h.score,
        )
        original = {h.chunk.id: h.scores for h in fused}
        out: list[ScoredChunk] = []
        for hit in fuse(second, keyword, self.config, dense_weight=weight):
            scores = {k: v for k, v in original[hit.chunk.id].items() if k != "fused"}
            scores.update(fused=hit.score, dense_prf=hit.scores["dense"])
            out.append(ScoredChunk(hit.chunk, hit.score, MappingProxyType(scores)))
        return out

    def search(self, query: str, k: int, filters: SearchFilters) -> Retrieval:
        """The ``k`` best passages for ``query`` that ``filters`` allow, best first."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        # The keyword search needs no vector: it runs while the query is embedded (the
        # embedder and numpy release the GIL; with a remote index it overlaps the round trip).
        pending = _keyword_pool().submit(self._timed_keyword_search, query, filters)
        vector = self.embedder.embed_query(query)
        t1 = time.perf_counter()
        dense = self.index.dense_search(vector, self.config.candidates, filters)
        t2 = time.perf_counter()
        keyword, keyword_ms = pending.result()
        t3 = time.perf_counter()
        coverage = keyword_coverage(query, keyword[0]) if keyword else None
        weight = adaptive_dense_weight(coverage, self.config)
        scorer = _candidate_scorer(self.index)
        keyword_all = list(keyword)
        if scorer is not None and self.config.complete_scores:
            keyword_all = _with_keyword_scores(query, dense, keyword, scorer)
        fused = fuse(dense, keyword_all, self.config, dense_weight=weight)
        if scorer is not None and self.config.prf_weight > 0 and fused:
            fused = self._feedback_pass(vector, fused, keyword_all, weight, scorer)
        covered = is_covered(coverage, self.config)
        phrase = self.config.phrase_weight if covered else self.config.phrase_weight_uncovered
        fused = with_phrase_bonus(query, fused, phrase)
        if self.feedback is not None:
            # Votes on similar earlier questions, for passages the viewer's filter admitted.
            fused = self.feedback.adjust(vector, fused, filters.groups, filters.platform)
        if self.verified is not None:
            fused = self.verified.adjust(vector, fused, filters)
        fused, duplicates = group_near_duplicates(fused[: max(k * 3, 20)], self.config.dedupe_jaccard)
        if self.reranker is not None and fused:
            fused = self.reranker.rerank(query, fused[: self.config.candidates], top_k=k)
            if self.feedback is not None:
                fused = self.feedback.adjust(vector, fused, filters.groups, filters.platform)
            if self.verified is not None:
                fused = self.verified.adjust(vector, fused, filters)
        t4 = time.perf_counter()
        timings.update(
            embed=(t1 - t0) * 1000,
            dense=(t2 - t1) * 1000,
            keyword=keyword_ms,
            fuse_rerank=(t4 - t3) * 1000,
        )
        passages = tuple(fused[:k])
        duplicates = {p.chunk.id: duplicates[p.chunk.id] for p in passages if p.chunk.id in duplicates}
        return Retrieval(query, passages, tuple(dense), tuple(keyword), timings, coverage, weight, duplicates)
