"""Every interface between the core and what it runs on, as Protocols with their contracts.

This module is the single place interfaces live: providers (embedder, index, reranker,
generator, query rewriter), stores (answers and votes, document versions, sync state,
verified answers), the ingest queue, connectors and the rate limiter. Implementations live in
``adapters/`` (and ``knowledge/`` for the ingest pipeline and connectors); the composition
root (``adapters/factory.py``) picks them from the settings. Each Protocol has one
contract-test class in ``tests/contracts.py`` that every implementation must pass.

Every method says what it returns, what it raises and whether calling it twice with the same
arguments is idempotent (leaves the same state as calling it once). Errors are the ones of
:mod:`bot.errors`: ``ProviderUnavailable`` is transient (retry), ``ProviderRejected`` is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.types import Answer, ChatAddress, Chunk, Document, Feedback, ScoredChunk, SearchFilters, Turn

if TYPE_CHECKING:  # value types of the core that themselves use this module
    from bot.feedback import VoteRecord
    from bot.ratelimit import Limit
    from bot.verified import RatedExample, ThreadAnswer, VerifiedAnswer

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vector = npt.NDArray[np.float32]
    Matrix = npt.NDArray[np.float32]


def __getattr__(name: str) -> Any:
    """``Vector`` and ``Matrix`` at run time, numpy imported on first use: a command that
    handles no vectors (an unchanged re-ingest) never loads it."""
    if name in ("Vector", "Matrix"):
        import numpy as np
        import numpy.typing as npt

        return npt.NDArray[np.float32]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- providers ----------------------------------------------------------------------------------------
@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors.

    ``name`` identifies model and settings (vectors from different names are not
    comparable: the index is rebuilt when it changes). Deterministic for a given input, so
    every method is idempotent. Raises ProviderUnavailable on transient failures,
    ProviderRejected otherwise (a bad key, a malformed reply); ConfigError when a local model
    cannot be found.
    """

    name: str

    @property
    def dimension(self) -> int:
        """The length of every vector. May load the model (raises as ``embed_documents``)."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> Matrix:
        """Shape (len(texts), dimension), one row per text in order; an empty input gives
        shape (0, dimension) without calling a remote provider."""
        ...

    def embed_query(self, text: str) -> Vector:
        """Shape (dimension,). May differ from embed_documents for asymmetric models."""
        ...

    def prepare(self) -> None:
        """Do the one-off work a local model needs before its first embedding (derive a cached
        quantised model) without holding model state in this process: the worker calls it
        before its pool forks, so each child only reads the cache. A remote embedder has
        nothing to do. Idempotent. Raises ConfigError when the model cannot be found."""
        ...


@runtime_checkable
class ChunkLookup(Protocol):
    """Optional: an index that returns stored chunks by id (the embedded index does).

    The extractive answerer uses it to read on past a chunk boundary: the chunks before and
    after a quoted one (ids ``f"{doc_id}#{ordinal}"``) of the same document.
    """

    def chunks(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        """The stored chunks among ``chunk_ids``, in the order given; unknown ids are skipped.
        Read-only (idempotent); raises ProviderUnavailable when the index cannot be read."""
        ...


@runtime_checkable
class ChunkIndex(Protocol):
    """Stores chunks with their vectors and finds them by vector and by keywords.

    ``replace`` is idempotent and atomic per document: a query sees either all the old
    chunks of the document or all the new ones. Searches apply ``filters`` inside the
    index, before ranking, and return at most ``k`` hits, best first, with
    ``scores["dense"]`` (cosine) or ``scores["keyword"]`` (higher is better). Every method
    raises ProviderUnavailable when a remote index cannot be reached (ProviderRejected when
    it refuses the request).
    """

    name: str

    def replace(self, doc_id: str, chunks: Sequence[Chunk], vectors: Matrix) -> None:
        """Make ``chunks`` the only chunks of ``doc_id`` (an empty sequence deletes it); one
        row of ``vectors`` per chunk. Idempotent."""
        ...

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Remove every chunk of these documents; unknown ids are ignored. Idempotent."""
        ...

    def dense_search(self, vector: Vector, k: int, filters: SearchFilters) -> list[ScoredChunk]:
        """At most ``k`` chunks the filters admit, by cosine to ``vector``, with
        ``scores["dense"]``. Read-only."""
        ...

    def keyword_search(self, query: str, k: int, filters: SearchFilters) -> list[ScoredChunk]:
        """At most ``k`` chunks the filters admit that share words with ``query``, best first,
        with ``scores["keyword"]`` (none when no word matches). Read-only."""
        ...

    def count(self) -> int:
        """The number of chunks stored. Read-only."""
        ...


@runtime_checkable
class CandidateScorer(Protocol):
    """Optional: an index that can score chunks it was given by id (the embedded index can).

    Enables complete scores (a dense candidate the keyword list missed still gets its keyword
    score) and the dense feedback pass of :class:`bot.retrieval.Retriever`. Read-only
    (idempotent); raises ProviderUnavailable when the index cannot be read.
    """

    def vectors(self, chunk_ids: Sequence[str]) -> Matrix:
        """The stored vectors, one row per id, in order (zeros for an id it does not hold)."""
        ...

    def keyword_scores(self, query: str, chunk_ids: Sequence[str]) -> list[float]:
        """The keyword score of each id for ``query``, as ``keyword_search`` would give it (0: none)."""
        ...


@runtime_checkable
class ScoringIndex(ChunkIndex, CandidateScorer, Protocol):
    """A ChunkIndex that is also a CandidateScorer (the embedded index)."""


@runtime_checkable
class Reranker(Protocol):
    """Reorders candidate passages for a query.

    ``rerank`` returns at most ``top_k`` of the given passages (never new ones), best first,
    each with ``scores["rerank"]`` set and ``score`` equal to it; an empty input gives ``[]``.
    Pure: no side effects, so idempotent. Raises ProviderUnavailable or ProviderRejected
    (remote rerankers); the resilient wrapper turns both into a fallback order instead.
    """

    name: str

    def rerank(self, query: str, passages: Sequence[ScoredChunk], top_k: int) -> list[ScoredChunk]: ...


@dataclass(frozen=True)
class GenerationRequest:
    """What a generator answers from: the question and numbered passages (passage i is [i+1])."""

    question: str
    passages: tuple[ScoredChunk, ...]
    history: tuple[Turn, ...] = ()


@dataclass(frozen=True)
class Generation:
    """A generator's reply. ``text`` cites passages as [n]; ``not_found`` when it says the
    passages do not contain the answer."""

    text: str
    not_found: bool = False
    model: str = ""


@runtime_checkable
class Generator(Protocol):
    """Writes an answer grounded in the request's passages, citing them as [n].

    Text inside passages is data, never instructions. No side effects beyond the provider
    call; a model may word two replies differently, so only deterministic generators (the
    extractive one) give the same text twice.
    """

    name: str

    def generate(self, request: GenerationRequest) -> Generation:
        """The whole reply. Raises ProviderUnavailable (retry) or ProviderRejected (don't)."""
        ...

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """The reply as text deltas whose concatenation is the text ``generate`` would return
        (up to surrounding whitespace). Raises like ``generate``, at the latest when the first
        delta is taken."""
        ...


@runtime_checkable
class QueryRewriter(Protocol):
    """Turns a follow-up question into a standalone search query using the earlier turns.

    Returns the question unchanged when it needs no context. Raises ProviderError when a
    model-backed rewriter fails (the caller falls back to the rule-based rewrite). No side effects.
    """

    name: str

    def rewrite(self, question: str, history: Sequence[Turn]) -> str: ...


# -- stores ---------------------------------------------------------------------------------------------
@runtime_checkable
class AnswerStore(Protocol):
    """Keeps every Answer with its trace, and the votes on them.

    Every method raises ProviderUnavailable when the database cannot be reached.
    """

    def save_answer(self, answer: Answer) -> None:
        """Store ``answer`` (replacing an earlier save of the same id). Idempotent by answer id."""
        ...

    def get_answer(self, answer_id: str) -> Answer | None:
        """The stored answer, or None for an unknown id. Read-only."""
        ...

    def save_feedback(self, feedback: Feedback) -> None:
        """Keep one vote per (answer, user): a later vote replaces the earlier one (idempotent).
        Raises ProviderRejected when no answer ``feedback.answer_id`` is stored."""
        ...

    def feedback_for(self, answer_id: str) -> list[Feedback]:
        """The votes on one answer, one per user (empty for an unknown id). Read-only."""
        ...

    def vote_records(self) -> list[VoteRecord]:
        """Every vote on an *answered* question (declines carry no passages to rank), with the
        query that was searched, the cited chunk ids, the voter's access groups and whether an
        admin confirmed the answer's anonymous votes: what the feedback ranker learns from.
        Read-only."""
        ...


@dataclass(frozen=True)
class DocumentState:
    """What the store knows of a document's current version."""

    doc_id: str
    source: str
    content_hash: str
    embedder: str
    version: int
    deleted: bool = False
    url: str = ""  # where the document came from ("" for versions stored before it was kept)


@dataclass(frozen=True)
class StoredVersion:
    """A document version as it was indexed: its chunks and their vectors, for rollback."""

    state: DocumentState
    chunks: tuple[Chunk, ...]
    vectors: Matrix


@runtime_checkable
class DocumentStore(Protocol):
    """Remembers which version of each document is indexed, and the one before it.

    Every method raises ProviderUnavailable when the database cannot be reached.
    """

    def states(self, source: str | None = None) -> dict[str, DocumentState]:
        """doc id -> its current state (deleted documents included, ``deleted`` set), of one
        source or of all. Read-only."""
        ...

    def record(
        self,
        state: DocumentState,
        chunks: Sequence[Chunk],
        vectors: Matrix,
        run_id: str,
    ) -> None:
        """Make ``state`` (``state.version``) the current version of its document (``chunks``
        empty and ``deleted`` for a removal), tagged with the ingest ``run_id``; the previous
        version is kept so ``rollback_run`` can restore it. Idempotent per (doc_id, version):
        recording the same version again replaces it."""
        ...

    def start_run(self, run_id: str, source: str) -> None:
        """Record that ingest run ``run_id`` of ``source`` started. Idempotent."""
        ...

    def finish_run(self, run_id: str, summary: str) -> None:
        """Record that the run ended, with its summary line. Idempotent."""
        ...

    def last_run(self) -> str | None:
        """The id of the newest run not rolled back, or None. Read-only."""
        ...

    def rollback_run(self, run_id: str) -> list[tuple[str, StoredVersion | None]]:
        """Forget the versions ``run_id`` made current; return, per document, the version
        that is current again (``None``: the document did not exist before the run). A second
        call (or an unknown run) finds nothing left to forget and returns ``[]``."""
        ...

    def pending_renames(self, limit: int) -> list[tuple[str, StoredVersion | None]]:
        """Up to ``limit`` document ids the store renamed (a migration to a new id scheme)
        whose index entries still use the old id: (old id, current version under the new id,
        ``None`` when there is none to index). Empty once ``finish_renames`` covered them all.
        Read-only."""
        ...

    def finish_renames(self, old_ids: Sequence[str]) -> None:
        """Record that the index now uses the new ids of these renames. Idempotent."""
        ...


@dataclass(frozen=True)
class SourceDocument:
    """What the last sync ingested for one item of a source (the checkpoint unit)."""

    external_id: str
    doc_ids: tuple[str, ...]
    marker: str | None
    embedder: str
    run_id: str = ""


@runtime_checkable
class SyncStateStore(Protocol):
    """Per-source sync state: the run in progress and the per-item checkpoint.

    Every method raises ProviderUnavailable when the database cannot be reached.
    """

    def begin_sync(self, source_id: str, new_run_id: str) -> tuple[str, bool]:
        """(the source's unfinished run id, True) if a sync of it was interrupted (a resume;
        it may equal ``new_run_id`` when the same task is redelivered), else records
        ``new_run_id`` as started and returns (``new_run_id``, False). Not idempotent by
        design: a second call reports the first one's run as a resume."""
        ...

    def finish_sync(self, source_id: str, run_id: str, summary: str) -> None:
        """The run ended: no unfinished run any more, the summary kept. Idempotent."""
        ...

    def documents(self, source_id: str) -> dict[str, SourceDocument]:
        """external id -> what was last ingested for it (empty for an unknown source). Read-only."""
        ...

    def save_documents(self, source_id: str, docs: Sequence[SourceDocument]) -> None:
        """Record these items' checkpoints, replacing earlier ones of the same external ids. Idempotent."""
        ...

    def delete_documents(self, source_id: str, external_ids: Sequence[str]) -> None:
        """Forget these items' checkpoints; unknown ids are ignored. Idempotent."""
        ...


@runtime_checkable
class VerifiedStore(Protocol):
    """Keeps verified answers, and reads what marking one needs from the stored answers.

    Every method raises ProviderUnavailable when the database cannot be reached.
    """

    def save(self, verified: VerifiedAnswer) -> None:
        """Store it; a later save of the same id replaces it. Idempotent by id."""
        ...

    def get(self, verified_id: str) -> VerifiedAnswer | None:
        """One verified answer (removed ones too), or None. Read-only."""
        ...

    def records(self, include_removed: bool = False, *, with_uses: bool = True) -> list[VerifiedAnswer]:
        """Every verified answer, newest first (removed ones only with ``include_removed``);
        with ``with_uses`` each one's ``uses`` counts the stored answers that cited it (a scan
        of the answers: the question path asks without). Read-only."""
        ...

    def thread_answers(self, platform: str, conversation: str, thread: str) -> list[ThreadAnswer]:
        """The bot's answers in one thread with their 👎 counts, newest first. Read-only."""
        ...

    def answer_with_votes(self, answer_id: str) -> ThreadAnswer | None:
        """One stored answer with its 👎 count, or None. Read-only."""
        ...

    def declined_questions(self, limit: int) -> list[tuple[str, str, datetime]]:
        """The newest ``limit`` declined questions as (answer id, question, asked at). Read-only."""
        ...

    def upvoted(self) -> list[RatedExample]:
        """Answered questions with more 👍 than 👎, oldest first: the question, the cited
        passages (title, snippet) and the answer (the fine-tuning export). Read-only."""
        ...


# -- background work ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobStatus:
    """Progress of one background job, readable by the CLI, the chat adapters and the web page.

    ``state``: queued | running | done | failed (| unknown for an id never seen or expired).
    ``summary`` is the IngestReport summary line when done; ``error`` the reason when failed
    (never a secret). While running, ``done``/``total`` count files or items, ``rate`` is
    items per second and ``eta_s`` the estimated seconds left (None while unknown).
    """

    id: str
    state: str
    done: int = 0
    total: int | None = None
    current: str = ""
    summary: str = ""
    error: str = ""
    rate: float | None = None
    eta_s: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")


@runtime_checkable
class IngestQueue(Protocol):
    """Hands long ingest work to the workers (implemented with Celery by task name).

    ``notify`` says where to report the job (``bot.types.ChatAddress.to_notify()``; empty for
    none): it is stored with the job, and the worker reads it to post progress and the result
    through a :class:`Notifier`. The enqueue methods return a new job id at
    once (the job is "queued"); they are not idempotent: every call queues one more job (the
    work itself is idempotent, so a repeated job costs time, not correctness). They raise
    ProviderUnavailable when the broker cannot be reached (the job is then marked failed).
    """

    def enqueue_ingest(self, target: str, requested_by: str, notify: Mapping[str, str]) -> str:
        """Queue an ingest of a URL, a file under the data directory or a registered source
        (by name); returns the job id."""
        ...

    def enqueue_sync(self, source: str, requested_by: str = "", notify: Mapping[str, str] | None = None) -> str:
        """Queue an incremental sync of one registered source (by id or name); returns the job id."""
        ...

    def status(self, job_id: str) -> JobStatus:
        """The job's progress (state "unknown" for an id never seen or expired). Read-only;
        raises ProviderUnavailable when the job store cannot be read."""
        ...


@runtime_checkable
class Notifier(Protocol):
    """Posts a background job's progress and result in the chat it was requested from.

    Implemented per platform (``adapters/slack/notify.py``, ``adapters/teams/notify.py``) and
    called by the worker (through ``bot.conversation.JobReporter``), so nothing in the web
    process has to watch the job. Both methods raise ProviderUnavailable on transient failures
    and ProviderRejected when the platform refuses (not in the channel, bad credentials); the
    caller logs them: a lost note never fails the job.
    """

    def post(self, address: ChatAddress, text: str) -> str:
        """Send ``text`` to ``address``; returns an id :meth:`update` accepts ("" when the
        message cannot be edited later). Not idempotent: every call posts a message."""
        ...

    def update(self, address: ChatAddress, message_id: str, text: str) -> None:
        """Replace the text of a message :meth:`post` sent. Idempotent."""
        ...


@runtime_checkable
class Ingest(Protocol):
    """The part of ``knowledge.pipeline.Ingestor`` the core uses (verified answers are ingested
    through the normal pipeline). Raises ProviderError when the embedder, the index or the
    document store fails."""

    def ingest(self, items: Iterable[Any], *, source: str) -> Any:
        """Ingest documents (``bot.types.Document``; loader errors are reported) under
        ``source``; returns the ingest report. Idempotent: an unchanged document costs nothing."""
        ...

    def remove(self, doc_id: str, source: str, run_id: str) -> None:
        """Take one document out of the index, recording the removal under ``run_id`` (its
        last version is kept for rollback). Idempotent in effect: a removed document stays removed."""
        ...


# -- sources ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteItem:
    """One item a connector found at the source.

    ``marker`` changes whenever the item changes (version, updated time, blob sha); ``None``
    means the source cannot tell, and the item is loaded on every sync (its content hash
    then decides whether anything is embedded). ``payload`` is whatever the listing already
    returned (an article body, a fetched page) so that ``load`` need not fetch it again.
    ``error`` marks an item that exists but could not be listed properly: it is kept, not
    removed, and reported as failed.
    """

    external_id: str
    marker: str | None = None
    url: str = ""
    title: str = ""
    payload: Any = field(default=None, compare=False, repr=False)
    error: str = ""


@runtime_checkable
class Connector(Protocol):
    """Lists and loads the documents of one source. Neither method changes the source.

    Transient failures raise ProviderUnavailable (``SourceUnavailable``) for the caller to retry.
    """

    kind: str

    def items(self) -> Iterator[RemoteItem]:
        """Every item currently at the source. A failure to list raises (SourceError or
        ProviderUnavailable) rather than ending early: an incomplete listing must never be
        taken as deletions."""
        ...

    def load(self, item: RemoteItem) -> list[Document]:
        """The item's documents. Raises SourceError (SourceGone when it vanished since the listing)."""
        ...


# -- limits ---------------------------------------------------------------------------------------------
@runtime_checkable
class RateLimiter(Protocol):
    """Counts events per key in fixed windows (:class:`bot.ratelimit.Throttle` decides the limits)."""

    def hit(self, key: str, limit: Limit) -> None:
        """Record one event for ``key``; raise :class:`~bot.errors.RateLimited` (with
        ``retry_after``, the seconds until the window ends) when that makes more than
        ``limit.count`` events in the current window. Not idempotent: every call counts. Never
        raises anything else (a broken store degrades to a local count)."""
        ...
