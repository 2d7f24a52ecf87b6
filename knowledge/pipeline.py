"""Ingest: documents → chunks → vectors → index, idempotent, versioned and reversible.

- A document whose content hash and embedder are unchanged costs no embedding.
- A changed document replaces its chunks in one ``ChunkIndex.replace`` (atomic per document).
- With ``full_sync`` the documents of the source that were not seen are removed — only those
  under the ``scope`` given (the folders, files or URLs ingested), so re-ingesting one folder
  never touches another's documents.
- A document's id is its identity (source and full location, :mod:`bot.identity`).
  Overwriting a stored document that came from another location is reported in
  ``IngestReport.replaced``; a second document with the id of one already seen in the same
  ingest is reported as failed, not silently dropped.
- Ids a store migration renamed are renamed in the index before the first ingest or rollback.
- Every ingest is a run; ``rollback`` restores the versions from before the last run.
- One bad document never stops the batch: it is reported with its reason, as ``failed`` (could
  not be read or parsed) or ``skipped`` (left out on purpose: unsupported, excluded, empty).
- An :class:`~knowledge.progress.IngestProgress` passed in is kept up to date with the chunks
  found and embedded, for a progress display with a rate and an ETA.
- Batches are pipelined: while one batch is embedded (on a worker thread; onnxruntime and the
  cloud SDKs release the GIL), the previous one is written and the next one is read and chunked.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from bot.errors import SourceError, SourceSkipped
from bot.identity import document_id
from bot.ports import ChunkIndex, DocumentState, DocumentStore, Embedder
from bot.types import Chunk, Document, IngestReport
from knowledge.chunking import chunk_document
from knowledge.progress import IngestProgress

if TYPE_CHECKING:
    from bot.ports import Matrix

Progress = Callable[[str, str], None]
"""Called with (document id or path, outcome) after each document."""


def embedding_text(chunk: Chunk) -> str:
    """What is embedded for a chunk: its title and heading path as context, then the text."""
    context = chunk.context
    return f"{context}\n{chunk.text}" if context else chunk.text


@dataclass
class _Pending:
    doc: Document
    chunks: list[Chunk]
    state: DocumentState
    outcome: str  # "added" | "changed"


@dataclass
class _Tally:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    replaced: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    embedded: int = 0
    progress: IngestProgress | None = None

    def report(self) -> IngestReport:
        return IngestReport(
            added=tuple(self.added),
            changed=tuple(self.changed),
            unchanged=tuple(self.unchanged),
            removed=tuple(self.removed),
            failed=tuple(self.failed),
            chunks_embedded=self.embedded,
            replaced=tuple(self.replaced),
            skipped=tuple(self.skipped),
        )


class Ingestor:
    """Runs ingests into one index with one embedder, recording versions in a DocumentStore."""

    def __init__(
        self,
        embedder: Embedder,
        index: ChunkIndex,
        store: DocumentStore,
        *,
        chunk_size: int = 80,
        chunk_overlap: int = 20,
        batch_chunks: int = 256,
    ) -> None:
        self.embedder = embedder
        self.index = index
        self.store = store
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.batch_chunks = batch_chunks
        self._renamed = False

    def ingest(
        self,
        items: Iterable[Document | SourceError],
        *,
        source: str,
        full_sync: bool = False,
        scope: Sequence[str] | None = None,
        progress: Progress | None = None,
        run_id: str | None = None,
        tracker: IngestProgress | None = None,
    ) -> IngestReport:
        """Ingest documents (and report loader errors) for ``source``; see the module docstring.

        ``scope`` limits what ``full_sync`` removes to documents whose url is one of these
        locations (or a row of it, ``location#...``), or lies under one that ends with ``/``
        (a folder's ``file://`` URI). None: every document of the source.

        ``progress`` is called after each document with its outcome (``added``, ``changed``,
        ``unchanged``, ``removed``, ``skipped: reason`` or ``failed: reason``); ``tracker``
        counts the chunks found and embedded.
        """
        self.apply_renames()
        run_id = run_id or uuid.uuid4().hex
        self.store.start_run(run_id, source)
        known = self.store.states(source)
        seen: dict[str, Document] = {}
        failed_paths: set[str] = set()
        tally = _Tally(progress=tracker)
        pending: list[_Pending] = []
        pending_chunks = 0
        note = progress or (lambda _doc, _outcome: None)
        with _Batches(self, tally, run_id, note) as batches:
            for item in items:
                if isinstance(item, SourceSkipped):
                    tally.skipped.append((item.path, item.reason))
                    note(item.path, f"skipped: {item.reason}")
                    continue
                if isinstance(item, SourceError):
                    tally.failed.append((item.path, item.reason))
                    failed_paths.add(item.path)
                    note(item.path, f"failed: {item.reason}")
                    continue
                doc = item
                if (first := seen.get(doc.id)) is not None:
                    if first.url != doc.url or first.content_hash != doc.content_hash:
                        # Two different documents with one id: keep the first, never drop silently.
                        reason = f"same document id as {_where(first.url)}, which was kept"
                        tally.failed.append((_where(doc.url), reason))
                        note(_where(doc.url), f"failed: {reason}")  # by place: the id is the first's
                    continue
                seen[doc.id] = doc
                state = known.get(doc.id)
                if (
                    state is not None
                    and not state.deleted
                    and state.content_hash == doc.content_hash
                    and state.embedder == self.embedder.name
                ):
                    tally.unchanged.append(doc.id)
                    note(doc.id, "unchanged")
                    continue
                chunks = chunk_document(doc, size=self.chunk_size, overlap=self.chunk_overlap)
                version = 1 if state is None else state.version + 1
                new_state = DocumentState(doc.id, source, doc.content_hash, self.embedder.name, version, url=doc.url)
                outcome = "added" if state is None or state.deleted else "changed"
                if outcome == "changed" and state is not None and state.url and state.url != doc.url:
                    tally.replaced.append((_where(state.url), _where(doc.url)))
                pending.append(_Pending(doc, chunks, new_state, outcome))
                pending_chunks += len(chunks)
                if tracker is not None:
                    tracker.chunks_found += len(chunks)
                if pending_chunks >= self.batch_chunks:
                    batches.add(pending)
                    pending, pending_chunks = [], 0
            batches.add(pending)

        if full_sync:
            # A document that failed to load this time is kept, not removed: a transient
            # read error must not delete knowledge.
            kept = _failed_ids(source, failed_paths)
            gone = [
                d
                for d, s in known.items()
                if d not in seen
                and not s.deleted
                and (scope is None or _in_scope(s.url, scope))
                and d not in kept
                and d.rpartition("#")[0] not in kept
            ]
            for doc_id in gone:
                self.remove(doc_id, source, run_id, known[doc_id])
                tally.removed.append(doc_id)
                note(doc_id, "removed")
        report = tally.report()
        self.store.finish_run(run_id, report.summary())
        return report

    def remove(self, doc_id: str, source: str, run_id: str, state: DocumentState | None = None) -> None:
        """Remove one document from the index, keeping its last version for rollback.

        ``state`` is the document's current state when the caller already has it (saves a query).
        """
        self.apply_renames()
        if state is None:
            state = self.store.states(source).get(doc_id)
        import numpy as np  # here: an ingest that embeds and removes nothing never loads numpy

        version = 1 if state is None else state.version + 1
        self.index.delete([doc_id])
        self.store.record(
            DocumentState(doc_id, source, "", self.embedder.name, version, deleted=True, url=state.url if state else ""),
            (),
            np.zeros((0, 0), dtype=np.float32),
            run_id,
        )

    def remove_source(self, source: str) -> list[str]:
        """Remove every live document of ``source`` from the index in one run (``rollback``
        brings them back); returns their ids. Idempotent: a second call removes nothing."""
        run_id = uuid.uuid4().hex
        self.store.start_run(run_id, source)
        removed = []
        for doc_id, state in self.store.states(source).items():
            if not state.deleted:
                self.remove(doc_id, source, run_id, state)
                removed.append(doc_id)
        self.store.finish_run(run_id, f"removed source {source}: {len(removed)} documents")
        return removed

    def _write(self, pending: list[_Pending], vectors: Matrix, tally: _Tally, run_id: str, note: Progress) -> None:
        tally.embedded += len(vectors)
        if tally.progress is not None:
            tally.progress.chunks_embedded += len(vectors)
        start = 0
        for p in pending:
            mine = vectors[start : start + len(p.chunks)]
            start += len(p.chunks)
            self.index.replace(p.doc.id, p.chunks, mine)
            self.store.record(p.state, p.chunks, mine, run_id)
            (tally.added if p.outcome == "added" else tally.changed).append(p.doc.id)
            note(p.doc.id, p.outcome)

    def rollback(self, run_id: str | None = None) -> list[str]:
        """Undo an ingest run (default: the last one); returns the documents restored."""
        self.apply_renames()
        run_id = run_id or self.store.last_run()
        if run_id is None:
            return []
        restored = self.store.rollback_run(run_id)
        for doc_id, version in restored:
            if version is None or version.state.deleted or not version.chunks:
                self.index.delete([doc_id])
            else:
                self.index.replace(doc_id, version.chunks, version.vectors)
        return [doc_id for doc_id, _ in restored]

    def apply_renames(self, batch: int = 200) -> int:
        """Bring the index in line with ids the store renamed (a migrated database): each
        renamed document is indexed under its new id from its stored version (no embedding)
        and its old id deleted. Done once per Ingestor; idempotent and resumable."""
        if self._renamed:
            return 0
        done = 0
        while pending := self.store.pending_renames(batch):
            for old_id, version in pending:
                if version is not None and not version.state.deleted and version.chunks:
                    self.index.replace(version.state.doc_id, version.chunks, version.vectors)
                self.index.delete([old_id])
            self.store.finish_renames([old_id for old_id, _ in pending])
            done += len(pending)
        self._renamed = True
        return done


class _Batches:
    """Embeds each added batch on a worker thread and writes the one before it meanwhile, in
    order. Leaving the block writes what is left; after an error (a crash while loading, an
    embedder that failed) it still writes the batches already embedded, up to the first that
    failed: the next ingest embeds only what was not written."""

    def __init__(self, ingestor: Ingestor, tally: _Tally, run_id: str, note: Progress) -> None:
        self.ingestor, self.tally, self.run_id, self.note = ingestor, tally, run_id, note
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="ingest-embed")
        self.queue: deque[tuple[list[_Pending], Future[Matrix]]] = deque()

    def __enter__(self) -> _Batches:
        return self

    def add(self, pending: list[_Pending]) -> None:
        if pending:
            texts = [embedding_text(c) for p in pending for c in p.chunks]
            self.queue.append((pending, self.pool.submit(self.ingestor.embedder.embed_documents, texts)))
        while len(self.queue) > 1:
            self._write_first()

    def _write_first(self) -> None:
        pending, vectors = self.queue.popleft()
        self.ingestor._write(pending, vectors.result(), self.tally, self.run_id, self.note)

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            while self.queue:
                if error is not None and self.queue[0][1].exception() is not None:
                    break  # already failing: the original error is the one to report
                self._write_first()
        finally:
            for _, vectors in self.queue:
                vectors.cancel()
            self.pool.shutdown(wait=True)


def _failed_ids(source: str, failed_paths: set[str]) -> set[str]:
    """The ids of the documents whose file or URL failed to load (a JSONL file's rows share its prefix)."""
    out = set()
    for path in failed_paths:
        url = path if "://" in path[:16] else Path(os.path.abspath(path)).as_uri()
        out.add(document_id(source, url))
    return out


def _in_scope(url: str, scope: Sequence[str]) -> bool:
    return bool(url) and any(
        url == s or url.startswith(s + "#") or (s.endswith("/") and url.startswith(s)) for s in scope
    )


def _where(url: str) -> str:
    """A location for the summary: a file's path, else the URL."""
    if url.startswith("file:"):
        base, sep, fragment = url.partition("#")
        return url2pathname(urlsplit(base).path) + (f"#{unquote(fragment)}" if sep else "")
    return url
