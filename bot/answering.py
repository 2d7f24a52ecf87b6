"""The answer service: Question → retrieval → generation → citation check → Answer (or a decline).

Flow: the question is rewritten into a standalone query using the thread's earlier turns;
hybrid retrieval runs with the asker's access groups as the filter (inside the index,
before ranking); the answerability model (bot/answerability.py) turns the retrieval into
the probability that an answer would be correct, and below the knowledge base's
calibrated threshold (bot/calibration.py) the question is declined before anything is
generated; otherwise the generator writes a reply citing [n]; citations to numbers that
were not given are dropped, and a reply with no valid citation left is declined. The
probability is the answer's ``confidence``.

Every Answer and its trace is stored.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np

from bot.answerability import AnswerabilityModel, KBLevels, default_model, features
from bot.errors import ProviderError
from bot.phrasing import hedge
from bot.ports import (
    AnswerStore,
    ChunkIndex,
    Generation,
    GenerationRequest,
    Generator,
    QueryRewriter,
    Vector,
)
from bot.prompt import PROMPT_VERSION, is_not_found
from bot.retrieval import Retrieval, Retriever
from bot.rewrite import standalone_query
from bot.text import content_words
from bot.types import (
    UNRESTRICTED,
    Answer,
    Citation,
    Decision,
    Feedback,
    Question,
    ScoredChunk,
    SearchFilters,
    Trace,
    TracePassage,
)

log = logging.getLogger(__name__)

_CITE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_CODE = re.compile(r"(```.*?(?:```|\Z)|`[^`\n]*`)", re.S)
SEE_ALSO = 3  # at most this many other relevant sources under "See also"

SENTENCE_PASSAGES = 5  # the sentence gate looks at the sentences of this many top passages
MAX_SENTENCES = 12  # and embeds at most this many (a bound on its cost)
SENTENCE_CACHE = 20_000  # sentence vectors kept (~30 MB at 384 dimensions)

VERIFIED_CONFIDENCE = 0.87

DECLINE_TEXT = "I couldn't find this in the knowledge base, so I won't guess."


@dataclass(frozen=True)
class DeclinePolicy:
    """When to decline instead of answering. Calibrated per knowledge base (bot/calibration.py).

    The answerability model (bot/answerability.py) gives the probability that an answer is
    correct; below ``threshold`` the question is declined before anything is generated
    (``None``: the model's own threshold, chosen leave-one-set-out). ``off_dense`` and
    ``on_dense`` are where this knowledge base's off-topic questions and its own
    pseudo-questions score (top cosine); the model reads the question's score relative to
    them. ``related_dense``: a passage this close is listed as a "closest source" in a decline.
    """

    threshold: float | None = None
    off_dense: float = 0.25
    on_dense: float = 0.6
    related_dense: float = 0.50

    @property
    def levels(self) -> KBLevels:
        return KBLevels(self.off_dense, self.on_dense)

    def min_probability(self, model: AnswerabilityModel) -> float:
        """The decline threshold on ``model``'s probability."""
        return model.threshold if self.threshold is None else self.threshold

    def scaled(self, strictness: float) -> DeclinePolicy:
        """This policy with the threshold multiplied by ``strictness`` (1.0: unchanged)."""
        base = default_model().threshold if self.threshold is None else self.threshold
        return replace(self, threshold=min(1.0, base * strictness))


@dataclass(frozen=True)
class CheckedText:
    text: str
    numbers: tuple[int, ...]  # the passage numbers (1-based, as given) cited, in order of first use


def check_citations(text: str, given: int) -> CheckedText:
    """Drop citations to numbers that were not given; renumber the rest 1..m by first use."""
    order: list[int] = []

    def renumber(match: re.Match[str]) -> str:
        kept: list[str] = []
        for raw in match.group(1).split(","):
            n = int(raw)
            if 1 <= n <= given:
                if n not in order:
                    order.append(n)
                kept.append(f"[{order.index(n) + 1}]")
        return "".join(kept)

    # Code is quoted verbatim: ``${a[1]}`` in a code block is not a citation.
    parts = _CODE.split(text)
    for i in range(0, len(parts), 2):
        cleaned = _CITE.sub(renumber, parts[i])
        cleaned = re.sub(r"[ \t]+([.,;:])", r"\1", cleaned)
        parts[i] = re.sub(r"(?<=\S)[ \t]{2,}", " ", cleaned)
    return CheckedText("".join(parts).strip(), tuple(order))


class TermStats:
    """Document frequencies of words in the index (through its keyword search), cached.

    Rare words weigh more in the answerability features: "Spanish" missing from a passage
    about Schematics says more than "configure" missing. Counts are capped at ``cap`` hits.
    """

    def __init__(self, index: ChunkIndex, cap: int = 200) -> None:
        self.index = index
        self.cap = cap
        self._df: dict[str, int] = {}
        self._n = -1
        self._lock = threading.Lock()

    def idf(self, word: str) -> float:
        with self._lock:
            n = self.index.count()
            if n != self._n:
                self._df.clear()
                self._n = n
            df = self._df.get(word)
        if df is None:
            df = len(self.index.keyword_search(word, self.cap, UNRESTRICTED))
            with self._lock:
                if len(self._df) > 50_000:
                    self._df.clear()
                self._df[word] = df
        return math.log((max(n, 1) + 1) / (df + 0.5))

    def max_idf(self) -> float:
        """The IDF of a word no passage contains."""
        return math.log((max(self.index.count(), 1) + 1) / 0.5)


def _trace_passages(hits: Sequence[ScoredChunk]) -> tuple[TracePassage, ...]:
    return tuple(
        TracePassage(h.chunk.id, h.chunk.doc_id, h.chunk.title, dict(h.scores), h.chunk.access) for h in hits
    )


def _citation(number: int, hit: ScoredChunk) -> Citation:
    c = hit.chunk
    snippet = c.text if len(c.text) <= 300 else c.text[:297] + "…"
    return Citation(number, c.id, c.doc_id, c.title, c.heading_path, c.url, c.updated_at, snippet)


def cite_once(text: str, passages: Sequence[ScoredChunk]) -> str:
    """``text`` with every citation of a near-duplicate document (the same page as ``.txt`` and
    ``.html``, a page copied into two spaces) pointed at the first such passage, so that the
    page is cited once."""
    from bot.fingerprint import same_document

    alias: dict[int, int] = {}
    for n, hit in enumerate(passages, 1):
        for m in range(1, n):
            if hit.chunk.doc_id != passages[m - 1].chunk.doc_id and same_document(hit.chunk, passages[m - 1].chunk):
                alias[n] = alias.get(m, m)
                break
    if not alias:
        return text

    def point(match: re.Match[str]) -> str:
        numbers = [int(x) for x in match.group(1).split(",")]
        return "[" + ", ".join(str(alias.get(x, x)) for x in dict.fromkeys(alias.get(x, x) for x in numbers)) + "]"

    parts = _CODE.split(text)
    return "".join(p if i % 2 else _CITE.sub(point, p) for i, p in enumerate(parts))


def see_also(
    cited: Sequence[ScoredChunk], passages: Sequence[ScoredChunk], related_dense: float
) -> list[ScoredChunk]:
    """Other relevant sources to list under "See also" (not quoted, so not cited as [n]).

    Passages at least ``related_dense`` close to the question, one per document, leaving out
    the documents cited and their near-duplicates (the same page in another format or space:
    :func:`bot.fingerprint.same_document`), at most ``SEE_ALSO``.
    """
    from bot.fingerprint import same_document

    seen = list(cited)
    out: list[ScoredChunk] = []
    for hit in passages:
        if len(out) >= SEE_ALSO:
            break
        if hit.scores.get("dense", 0.0) < related_dense:
            continue
        if any(hit.chunk.doc_id == s.chunk.doc_id or same_document(hit.chunk, s.chunk) for s in seen):
            continue
        seen.append(hit)
        out.append(hit)
    return out


class AnswerService:
    """Answers Questions from the knowledge base, with citations, or declines."""

    def __init__(
        self,
        retriever: Retriever,
        generator: Generator,
        store: AnswerStore | None = None,
        *,
        policy: DeclinePolicy | Callable[[], DeclinePolicy] | None = None,
        fallback: Generator | None = None,
        rewriter: QueryRewriter | None = None,
        k: int = 6,
        model: AnswerabilityModel | None = None,
    ) -> None:
        self.rewriter = rewriter
        self.retriever = retriever
        self.generator = generator
        self.store = store
        self._policy = policy or DeclinePolicy()
        self.fallback = fallback
        self.k = k
        self.terms = TermStats(retriever.index)
        self.model = model or default_model()
        self._sentence_vectors: dict[str, Vector] = {}
        self._cache_lock = threading.Lock()

    @property
    def policy(self) -> DeclinePolicy:
        return self._policy() if callable(self._policy) else self._policy

    # -- public API ------------------------------------------------------------------------------
    def answer(self, question: Question) -> Answer:
        """The Answer to ``question`` (stored before it is returned)."""
        answer: Answer | None = None
        for event in self.stream(question):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer

    def stream(self, question: Question) -> Iterator[str | Answer]:
        """Text deltas as the generator writes them, then the final, checked Answer.

        The final Answer is authoritative: it may differ from the streamed text (invalid
        citations dropped) or decline (no valid citation, not supported).
        """
        started = time.perf_counter()
        timings: dict[str, float] = {}
        query = self._standalone(question)
        filters = SearchFilters(groups=frozenset(question.groups), platform=question.platform.value)
        retrieval = self.retriever.search(query, self.k, filters)
        timings["retrieve"] = (time.perf_counter() - started) * 1000
        policy = self.policy
        passages = retrieval.passages
        values = self.evidence(question, query, retrieval, policy)
        probability = self.model.probability(values) if passages else 0.0
        verified = any(p.scores.get("verified", 0.0) > 0 for p in passages)
        if verified:
            # An expert verified a passage as the answer to a question this close to this one
            # (bot/verified.py): answerable whatever the features say. Its confidence is what
            # bench/feedback.py measures for such matches (verified_answer_hit_rate, 0.87).
            probability = max(probability, VERIFIED_CONFIDENCE)
        timings["answerability"] = (time.perf_counter() - started) * 1000 - timings["retrieve"]
        note = ""
        generation: Generation | None = None
        generator_name = self.generator.name
        if passages and (verified or probability >= policy.min_probability(self.model)):
            request = GenerationRequest(question.text, passages, question.history)
            t = time.perf_counter()
            try:
                pieces: list[str] = []
                for delta in self.generator.stream(request):
                    pieces.append(delta)
                    yield delta
                text = "".join(pieces)
                generation = Generation(text, not_found=is_not_found(text), model=self.generator.name)
            except ProviderError as exc:
                if self.fallback is None:
                    raise
                log.warning(
                    "generator %s failed (%s); using %s", self.generator.name, exc, self.fallback.name
                )
                generation = self.fallback.generate(request)
                generator_name = self.fallback.name
                note = (
                    f"{self.generator.name} was unavailable, so this answer was extracted from the sources."
                )
            timings["generate"] = (time.perf_counter() - t) * 1000
        answer = self._finish(question, query, retrieval, generation, policy, probability, generator_name, note)
        timings["total"] = (time.perf_counter() - started) * 1000
        trace = answer.trace
        assert trace is not None
        answer = replace(answer, trace=replace(trace, timings_ms={**retrieval.timings_ms, **timings}))
        self._save(answer)
        yield answer

    def _standalone(self, question: Question) -> str:
        """The search query: the model-backed rewrite when one is configured, else the rules."""
        if self.rewriter is not None and question.history:
            try:
                return self.rewriter.rewrite(question.text, question.history)
            except ProviderError as exc:
                log.warning(
                    "query rewrite by %s failed (%s); using the rule-based rewrite", self.rewriter.name, exc
                )
        return standalone_query(question.text, question.history)

    def evidence(
        self, question: Question, query: str, retrieval: Retrieval, policy: DeclinePolicy
    ) -> dict[str, float]:
        """The answerability features of ``question`` (bot/answerability.py) for this retrieval."""
        passages = retrieval.passages
        sentence_cos = self._sentence_similarity(query, passages[:SENTENCE_PASSAGES]) if passages else 0.0
        return features(
            question.text,
            query,
            followup=bool(question.history),
            passages=passages,
            dense=retrieval.dense,
            keyword=retrieval.keyword,
            coverage=retrieval.coverage,
            idf=self.terms.idf,
            max_idf=self.terms.max_idf(),
            sentence_cos=sentence_cos,
            levels=policy.levels,
        )

    def _sentence_similarity(self, text: str, hits: Sequence[ScoredChunk]) -> float:
        """The highest cosine between ``text`` and a sentence of ``hits`` (one embedding batch).

        Embedding costs ~4 ms a sentence on CPU, so only the ``MAX_SENTENCES`` sharing the
        most words with ``text`` are embedded (ties: in passage order).
        """
        from bot.extractive import split_sentences, stem

        asked = {stem(w) for w in content_words(text)}
        candidates = [s for h in hits for s in split_sentences(h.chunk.text)]
        overlap = [len(asked & {stem(w) for w in content_words(s)}) for s in candidates]
        order = sorted(range(len(candidates)), key=lambda i: -overlap[i])[:MAX_SENTENCES]
        sentences = [candidates[i] for i in order]
        if not sentences:
            return 0.0
        embedder = self.retriever.embedder
        # Popular passages recur: their sentence vectors are kept (a bounded cache).
        with self._cache_lock:
            known = {s: self._sentence_vectors[s] for s in sentences if s in self._sentence_vectors}
        missing = [s for s in dict.fromkeys(sentences) if s not in known]
        if missing:
            fresh = dict(zip(missing, embedder.embed_documents(missing), strict=True))
            known.update(fresh)
            with self._cache_lock:
                self._sentence_vectors.update(fresh)
                while len(self._sentence_vectors) > SENTENCE_CACHE:
                    self._sentence_vectors.pop(next(iter(self._sentence_vectors)))
        matrix = np.stack([known[s] for s in sentences])
        return float((matrix @ embedder.embed_query(text)).max())

    def record_feedback(self, feedback: Feedback) -> None:
        """Store a vote (one per user per answer; a later vote replaces the earlier)."""
        if self.store is None:
            return
        self.store.save_feedback(feedback)

    def get_answer(self, answer_id: str) -> Answer | None:
        return None if self.store is None else self.store.get_answer(answer_id)

    # -- internals -------------------------------------------------------------------------------
    def _finish(
        self,
        question: Question,
        query: str,
        retrieval: Retrieval,
        generation: Generation | None,
        policy: DeclinePolicy,
        probability: float,
        generator_name: str,
        note: str,
    ) -> Answer:
        passages = retrieval.passages
        trace = Trace(
            query=query,
            retrieved=_trace_passages(retrieval.dense[:20]) + _trace_passages(retrieval.keyword[:20]),
            reranked=_trace_passages(passages),
            embedder=getattr(self.retriever.embedder, "name", ""),
            reranker="none" if self.retriever.reranker is None else self.retriever.reranker.name,
            generator=generator_name,
            prompt_version=PROMPT_VERSION,
        )
        base = Answer(
            id=uuid.uuid4().hex,
            question=question,
            text="",
            decision=Decision.DECLINED,
            confidence=0.0,
            trace=trace,
            created_at=datetime.now(UTC),
            note=note,
        )
        confidence = round(probability, 3)
        if generation is not None and not generation.not_found:
            checked = check_citations(cite_once(generation.text, passages), len(passages))
            cited = [passages[n - 1] for n in checked.numbers]
            also = see_also(cited, passages, policy.related_dense)
            if cited:
                return replace(
                    base,
                    text=hedge(checked.text, confidence),
                    decision=Decision.ANSWERED,
                    confidence=confidence,
                    citations=tuple(_citation(i + 1, hit) for i, hit in enumerate(cited)),
                    see_also=tuple(_citation(i + 1, hit) for i, hit in enumerate(also)),
                )
            log.debug("declining %r: no valid citation", question.text)
        closest = [p for p in passages if p.scores.get("dense", 0.0) >= policy.related_dense][:3]
        text = DECLINE_TEXT
        if closest:
            text += " These sources look related:"
        return replace(
            base,
            text=text,
            confidence=confidence,
            citations=tuple(_citation(i + 1, hit) for i, hit in enumerate(closest)),
        )

    def _save(self, answer: Answer) -> None:
        if self.store is None:
            return
        try:
            self.store.save_answer(answer)
        except ProviderError as exc:
            # The answer still goes out; losing its log entry is better than losing the reply.
            log.error("could not store answer %s: %s", answer.id, exc)
