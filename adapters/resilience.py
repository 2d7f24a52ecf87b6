"""Wrappers that keep answers going when a provider or the database misbehaves.

- :class:`RetryBudget` — the one retry owner on the question path: retries
  ``ProviderUnavailable`` (429, 5xx, timeouts) with exponential backoff and jitter, honouring
  a "retry after Ns" hint, but never past ``budget_s`` in all; ``ProviderRejected``
  (malformed replies, bad keys) is not retried.
- :class:`ResilientReranker` — retries, then falls back to a second reranker (the offline
  cross-encoder) or to the fused order, marking the passages ``scores["rerank_fallback"]``
  so the trace says so.
- :class:`ResilientGenerator` — retries a generation within the budget (a stream only before
  its first delta); past it the ProviderError reaches AnswerService, which answers with the
  extractive fallback and says so in the answer's note.
- :class:`ResilientIndex` / :class:`ResilientEmbedder` — retry the query-path reads
  (searches, ``embed_query``); writes pass through untouched (the workers own their retries).
  With ``bounded=True`` (a remote index whose SDK retries on its own terms, i.e. Pinecone's REST
  data plane) each attempt also runs on a worker thread and is abandoned at the budget's end, so
  a question never waits past the budget for an SDK that is still backing off.
  When the budget runs out the ProviderError reaches the chat adapter, which posts its polite
  failure reply.
- :class:`SpoolingAnswerStore` — votes the database refuses are appended to a JSON-lines
  spool in the data directory and replayed, in order, on the next successful store call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from bot.errors import ProviderError, ProviderRejected, ProviderUnavailable
from bot.feedback import VoteRecord
from bot.ports import (
    AnswerStore,
    ChunkIndex,
    Embedder,
    Generation,
    GenerationRequest,
    Generator,
    Matrix,
    Reranker,
    ScoringIndex,
    Vector,
)
from bot.threads import process_pool
from bot.types import Answer, Chunk, Feedback, Platform, ScoredChunk, SearchFilters, Vote

log = logging.getLogger(__name__)

T = TypeVar("T")
BOUNDED_THREADS = 16  # bounded provider calls in flight at once (abandoned ones included)
_HINT = re.compile(r"retry after (\d+(?:\.\d+)?)s")


@dataclass
class RetryBudget:
    """Retries ``ProviderUnavailable`` with backoff until ``budget_s`` has been spent.

    ``attempts`` caps the tries; the delay before try n+1 is ``base_s * 2**n`` with full
    jitter (or the provider's hint, when it gave one), and a retry whose wait would end past
    the budget is not made: the last error is raised instead. ``call(..., bounded=True)`` also
    stops waiting for an attempt at the budget's end (see :meth:`call`).
    """

    budget_s: float = 6.0
    attempts: int = 4
    base_s: float = 0.2
    max_delay_s: float = 3.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def call(self, what: str, fn: Callable[[], T], *, bounded: bool = False) -> T:
        """``fn()``, retried within the budget. ``bounded``: run each attempt on a worker thread
        and give up on it when the budget ends (it finishes, unwatched, in the background) —
        for an SDK that retries on its own and could otherwise hold the question for longer."""
        deadline = self.clock() + self.budget_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._within(fn, deadline) if bounded else fn()
            except ProviderUnavailable as exc:
                delay = self.delay(attempt, exc)
                if attempt >= self.attempts or self.clock() + delay > deadline:
                    log.warning("%s failed after %d tries: %s", what, attempt, exc)
                    raise
                log.info("%s failed (%s); retrying in %.2fs", what, exc, delay)
                self.sleep(delay)

    def _within(self, fn: Callable[[], T], deadline: float) -> T:
        future = process_pool("provider", BOUNDED_THREADS).submit(fn)
        try:
            return future.result(timeout=max(0.0, deadline - self.clock()))
        except FutureTimeout:
            future.cancel()  # not started yet (every thread busy): never run it
            raise ProviderUnavailable(f"no reply within the {self.budget_s:g}s budget") from None

    def delay(self, attempt: int, exc: BaseException) -> float:
        hint = _HINT.search(str(exc))
        if hint:
            return float(hint.group(1))
        return min(self.max_delay_s, self.rng.uniform(0, self.base_s * 2 ** (attempt - 1)) + self.base_s / 2)


class ResilientReranker:
    """A Reranker that retries ``primary``, then uses ``fallback`` (or none) instead of failing."""

    def __init__(self, primary: Reranker, fallback: Reranker | None = None, retry: RetryBudget | None = None) -> None:
        self.primary = primary
        self.fallback = fallback
        self.retry = retry or RetryBudget()
        self.name = primary.name

    def rerank(self, query: str, passages: Sequence[ScoredChunk], top_k: int) -> list[ScoredChunk]:
        try:
            return self.retry.call(f"reranker {self.primary.name}",
                                   lambda: self.primary.rerank(query, passages, top_k))
        except ProviderError as exc:
            log.warning("reranker %s unavailable (%s); using %s", self.primary.name, exc,
                        self.fallback.name if self.fallback else "the fused order")
        ranked: list[ScoredChunk] = []
        if self.fallback is not None:
            try:
                ranked = self.fallback.rerank(query, passages, top_k)
            except ProviderError as exc:
                log.warning("fallback reranker %s failed too (%s); using the fused order", self.fallback.name, exc)
        if not ranked:
            ranked = [
                ScoredChunk(p.chunk, p.score, MappingProxyType({**p.scores, "rerank": p.score}))
                for p in list(passages)[:top_k]
            ]
        return [
            ScoredChunk(p.chunk, p.score, MappingProxyType({**p.scores, "rerank_fallback": 1.0})) for p in ranked
        ]


class ResilientGenerator:
    """A Generator whose calls are retried within the budget (a stream only before its first delta)."""

    def __init__(self, inner: Generator, retry: RetryBudget | None = None) -> None:
        self.inner = inner
        self.retry = retry or RetryBudget()
        self.name = inner.name

    def generate(self, request: GenerationRequest) -> Generation:
        return self.retry.call(f"generator {self.name}", lambda: self.inner.generate(request))

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        def opened() -> tuple[Iterator[str], str | None]:
            stream = self.inner.stream(request)
            return stream, next(stream, None)  # the request is made (and may fail) here

        stream, first = self.retry.call(f"generator {self.name}", opened)
        if first is not None:
            yield first
            yield from stream


class ResilientIndex:
    """A ChunkIndex whose searches and count are retried within the budget; writes pass through.
    ``bounded``: no read waits past the budget, whatever the SDK does (see RetryBudget.call)."""

    def __init__(self, inner: ChunkIndex, retry: RetryBudget | None = None, *, bounded: bool = False) -> None:
        self.inner = inner
        self.retry = retry or RetryBudget()
        self.name = inner.name
        self.bounded = bounded

    def _read(self, fn: Callable[[], T]) -> T:
        return self.retry.call(f"index {self.name}", fn, bounded=self.bounded)

    def replace(self, doc_id: str, chunks: Sequence[Chunk], vectors: Matrix) -> None:
        self.inner.replace(doc_id, chunks, vectors)

    def delete(self, doc_ids: Sequence[str]) -> None:
        self.inner.delete(doc_ids)

    def dense_search(self, vector: Vector, k: int, filters: SearchFilters) -> list[ScoredChunk]:
        return self._read(lambda: self.inner.dense_search(vector, k, filters))

    def keyword_search(self, query: str, k: int, filters: SearchFilters) -> list[ScoredChunk]:
        return self._read(lambda: self.inner.keyword_search(query, k, filters))

    def count(self) -> int:
        return self._read(self.inner.count)


class ResilientScoringIndex(ResilientIndex):
    """A ResilientIndex over an index that also scores given candidates (the local index):
    ``vectors`` and ``keyword_scores`` are retried like the searches."""

    def __init__(self, inner: ScoringIndex, retry: RetryBudget | None = None, *, bounded: bool = False) -> None:
        super().__init__(inner, retry, bounded=bounded)
        self.scorer = inner

    def vectors(self, chunk_ids: Sequence[str]) -> Matrix:
        return self._read(lambda: self.scorer.vectors(chunk_ids))

    def keyword_scores(self, query: str, chunk_ids: Sequence[str]) -> list[float]:
        return self._read(lambda: self.scorer.keyword_scores(query, chunk_ids))


def resilient_index(inner: ChunkIndex, retry: RetryBudget | None = None, *, bounded: bool = False) -> ResilientIndex:
    """The right resilient wrapper for ``inner``: one that keeps its candidate scoring, if it has any."""
    if isinstance(inner, ScoringIndex):  # an optional capability of the port, not a concrete class
        return ResilientScoringIndex(inner, retry, bounded=bounded)
    return ResilientIndex(inner, retry, bounded=bounded)


class ResilientEmbedder:
    """An Embedder whose ``embed_query`` is retried within the budget (documents pass through)."""

    def __init__(self, inner: Embedder, retry: RetryBudget | None = None) -> None:
        self.inner = inner
        self.retry = retry or RetryBudget()
        self.name = inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_documents(self, texts: Sequence[str]) -> Matrix:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> Vector:
        return self.retry.call(f"embedder {self.name}", lambda: self.inner.embed_query(text))

    def prepare(self) -> None:
        self.inner.prepare()


def _feedback_to_json(f: Feedback) -> str:
    return json.dumps({
        "answer_id": f.answer_id, "user": f.user, "platform": f.platform.value, "vote": f.vote.value,
        "comment": f.comment, "created_at": None if f.created_at is None else f.created_at.isoformat(),
    })


def _feedback_from_json(line: str) -> Feedback:
    d = json.loads(line)
    created = d.get("created_at")
    return Feedback(
        answer_id=str(d["answer_id"]), user=str(d["user"]), platform=Platform(d["platform"]),
        vote=Vote(d["vote"]), comment=str(d.get("comment") or ""),
        created_at=None if not created else datetime.fromisoformat(created),
    )


class SpoolingAnswerStore:
    """An AnswerStore that never loses a vote to a database outage.

    ``save_feedback`` that fails with ProviderUnavailable appends the vote to ``spool`` (JSON lines,
    fsynced) and returns normally; the spool is replayed, in order, before the next vote and
    after the next answer that the database accepts. Replay is idempotent (one vote per
    user per answer; a later vote replaces the earlier one), so a crash mid-replay only
    repeats votes. Answers themselves are not spooled: AnswerService logs a failed save and the
    reply still goes out.
    """

    def __init__(self, inner: AnswerStore, spool: Path) -> None:
        self.inner = inner
        self.spool = spool
        self._lock = threading.Lock()

    def save_answer(self, answer: Answer) -> None:
        self.inner.save_answer(answer)
        try:
            self.replay()
        except ProviderError as exc:  # the answer is stored; the votes wait for the next chance
            log.warning("spooled votes not replayed yet: %s", exc)

    def get_answer(self, answer_id: str) -> Answer | None:
        return self.inner.get_answer(answer_id)

    def feedback_for(self, answer_id: str) -> list[Feedback]:
        return self.inner.feedback_for(answer_id)

    def vote_records(self) -> list[VoteRecord]:
        return self.inner.vote_records()

    def save_feedback(self, feedback: Feedback) -> None:
        try:
            self.replay()
            self.inner.save_feedback(feedback)
        except ProviderUnavailable as exc:  # rejected votes (no such answer) are the caller's to report
            log.warning("could not store a vote on %s (%s); spooled for retry", feedback.answer_id, exc)
            with self._lock:
                self.spool.parent.mkdir(parents=True, exist_ok=True)
                with self.spool.open("a", encoding="utf-8") as f:
                    f.write(_feedback_to_json(feedback) + "\n")
                    f.flush()
                    with contextlib.suppress(OSError):  # e.g. a filesystem without fsync
                        os.fsync(f.fileno())

    def pending(self) -> int:
        """How many votes wait in the spool."""
        with self._lock:
            if not self.spool.exists():
                return 0
            return sum(1 for line in self.spool.read_text(encoding="utf-8").splitlines() if line.strip())

    def replay(self) -> int:
        """Store the spooled votes; returns how many were handled. Raises ProviderUnavailable (and
        keeps the rest spooled) when the database is still down; a vote the database rejects for
        good (its answer was never stored) is dropped and logged."""
        with self._lock:
            if not self.spool.exists():
                return 0
            lines = [line for line in self.spool.read_text(encoding="utf-8").splitlines() if line.strip()]
            done = 0
            try:
                for line in lines:
                    try:
                        feedback = _feedback_from_json(line)
                    except (ValueError, KeyError, TypeError):
                        log.error("dropping an unreadable line of the vote spool")
                        done += 1
                        continue
                    try:
                        self.inner.save_feedback(feedback)
                    except ProviderRejected as exc:  # e.g. its answer was never stored: retrying can't help
                        log.error("dropping a spooled vote on %s: %s", feedback.answer_id, exc)
                    done += 1
            finally:
                rest = lines[done:]
                if rest:
                    tmp = self.spool.with_suffix(".tmp")
                    tmp.write_text("".join(line + "\n" for line in rest), encoding="utf-8")
                    tmp.replace(self.spool)
                else:
                    self.spool.unlink(missing_ok=True)
            if done:
                log.info("replayed %d spooled votes", done)
            return done
