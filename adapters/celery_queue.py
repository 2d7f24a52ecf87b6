"""The IngestQueue port on Celery, and job progress in Redis.

Tasks are sent BY NAME (the constants below), so the web process and the chat adapters never
import ``workers/tasks.py`` nor the worker's dependencies. Job progress lives in a Redis hash
per job (``supportbot:job:<id>``, expiring after ``JOB_TTL_S``), written by the queue (queued)
and by the worker (running, done/total, current, done or failed with the reason), and read by
the CLI, the chat adapters and the web page.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

import redis

from bot.errors import ProviderUnavailable
from bot.ports import JobStatus

INGEST_TASK = "supportbot.ingest"
"""args: (target: URL, file path or registered source name, job_id)."""
SYNC_SOURCE_TASK = "supportbot.sync_source"
"""args: (source id or name, job_id)."""
SYNC_DUE_TASK = "supportbot.sync_due"
"""No args: enqueue a sync of every source that is due (run by beat)."""

JOB_TTL_S = 7 * 24 * 3600
_KEY = "supportbot:job:"


def celery_url(redis_url: str) -> str:
    """The Celery/kombu spelling of a Redis URL: ``unix://`` sockets become ``redis+socket://``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url


def redis_client(redis_url: str) -> redis.Redis:
    """A redis-py client for a URL in either spelling (``redis+socket://`` is turned back into ``unix://``)."""
    if redis_url.startswith("redis+socket://"):
        redis_url = "unix://" + redis_url[len("redis+socket://") :]
    return redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=10)


class JobStore:
    """Job progress hashes in Redis. Every write refreshes the expiry."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def _write(self, job_id: str, fields: Mapping[str, Any]) -> None:
        key = _KEY + job_id
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        values["updated_at"] = f"{time.time():.3f}"
        try:
            pipe = self.redis.pipeline()
            pipe.hset(key, mapping=values)  # type: ignore[arg-type]  # redis-py's Mapping is invariant
            pipe.expire(key, JOB_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            raise ProviderUnavailable(f"Redis unavailable: {type(exc).__name__}") from None

    def create(
        self, job_id: str, kind: str, target: str, requested_by: str, notify: Mapping[str, str]
    ) -> None:
        """A queued job; ``notify`` is stored untouched for the caller."""
        self._write(
            job_id,
            {
                "state": "queued",
                "kind": kind,
                "target": target,
                "requested_by": requested_by,
                "notify": dict(notify),
                "done": 0,
                "total": "",
                "current": "",
                "summary": "",
                "error": "",
                "created_at": f"{time.time():.3f}",
            },
        )

    def running(self, job_id: str) -> None:
        self._write(job_id, {"state": "running", "error": ""})

    def progress(
        self,
        job_id: str,
        done: int,
        total: int | None,
        current: str,
        rate: float | None = None,
        eta_s: float | None = None,
    ) -> None:
        """Running: ``done`` of ``total`` files or items, ``rate`` per second, ``eta_s`` left."""
        self._write(
            job_id,
            {
                "state": "running",
                "done": done,
                "total": "" if total is None else total,
                "current": current[:500],
                "rate": "" if rate is None else f"{rate:.3f}",
                "eta_s": "" if eta_s is None else f"{eta_s:.0f}",
            },
        )

    def retrying(self, job_id: str, reason: str, attempt: int) -> None:
        """Still going: the last attempt failed for a transient reason and will be retried."""
        self._write(job_id, {"state": "queued", "current": f"retry {attempt} after: {reason}"[:500]})

    def done(self, job_id: str, summary: str) -> None:
        self._write(job_id, {"state": "done", "summary": summary, "current": "", "error": ""})

    def failed(self, job_id: str, error: str) -> None:
        self._write(job_id, {"state": "failed", "error": error[:2000], "current": ""})

    def notify_context(self, job_id: str) -> dict[str, str]:
        """The ``notify`` mapping the job was enqueued with."""
        raw = self.redis.hget(_KEY + job_id, "notify")
        return dict(json.loads(raw)) if raw else {}

    def status(self, job_id: str) -> JobStatus:
        """The job's status; an unknown (or expired) id gives state "unknown"."""
        try:
            data: dict[str, str] = self.redis.hgetall(_KEY + job_id)  # type: ignore[assignment]
        except redis.RedisError as exc:
            raise ProviderUnavailable(f"Redis unavailable: {type(exc).__name__}") from None
        if not data:
            return JobStatus(id=job_id, state="unknown")
        total = data.get("total") or ""
        rate, eta = data.get("rate") or "", data.get("eta_s") or ""
        return JobStatus(
            id=job_id,
            state=data.get("state", "unknown"),
            done=int(data.get("done") or 0),
            total=int(total) if total.isdigit() else None,
            current=data.get("current", ""),
            summary=data.get("summary", ""),
            error=data.get("error", ""),
            rate=float(rate) if rate else None,
            eta_s=float(eta) if eta else None,
        )


class CeleryIngestQueue:
    """IngestQueue: sends tasks by name to the workers and reads job progress from Redis."""

    def __init__(self, redis_url: str, *, queue: str = "supportbot") -> None:
        self.redis_url = redis_url
        self.queue = queue
        self._celery: Any = None
        self._jobs: JobStore | None = None

    @property
    def jobs(self) -> JobStore:
        if self._jobs is None:
            self._jobs = JobStore(redis_client(self.redis_url))
        return self._jobs

    @property
    def celery(self) -> Any:
        """A Celery client app (no tasks registered): enough to send tasks by name."""
        if self._celery is None:
            from celery import Celery

            url = celery_url(self.redis_url)
            self._celery = Celery("supportbot-client", broker=url, backend=url, set_as_current=False)
            self._celery.conf.broker_connection_retry_on_startup = True
        return self._celery

    def _send(self, task: str, args: list[str], job_id: str) -> None:
        try:
            self.celery.send_task(task, args=args, task_id=job_id, queue=self.queue)
        except Exception as exc:  # kombu raises OperationalError and others: all mean the broker is down
            self.jobs.failed(job_id, f"could not queue the job: {type(exc).__name__}")
            raise ProviderUnavailable(f"the task queue is unavailable: {type(exc).__name__}") from None

    def enqueue_ingest(self, target: str, requested_by: str, notify: Mapping[str, str]) -> str:
        """Queue an ingest of a URL, a file (under the data dir) or a registered source; returns the job id."""
        job_id = uuid.uuid4().hex
        self.jobs.create(job_id, "ingest", target, requested_by, notify)
        self._send(INGEST_TASK, [target, job_id], job_id)
        return job_id

    def enqueue_sync(
        self, source: str, requested_by: str = "", notify: Mapping[str, str] | None = None
    ) -> str:
        """Queue a sync of one registered source (by id or name); returns the job id."""
        job_id = uuid.uuid4().hex
        self.jobs.create(job_id, "sync", source, requested_by, notify or {})
        self._send(SYNC_SOURCE_TASK, [source, job_id], job_id)
        return job_id

    def status(self, job_id: str) -> JobStatus:
        """Progress of a job (state "unknown" for ids never seen or long expired)."""
        return self.jobs.status(job_id)

    def wait(self, job_id: str, timeout_s: float, poll_s: float = 0.2) -> JobStatus:
        """Poll until the job finishes or ``timeout_s`` passes; returns the last status."""
        deadline = time.monotonic() + timeout_s
        status = self.status(job_id)
        while not status.finished and time.monotonic() < deadline:
            time.sleep(poll_s)
            status = self.status(job_id)
        return status
