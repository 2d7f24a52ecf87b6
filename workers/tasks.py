"""Thin Celery tasks: they take ids and strings, get Services from the worker app, and call knowledge/.

The tasks are shared tasks registered by name: importing this module makes no app and reads
no settings (the app's ``task_annotations`` give the time limits and retry counts).

Every task: ``acks_late`` with an idempotent body, retries with exponential backoff on
ProviderUnavailable (network, rate limits, 5xx, database or Redis hiccups) and nothing else,
a soft and a hard time limit, and job progress in Redis. After the last retry the job is
"failed" with the reason. One sync of a source runs at a time (a Redis lock that expires
unless the sync holding it keeps renewing it, so a killed worker's lock frees itself).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import redis
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from adapters.celery_queue import INGEST_TASK, SYNC_DUE_TASK, SYNC_SOURCE_TASK, JobStore
from adapters.factory import Services, build
from bot.conversation import JobNotes
from bot.errors import ProviderUnavailable, SourceError, SupportbotError
from bot.ports import JobStatus
from knowledge.loaders import walk_files
from knowledge.progress import IngestProgress
from knowledge.sources import Source, is_url, target_documents, target_source
from workers.app import get_app, services_of

log = logging.getLogger(__name__)

_services: tuple[int, Services] | None = None


def services() -> Services:
    """This worker process's Services (built on first use, after the pool has forked, from the
    settings of the app the worker runs)."""
    global _services
    if _services is None or _services[0] != os.getpid():
        _services = (os.getpid(), build(services_of(get_app()).settings))
    return _services[1]


def jobs() -> JobStore:
    return services().job_store


def notes_for(job_id: str, target: str) -> JobNotes | None:
    """Where to report this job's progress and result: the chat it was requested from (its
    ``notify`` address, stored with the job), or nowhere. Never raises: notes are optional."""
    try:
        return services().job_reporter.notes(target, jobs().notify_context(job_id))
    except Exception as exc:  # noqa: BLE001 - a job must run even when its chat cannot be told
        log.warning("job %s: no chat notes (%s)", job_id, type(exc).__name__)
        return None


def _finished(job_id: str, notes: JobNotes | None) -> None:
    """Tell the chat the job ended (its record says how)."""
    if notes is not None:
        with suppress(Exception):
            notes.ended(jobs().status(job_id))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return "took longer than the time limit and was stopped"
    if isinstance(exc, SupportbotError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"  # our own code's bug: say what it was


class JobTask(Task):  # type: ignore[misc]
    """Records retries and the final failure of a job (args are always (target, job_id))."""

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        jobs().retrying(args[1], _reason(exc), self.request.retries + 1)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        reason = _reason(exc)
        jobs().failed(args[1], reason)
        _finished(args[1], notes_for(args[1], args[0]))
        if self.name == SYNC_SOURCE_TASK:
            source = services().source_store.get(args[0])
            if source is not None:
                services().source_store.set_status(source.id, "failed", reason)
        log.warning("job %s (%s %s) failed: %s", args[1], self.name, args[0], reason)


TASK_OPTIONS: dict[str, Any] = dict(
    bind=True,
    base=JobTask,
    acks_late=True,
    autoretry_for=(ProviderUnavailable,),
    retry_backoff=2,  # 2, 4, 8 ... seconds, capped at retry_backoff_max (the app's task_annotations),
    retry_jitter=True,  # and spread so that many jobs do not retry in step
)


class _Throttled:
    """Writes progress to Redis at most every ``every`` seconds (and always the last step), with
    the rate since the job started and the time left at that rate (unless given)."""

    def __init__(self, job_id: str, every: float = 0.25, notes: JobNotes | None = None) -> None:
        self.job_id, self.every, self.last = job_id, every, 0.0
        self.started = time.monotonic()
        self.notes = notes  # the chat the job was requested from, told as it advances

    def __call__(
        self, done: int, total: int | None, current: str, rate: float | None = None, eta_s: float | None = None
    ) -> None:
        now = time.monotonic()
        if now - self.last >= self.every or (total is not None and done >= total):
            self.last = now
            if rate is None and done:
                rate = done / max(now - self.started, 1e-6)
            if eta_s is None and rate and total is not None:
                eta_s = max(total - done, 0) / rate
            jobs().progress(self.job_id, done, total, current, rate, eta_s)
            if self.notes is not None:
                self.notes.advanced(JobStatus(self.job_id, "running", done, total, current, rate=rate, eta_s=eta_s))


@contextmanager
def source_lock(source_id: str, wait_s: float) -> Iterator[bool]:
    """Hold the source's sync lock (yields False when another sync kept it for ``wait_s``).

    The lock expires after ``sync_lock_ttl_s`` unless renewed; a thread renews it while the
    sync runs, so a SIGKILLed worker blocks the source only until the lock expires.
    """
    ttl = services().settings.sync_lock_ttl_s
    client = jobs().redis
    lock = client.lock(
        f"supportbot:lock:source:{source_id}", timeout=ttl, blocking_timeout=wait_s, thread_local=False
    )
    if not lock.acquire():
        yield False
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            try:
                lock.reacquire()
            except redis.RedisError:  # lost it (expired while Redis was away): the sync goes on
                log.warning("lost the sync lock of source %s", source_id)
                return

    renewer = threading.Thread(target=renew, name=f"lock-{source_id}", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join(timeout=1)
        with suppress(redis.RedisError):
            lock.release()


def _already_done(job_id: str) -> str | None:
    """The summary of a job that already finished: a redelivered message (acks_late) is a no-op."""
    status = jobs().status(job_id)
    return status.summary if status.state == "done" else None


def _sync(source: Source, job_id: str, notes: JobNotes | None = None) -> str:
    jobs().running(job_id)
    wait_s = min(600.0, services().settings.sync_time_limit_s / 2)
    with source_lock(source.id, wait_s) as held:
        if not held:
            # Another sync of this source ran the whole time: it brings the source up to date.
            return f"skipped: another sync of {source.name} was still running after {wait_s:.0f}s"
        current = services().source_store.get(source.id) or source  # fresh options and state
        connector = services().connector(current)
        report = services().syncer.sync(current, connector, run_id=job_id, progress=_Throttled(job_id, notes=notes))
    return report.summary()


@shared_task(name=SYNC_SOURCE_TASK, **TASK_OPTIONS)
def sync_source(self: Task, source_ref: str, job_id: str) -> str:
    """Sync one registered source (by id or name) into the index."""
    if (finished := _already_done(job_id)) is not None:
        return finished
    source = services().source_store.get(source_ref)
    if source is None:
        raise SourceError(source_ref, "no such source (see supportbot sources list)")
    summary = _sync(source, job_id)
    jobs().done(job_id, summary)
    return summary


@shared_task(name=INGEST_TASK, **TASK_OPTIONS)
def ingest(self: Task, target: str, job_id: str) -> str:
    """Ingest one URL or file (under the data directory), or sync the registered source named ``target``."""
    if (finished := _already_done(job_id)) is not None:
        return finished
    svc = services()
    notes = notes_for(job_id, target)
    source = svc.source_store.get(target)
    if source is not None:
        summary = _sync(source, job_id, notes)
        jobs().done(job_id, summary)
        _finished(job_id, notes)
        return summary
    jobs().running(job_id)
    s = svc.settings
    # Files uploaded on the admin page are their own source: a CLI `ingest --sync` of "local" keeps them.
    local = None if is_url(target) else Path(target).expanduser()
    uploads = svc.data_dir.resolve() / "uploads"
    name = "uploads" if local is not None and local.resolve().is_relative_to(uploads) else target_source(target)
    # Files counted up front (a walk, nothing parsed): the job shows done/total, a rate and an ETA.
    root = svc.data_dir.resolve()
    count = 1
    if local is not None and local.resolve().is_relative_to(root):
        count = sum(1 for _ in walk_files([local])) or 1
    tracker = IngestProgress(files_total=count)
    items = target_documents(
        [target],
        fetcher=svc.fetcher,
        source=name,
        access=tuple(s.default_access),
        max_bytes=int(s.max_file_mb * 1024 * 1024),
        files_root=svc.data_dir,
        progress=tracker,
    )
    progress = _Throttled(job_id, notes=notes)

    def note(doc: str, outcome: str) -> None:
        progress(
            min(tracker.files_done, count), count, tracker.current or doc,
            tracker.files_per_s(), tracker.eta_s(),
        )

    report = svc.ingestor.ingest(items, source=name, progress=note, run_id=job_id, tracker=tracker)
    if (report.failed or report.skipped) and not (report.added or report.changed or report.unchanged):
        path, reason = (report.failed or report.skipped)[0]  # nothing ingested: the job failed, and why
        raise SourceError(path, reason)
    jobs().done(job_id, report.summary() + f" ({report.chunks_embedded} chunks embedded)")
    _finished(job_id, notes)
    return report.summary()


@shared_task(
    name=SYNC_DUE_TASK,
    bind=True,
    acks_late=True,
    autoretry_for=(ProviderUnavailable,),
    retry_backoff=2,
    max_retries=3,
    time_limit=120,
    soft_time_limit=100,
)
def sync_due(self: Task) -> list[str]:
    """Queue a sync of every source whose interval has passed (run by beat); returns the job ids."""
    queued = []
    for source in services().source_store.claim_due():
        job_id = uuid.uuid4().hex
        jobs().create(job_id, "sync", source.id, "schedule", {})
        sync_source.apply_async(args=[source.id, job_id], task_id=job_id, queue=services().settings.worker_queue)
        queued.append(job_id)
    return queued
