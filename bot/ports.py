"""Every interface between the core and its providers, as Protocols with their contracts.

Implementations live in ``adapters/providers`` (and ``knowledge/`` for the document
store); the composition root (``adapters/factory.py``) picks them from the settings.
Each Protocol has one contract-test class in ``tests/contracts.py`` that every
implementation must pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.types import Answer, Chunk, Feedback, ScoredChunk, SearchFilters, Turn

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


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors.

    ``name`` identifies model and settings (vectors from different names are not
    comparable: the index is rebuilt when it changes). Deterministic for a given
    input. Raises ProviderUnavailable on transient failures, ProviderRejected otherwise.
    """

    name: str

    @property
    def dimension(self) -> int:
        """The length of every vector."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> Matrix:
        """Shape (len(texts), dimension); an empty input gives shape (0, dimension)."""
        ...

    def embed_query(self, text: str) -> Vector:
        """Shape (dimension,). May differ from embed_documents for asymmetric models."""
        ...


@runtime_checkable
class ChunkLookup(Protocol):
    """Optional: an index that returns stored chunks by id (the embedded index does).

    The extractive answerer uses it to read on past a chunk boundary: the chunks before and
    after a quoted one (ids ``f"{doc_id}#{ordinal}"``) of the same document.
    """

    def chunks(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        """The stored chunks among ``chunk_ids``, in the order given; unknown ids are skipped."""
        ...


@runtime_checkable
class ChunkIndex(Protocol):
    """Stores chunks with their vectors and finds them by vector and by keywords.

    ``replace`` is idempotent and atomic per document: a query sees either all the old
    chunks of the document or all the new ones. Searches apply ``filters`` inside the
    index, before ranking, and return at most ``k`` hits, best first, with
    ``scores["dense"]`` (cosine) or ``scores["keyword"]`` (higher is better).
    """

    name: str

    def replace(self, doc_id: str, chunks: Sequence[Chunk], vectors: Matrix) -> None:
        """Make ``chunks`` the only chunks of ``doc_id`` (an empty sequence deletes it)."""
        ...

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Remove every chunk of these documents; unknown ids are ignored."""
        ...

    def dense_search(self, vector: Vector, k: int, filters: SearchFilters) -> list[ScoredChunk]: ...

    def keyword_search(self, query: str, k: int, filters: SearchFilters) -> list[ScoredChunk]: ...

    def count(self) -> int:
        """The number of chunks stored."""
        ...


@runtime_checkable
class Reranker(Protocol):
    """Reorders candidate passages for a query.

    Returns at most ``top_k`` of the given passages (never new ones), best first, each
    with ``scores["rerank"]`` set and ``score`` equal to it. Pure: no side effects.
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

    Text inside passages is data, never instructions. Raises ProviderUnavailable or
    ProviderRejected on failure. ``stream`` yields text deltas whose concatenation is the
    text ``generate`` would return.
    """

    name: str

    def generate(self, request: GenerationRequest) -> Generation: ...

    def stream(self, request: GenerationRequest) -> Iterator[str]: ...


@runtime_checkable
class AnswerStore(Protocol):
    """Keeps every Answer with its trace, and the votes on them.

    ``save_answer`` is idempotent by answer id. ``save_feedback`` keeps one vote per
    (answer, user): a later vote replaces the earlier one. Raises ProviderUnavailable
    when the database cannot be reached.
    """

    def save_answer(self, answer: Answer) -> None: ...

    def get_answer(self, answer_id: str) -> Answer | None: ...

    def save_feedback(self, feedback: Feedback) -> None: ...

    def feedback_for(self, answer_id: str) -> list[Feedback]: ...


@dataclass(frozen=True)
class JobStatus:
    """Progress of one background job, readable by the CLI, the chat adapters and the web page.

    ``state``: queued | running | done | failed. ``summary`` is the IngestReport summary
    line when done; ``error`` the reason when failed (never a secret). While running,
    ``done``/``total`` count files or items, ``rate`` is items per second and ``eta_s`` the
    estimated seconds left (None while unknown).
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

    ``notify`` is opaque context the caller wants back with the job (e.g. who asked and
    where); it is stored with the job untouched. ``enqueue_ingest`` returns a job id at
    once; ``status`` reads the job's progress (unknown ids give state "unknown").
    """

    def enqueue_ingest(self, target: str, requested_by: str, notify: Mapping[str, str]) -> str: ...

    def status(self, job_id: str) -> JobStatus: ...


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

    ``record`` makes a new current version (``chunks`` empty and ``deleted`` for a
    removal), tagged with the ingest ``run_id``; the store keeps the previous version so
    ``rollback_run`` can restore it. Idempotent per (doc_id, run_id).
    """

    def states(self, source: str | None = None) -> dict[str, DocumentState]: ...

    def record(
        self,
        state: DocumentState,
        chunks: Sequence[Chunk],
        vectors: Matrix,
        run_id: str,
    ) -> None: ...

    def start_run(self, run_id: str, source: str) -> None: ...

    def finish_run(self, run_id: str, summary: str) -> None: ...

    def last_run(self) -> str | None: ...

    def rollback_run(self, run_id: str) -> list[tuple[str, StoredVersion | None]]:
        """Forget the versions ``run_id`` made current; return, per document, the version
        that is current again (``None``: the document did not exist before the run)."""
        ...

    def pending_renames(self, limit: int) -> list[tuple[str, StoredVersion | None]]:
        """Up to ``limit`` document ids the store renamed (a migration to a new id scheme)
        whose index entries still use the old id: (old id, current version under the new id,
        ``None`` when there is none to index). Empty once ``finish_renames`` covered them all."""
        ...

    def finish_renames(self, old_ids: Sequence[str]) -> None:
        """Record that the index now uses the new ids of these renames (idempotent)."""
        ...


@runtime_checkable
class QueryRewriter(Protocol):
    """Turns a follow-up question into a standalone search query using the earlier turns.

    Returns the question unchanged when it needs no context. Raises ProviderError when a
    model-backed rewriter fails (the caller falls back to the rule-based rewrite).
    """

    name: str

    def rewrite(self, question: str, history: Sequence[Turn]) -> str: ...
