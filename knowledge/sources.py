"""Keeping a registered source in sync with the index, incrementally and resumably.

One sync of a source:

1. takes the source's unfinished run id when a previous sync crashed (its checkpoint), else
   a new one: every document version the sync records is tagged with it, so a resumed sync is
   one ingest run (``supportbot rollback --run`` undoes all of it);
2. lists the source (cheap: ids and change markers);
3. loads and ingests only items whose marker differs from the one recorded after they were last
   ingested; the Ingestor then embeds only documents whose content hash changed;
4. records each item's marker as soon as its documents are in the index (in small batches):
   this per-document state is the checkpoint that a resumed sync skips;
5. removes from the index the documents of items that are no longer listed (only after a
   complete listing: a failed listing raises before anything is removed);
6. marks the run finished.

A crash anywhere leaves the index consistent: ``ChunkIndex.replace`` is atomic per document,
and a document re-ingested after a crash replaces its chunks (no duplicates) or, unchanged,
costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from bot.errors import SourceError, SourceSkipped
from bot.ports import Connector, RemoteItem, SourceDocument, SyncStateStore
from bot.types import Document, replaced_summary
from knowledge.connectors.web import load_url
from knowledge.fetch import Fetcher, SourceGone
from knowledge.loaders import ALL_FILES, FileSelection, iter_documents
from knowledge.pipeline import Ingestor
from knowledge.progress import IngestProgress


@dataclass(frozen=True)
class Source:
    """A registered source: what to sync, how often, and how its last sync went.

    ``options`` holds the kind's settings (never credentials: those come from Settings).
    ``interval_s`` None means it is synced only on request.
    """

    id: str
    name: str
    kind: str
    options: Mapping[str, str] = field(default_factory=dict)
    access: tuple[str, ...] = ("public",)
    interval_s: int | None = None
    status: str = "idle"  # idle | queued | running | done | failed
    last_sync_at: datetime | None = None
    next_due_at: datetime | None = None
    last_error: str = ""
    last_summary: str = ""
    documents: int = 0


@dataclass(frozen=True)
class SyncReport:
    """What one sync did, counted by item (an item can hold several documents)."""

    run_id: str
    listed: int = 0
    skipped: int = 0  # marker unchanged: not even loaded
    added: int = 0
    changed: int = 0
    unchanged: int = 0  # loaded, but the content hash was unchanged: nothing embedded
    removed: int = 0  # documents removed from the index
    failed: tuple[tuple[str, str], ...] = ()
    chunks_embedded: int = 0
    resumed: bool = False
    seconds: float = 0.0
    replaced: tuple[tuple[str, str], ...] = ()  # (what was there, what replaced it)
    left_out: tuple[tuple[str, str], ...] = ()  # skipped on purpose: unsupported, excluded, empty

    def summary(self) -> str:
        """One line for the CLI, the chat adapters and the sources table."""
        text = (
            f"{self.listed} listed: {self.added} added, {self.changed} changed, "
            f"{self.unchanged + self.skipped} unchanged, {self.removed} removed, "
            f"{len(self.left_out)} skipped, {len(self.failed)} failed; "
            f"{self.chunks_embedded} chunks embedded in {self.seconds:.1f}s"
        )
        return text + replaced_summary(self.replaced) + (" (resumed)" if self.resumed else "")


SyncProgress = Callable[[int, "int | None", str], None]
"""Called with (items done, items in total or None while listing, current item)."""


@dataclass
class _Tracker:
    """Maps ingested documents back to their items and checkpoints finished items in batches."""

    source_id: str
    store: SyncStateStore
    embedder: str
    run_id: str
    progress: SyncProgress
    total: int
    batch: int = 200
    every_s: float = 2.0  # checkpoint at least this often, so a crash loses little work
    last_flush: float = field(default_factory=time.monotonic)
    done: int = 0
    waiting: dict[str, tuple[RemoteItem, set[str], tuple[str, ...]]] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)  # doc id -> external id
    finished: list[SourceDocument] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def expect(self, item: RemoteItem, doc_ids: tuple[str, ...]) -> None:
        self.waiting[item.external_id] = (item, set(doc_ids), doc_ids)
        for doc_id in doc_ids:
            self.owner[doc_id] = item.external_id
        if not doc_ids:
            self._complete(item.external_id)

    def note(self, doc_id: str, outcome: str) -> None:
        """The Ingestor's progress callback: a document is now durable in the index and store."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        external = self.owner.pop(doc_id, None)
        if external is None or external not in self.waiting:
            return
        _, pending, _ = self.waiting[external]
        pending.discard(doc_id)
        if not pending:
            self._complete(external)

    def step(self, current: str) -> None:
        self.done += 1
        self.progress(self.done, self.total, current)

    def _complete(self, external: str) -> None:
        item, _, doc_ids = self.waiting.pop(external)
        self.finished.append(SourceDocument(external, doc_ids, item.marker, self.embedder, self.run_id))
        self.step(external)
        if len(self.finished) >= self.batch or time.monotonic() - self.last_flush >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.finished:
            self.store.save_documents(self.source_id, self.finished)
            self.finished = []
        self.last_flush = time.monotonic()


class Syncer:
    """Syncs sources into one Ingestor, keeping per-item state in a SyncStateStore."""

    def __init__(self, ingestor: Ingestor, state: SyncStateStore, *, checkpoint_every: int = 200) -> None:
        self.ingestor = ingestor
        self.state = state
        self.checkpoint_every = checkpoint_every

    def sync(
        self,
        source: Source,
        connector: Connector,
        *,
        run_id: str,
        progress: SyncProgress | None = None,
    ) -> SyncReport:
        """Bring the index in line with ``source``; see the module docstring.

        ``run_id`` is used unless the source has an unfinished run, which is resumed instead.
        Raises ProviderUnavailable (e.g. SourceUnavailable) on transient failures and
        SourceError when the source cannot be listed; per-item failures are reported.
        """
        started = time.perf_counter()
        note = progress or (lambda _done, _total, _current: None)
        active, resumed = self.state.begin_sync(source.id, run_id)
        known = self.state.documents(source.id)
        embedder = self.ingestor.embedder.name

        note(0, None, "listing")
        listed: list[RemoteItem] = []
        for item in connector.items():
            listed.append(item)
            if len(listed) % 500 == 0:
                note(0, None, f"listing ({len(listed)} found)")
        present = {item.external_id for item in listed}

        tracker = _Tracker(source.id, self.state, embedder, active, note, len(listed), self.checkpoint_every)
        failed: list[tuple[str, str]] = []
        left_out: list[tuple[str, str]] = []
        counts = {"skipped": 0}
        gone: list[str] = []
        stale_docs: list[str] = []  # documents an item no longer produces (e.g. a shrunk JSONL file)
        claimed: set[str] = set()

        def documents() -> Iterator[Document]:
            for item in listed:
                prev = known.get(item.external_id)
                if item.error:
                    failed.append((item.url or item.external_id, item.error))
                    tracker.step(item.external_id)
                    continue
                if (
                    prev is not None
                    and item.marker is not None
                    and prev.marker == item.marker
                    and prev.embedder == embedder
                ):
                    counts["skipped"] += 1
                    tracker.step(item.external_id)
                    continue
                try:
                    docs = connector.load(item)
                except SourceGone:
                    gone.append(item.external_id)  # vanished between listing and loading
                    tracker.step(item.external_id)
                    continue
                except SourceSkipped as exc:
                    left_out.append((exc.path, exc.reason))
                    tracker.step(item.external_id)
                    continue
                except SourceError as exc:
                    failed.append((exc.path, exc.reason))
                    tracker.step(item.external_id)
                    continue
                docs = [
                    d for d in docs if d.id not in claimed
                ]  # the Ingestor keeps the first of a duplicate id
                claimed.update(d.id for d in docs)
                ids = tuple(d.id for d in docs)
                if prev is not None:
                    stale_docs.extend(d for d in prev.doc_ids if d not in ids)
                tracker.expect(item, ids)
                yield from docs

        report = self.ingestor.ingest(documents(), source=source.name, progress=tracker.note, run_id=active)
        tracker.flush()

        # Deletions: items not listed any more, and those that vanished while loading.
        removed = 0
        vanished = [ext for ext in known if ext not in present] + gone
        to_remove = [d for ext in vanished if (prev := known.get(ext)) for d in prev.doc_ids] + stale_docs
        states = self.ingestor.store.states(source.name) if to_remove else {}  # one query, not one per doc
        for doc_id in to_remove:
            self.ingestor.remove(doc_id, source.name, active, states.get(doc_id))
            removed += 1
        if vanished:
            self.state.delete_documents(source.id, vanished)

        result = SyncReport(
            run_id=active,
            listed=len(listed),
            skipped=counts["skipped"],
            added=len(report.added),
            changed=len(report.changed),
            unchanged=len(report.unchanged),
            removed=removed,
            failed=tuple(failed) + report.failed,
            chunks_embedded=report.chunks_embedded,
            resumed=resumed,
            seconds=time.perf_counter() - started,
            replaced=report.replaced,
            left_out=tuple(left_out) + report.skipped,
        )
        self.state.finish_sync(source.id, active, result.summary())
        note(len(listed), len(listed), "")
        return result


# --- one-off ingests (the /ingest command, `supportbot ingest URL`) -------------------------------


def is_url(target: str) -> bool:
    """Whether ``target`` looks like a URL (any scheme: the fetcher refuses the unsafe ones)."""
    return "://" in target[:16]


def target_source(target: str, default: str = "local") -> str:
    """The source name a one-off ingest files its documents under: the host for a URL."""
    if is_url(target):
        return urlsplit(target).hostname or default
    return default


def target_documents(
    targets: Sequence[str],
    *,
    fetcher: Fetcher,
    source: str,
    access: tuple[str, ...],
    max_bytes: int,
    files_root: Path | None = None,
    select: FileSelection = ALL_FILES,
    progress: IngestProgress | None = None,
) -> Iterator[Document | SourceError]:
    """Documents of URLs (fetched under the SSRF rules), files and folders, with a SourceError per failure.

    With ``files_root`` only paths inside it are read: jobs queued from chat must not read
    arbitrary files of the worker's machine. Transient fetch failures (SourceUnavailable) raise.
    ``select`` chooses the files of folders; ``progress`` is told each file and URL as it is read.
    """
    for target in targets:
        if is_url(target):
            if progress is not None:
                progress.file(target)
            try:
                yield from load_url(fetcher, target, source=source, access=access)
            except SourceError as exc:
                yield exc
            continue
        path = Path(target).expanduser()
        if files_root is not None:
            root = files_root.resolve()
            if not path.resolve().is_relative_to(root):
                yield SourceError(
                    target,
                    f"only files under {root} can be ingested by a background job; "
                    "copy the file there, or use `supportbot ingest` on the machine that has it",
                )
                continue
        yield from iter_documents(
            [path], source=source, access=access, max_bytes=max_bytes, select=select, progress=progress
        )
