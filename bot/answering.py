"""The answer service: Question → retrieval → generation → citation check → Answer (or a decline).

Flow: the question is rewritten into a standalone query using the thread's earlier turns;
hybrid retrieval runs with the asker's access groups as the filter (inside the index,
before ranking); the decline policy looks at the retrieval scores (the best passage's
cosine, or failing that the best cosine of one of the top passages' sentences); the generator writes a
reply citing [n]; citations to numbers that were not given are dropped, and a reply with
no valid citation left is declined; then three checks on what was cited:

- support: the cited passages contain the question's key terms (rarity-weighted; the last
  turn's own terms count fully, terms carried from earlier turns less), or a sentence of a
  cited passage all but restates the last turn (cosine >= ``DeclinePolicy.verbatim``);
- answer type (bot/answertype.py): a question that asks for a price, a number, a duration,
  a language or a place is declined when the cited sentences hold nothing of that kind;
- own content: a follow-up with no content words of its own ("Are those the only
  steps?", "Can you give an example?") is declined: it asks about the previous reply,
  and citing passages on the carried topic would only repeat it.

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

from bot.answertype import expected_type, has_type
from bot.errors import ProviderError
from bot.phrasing import hedge
from bot.ports import AnswerStore, ChunkIndex, Generation, GenerationRequest, Generator, QueryRewriter
from bot.prompt import PROMPT_VERSION, is_not_found
from bot.retrieval import Retrieval, Retriever
from bot.rewrite import standalone_query
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
from knowledge.text import content_words

log = logging.getLogger(__name__)

_CITE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_CODE = re.compile(r"(```.*?(?:```|\Z)|`[^`\n]*`)", re.S)
SEE_ALSO = 3  # at most this many other relevant sources under "See also"

SENTENCE_PASSAGES = 5  # the sentence gate looks at the sentences of this many top passages
MAX_SENTENCES = 12  # and embeds at most this many (a bound on its cost)

DECLINE_TEXT = "I couldn't find this in the knowledge base, so I won't guess."


@dataclass(frozen=True)
class DeclinePolicy:
    """When to decline instead of answering. Calibrated per knowledge base (bot/calibration.py).

    ``min_dense``: the best passage's cosine must reach this (off-topic questions fail it).
    ``min_support``: the rarity-weighted share of the question's key terms that the best
    cited passage contains (the last turn's own terms count fully, terms carried over from
    earlier turns count ``carried_weight``). ``related_dense``: a passage this close is
    listed as a "closest source" in a decline.

    ``answer_type``: decline when the question asks for a kind of answer (a price, a number,
    a duration, a language, a place) that the cited sentences do not contain.
    ``own_content``: decline a follow-up with no subject words of its own.

    ``sentence_gate``: a question whose best passage misses ``min_dense`` still passes the
    gate when one *sentence* of the top passages reaches it (a passage vector averages its
    sentences, so the one sentence that answers can be closer than its passage).
    ``verbatim``: a sentence of a cited passage this close (cosine) to the last turn answers
    it even when the support check fails (carried-over topic words after a subject change
    drag support down; a sentence that restates the question is on topic by construction).
    0 disables it. Both cost one small embedding batch, only when their check would fail.
    On mtrag_cloud (calibrated policy) they took answered 0.872 -> 0.907 and cited_relevant
    0.826 -> 0.860 with declined unchanged (0.822); verbatim 0.8, 0.85 and 0.9 gave the same.
    (A minimum share of the last turn's own rare terms in the cited passage was tried and
    dropped: on mtrag_cloud it cost more answerable questions than it declined.)

    ``support_passages``: only cited passages among the first this many count for support
    (0: all). The extractive answerer may quote up to 8 passages so the one that answers is
    more often cited; a quote from far down the list must not be what lets a question the
    knowledge base does not answer through. ``covered_dense``: when the best keyword hit
    holds every content word of the query, ``min_dense`` is multiplied by this (a short
    question, "Can I configure Tint?", has a low cosine to a long passage that names it).
    Measured with the extractive answerer quoting 8 passages (emanual_tv cited_relevant /
    mtrag_cloud declined, precision): support from all cited passages 0.900 / 0.800, 0.816;
    from the first 5 0.899 / 0.822, 0.819; and covered_dense 0.8 0.906 / 0.822, 0.819.
    """

    min_dense: float = 0.40
    min_support: float = 0.34
    related_dense: float = 0.50
    carried_weight: float = 0.5
    answer_type: bool = True
    own_content: bool = True
    sentence_gate: bool = True
    verbatim: float = 0.85
    support_passages: int = 5
    covered_dense: float = 0.8

    def scaled(self, strictness: float) -> DeclinePolicy:
        """This policy with both thresholds multiplied by ``strictness`` (1.0: unchanged)."""
        return replace(self, min_dense=self.min_dense * strictness, min_support=self.min_support * strictness)


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


# Words of conversation, not of the subject: they say nothing about whether a passage answers.
CHATTER = frozenset(
    [
        "sorry",
        "apologies",
        "confused",
        "heard",
        "meant",
        "ask",
        "asking",
        "mean",
        "means",
        "meaning",
        "tell",
        "explain",
        "understand",
        "sure",
        "right",
        "okay",
        "ok",
        "thank",
        "like",
        "way",
        "exactly",
        "bit",
        "little",
        "kind",
        "sort",
        "really",
        "just",
        "also",
        "still",
        "something",
        "anything",
        "thing",
        "things",
        "able",
        "possible",
        "mentioned",
        "seeing",
        "see",
        "keep",
        "lot",
        "say",
        "saying",
        "said",
        "think",
        "guess",
        "wonder",
        "wondering",
        "interested",
        "curious",
        "trying",
        "try",
        "oh",
        "yes",
        "yeah",
        "great",
        "cool",
        "good",
        "fine",
        "actually",
        "maybe",
        "perhaps",
        "pls",
        "plz",
        "give",
        "show",
        "provide",
        "help",
        "let",
        "lets",
        # Troubleshooting framing: "How do I fix the screen colour issues?" asks about the
        # screen colour; a passage on it need not say "fix" or "issue".
        "fix",
        "issue",
        "issues",
        "problem",
        "problems",
    ]
)


# Words a follow-up uses to point back at the previous reply rather than to name a subject:
# "Are those the only steps?", "Can you give an example?", "there should be one".
POINTERS = frozenset(
    [
        "step",
        "steps",
        "example",
        "examples",
        "detail",
        "details",
        "info",
        "information",
        "one",
        "ones",
        "else",
    ]
)


class TermStats:
    """Document frequencies of words in the index (through its keyword search), cached.

    Rare words weigh more in the support check: "Spanish" missing from a passage about
    Schematics says more than "configure" missing. Counts are capped at ``cap`` hits.
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


def key_terms(text: str) -> list[str]:
    """The question's content words (each once, in order) without conversational chatter."""
    return [w for w in dict.fromkeys(content_words(text)) if w not in CHATTER]


def own_content(question: str) -> list[str]:
    """The question's key terms that name a subject (not chatter, not pointers back)."""
    return [w for w in key_terms(question) if w not in POINTERS]


def support(
    question: str,
    texts: Sequence[str],
    *,
    query: str = "",
    idf: Callable[[str], float] | None = None,
    carried_weight: float = 0.5,
) -> float:
    """How much of what was asked ``texts`` contain: the best single text's share of the key terms.

    Terms of ``question`` (the last turn) weigh their rarity (``idf``, 1 each without it);
    terms only in ``query`` (the standalone rewrite: topic carried from earlier turns)
    weigh ``carried_weight`` times that. Terms are compared after a light stem.
    """
    from bot.extractive import stem

    weight = idf or (lambda _w: 1.0)
    own = key_terms(question)
    carried = [w for w in key_terms(query) if w not in own]
    weighted = [(stem(w), weight(w)) for w in own] + [(stem(w), carried_weight * weight(w)) for w in carried]
    total = sum(v for _, v in weighted)
    if total <= 0 or not texts:
        return 0.0 if texts else 0.0
    best = 0.0
    for text in texts:
        found = {stem(w) for w in content_words(text)}
        best = max(best, sum(v for t, v in weighted if t in found) / total)
    return best


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
    from knowledge.fingerprint import same_document

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
    :func:`knowledge.fingerprint.same_document`), at most ``SEE_ALSO``.
    """
    from knowledge.fingerprint import same_document

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
    ) -> None:
        self.rewriter = rewriter
        self.retriever = retriever
        self.generator = generator
        self.store = store
        self._policy = policy or DeclinePolicy()
        self.fallback = fallback
        self.k = k
        self.terms = TermStats(retriever.index)

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
        filters = SearchFilters(groups=frozenset(question.groups))
        retrieval = self.retriever.search(query, self.k, filters)
        timings["retrieve"] = (time.perf_counter() - started) * 1000
        policy = self.policy
        passages = retrieval.passages
        top_dense = max((p.scores.get("dense", 0.0) for p in passages), default=0.0)
        if passages and top_dense < policy.min_dense and policy.sentence_gate:
            top_dense = max(top_dense, self._sentence_similarity(query, passages[:SENTENCE_PASSAGES]))
        note = ""
        generation: Generation | None = None
        generator_name = self.generator.name
        gate = policy.min_dense
        if retrieval.coverage is not None and retrieval.coverage >= 1.0:
            gate *= policy.covered_dense
        if passages and top_dense >= gate:
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
        answer = self._finish(question, query, retrieval, generation, policy, top_dense, generator_name, note)
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
        return float((embedder.embed_documents(sentences) @ embedder.embed_query(text)).max())

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
        top_dense: float,
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
        if generation is not None and not generation.not_found:
            checked = check_citations(cite_once(generation.text, passages), len(passages))
            cited = [passages[n - 1] for n in checked.numbers]
            limit = policy.support_passages or len(passages)
            ranked_cited = [c for n, c in zip(checked.numbers, cited, strict=True) if n <= limit]
            also = see_also(cited, passages, policy.related_dense)
            supported = support(
                question.text,
                [c.chunk.text + " " + c.chunk.context for c in ranked_cited],
                query=query,
                idf=self.terms.idf,
                carried_weight=policy.carried_weight,
            )
            reason = self._objection(question.text, checked.text, cited, supported, policy)
            if (
                reason.startswith("support")
                and policy.verbatim
                and self._sentence_similarity(question.text, cited) >= policy.verbatim
            ):
                supported = policy.min_support
                reason = self._objection(question.text, checked.text, cited, supported, policy)
            if reason:
                log.debug("declining %r: %s", question.text, reason)
            else:
                confidence = round(min(1.0, 0.5 * supported + 0.5 * min(1.0, top_dense / 0.8)), 3)
                return replace(
                    base,
                    text=hedge(checked.text, confidence),
                    decision=Decision.ANSWERED,
                    confidence=confidence,
                    citations=tuple(_citation(i + 1, hit) for i, hit in enumerate(cited)),
                    see_also=tuple(_citation(i + 1, hit) for i, hit in enumerate(also)),
                )
        closest = [p for p in passages if p.scores.get("dense", 0.0) >= policy.related_dense][:3]
        text = DECLINE_TEXT
        if closest:
            text += " These sources look related:"
        return replace(
            base,
            text=text,
            confidence=round(max(0.0, top_dense), 3),
            citations=tuple(_citation(i + 1, hit) for i, hit in enumerate(closest)),
        )

    def _objection(
        self,
        question: str,
        text: str,
        cited: Sequence[ScoredChunk],
        supported: float,
        policy: DeclinePolicy,
    ) -> str:
        """Why the reply ``text`` citing ``cited`` does not answer ``question`` ("" when it does)."""
        if not cited:
            return "no valid citation"
        if supported < policy.min_support:
            return f"support {supported:.2f} < {policy.min_support}"
        if policy.own_content and not own_content(question):
            return "a follow-up with no subject of its own"
        if policy.answer_type:
            kind = expected_type(question)
            if kind is not None and not has_type(text, kind, question):
                return f"asks for a {kind.value}; the cited sentences hold none"
        return ""

    def _save(self, answer: Answer) -> None:
        if self.store is None:
            return
        try:
            self.store.save_answer(answer)
        except ProviderError as exc:
            # The answer still goes out; losing its log entry is better than losing the reply.
            log.error("could not store answer %s: %s", answer.id, exc)
