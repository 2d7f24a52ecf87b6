"""The Celery app: Redis broker and result backend, reliable-delivery settings, the beat schedule.

An entry point (like the CLI): it gets its settings from the composition root
(``adapters.factory.build``) and builds nothing at import time. ``get_app()`` (or the module
attributes ``app``/``celery``, which is what ``celery -A workers.app`` looks up, and
``settings``) makes the app on first use. Run it with ``supportbot worker`` (or
``celery -A workers.app worker``), beat with ``celery -A workers.app beat``; Flower with
``celery -A workers.app flower``. See docs/workers.md.

The tasks (``workers/tasks.py``) are shared tasks: they bind to whichever app is created, and
their settings-dependent options (time limits, retries) come from this app's
``task_annotations``, so importing them reads no settings either.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from celery import Celery

from adapters.celery_queue import INGEST_TASK, SYNC_DUE_TASK, SYNC_SOURCE_TASK, celery_url
from bot.errors import ConfigError

if TYPE_CHECKING:
    from adapters.factory import Services
    from adapters.settings import Settings


def task_annotations(settings: Settings) -> dict[str, dict[str, Any]]:
    """The options of each job task that depend on the settings (applied when the task binds)."""
    retries = {"retry_backoff_max": settings.retry_backoff_max_s, "max_retries": settings.task_max_retries}
    return {
        SYNC_SOURCE_TASK: {
            "time_limit": settings.sync_time_limit_s,
            "soft_time_limit": max(5, settings.sync_time_limit_s - 30),
            **retries,
        },
        INGEST_TASK: {
            "time_limit": settings.ingest_time_limit_s,
            "soft_time_limit": max(5, settings.ingest_time_limit_s - 30),
            **retries,
        },
    }


def create_app(services: Services) -> Celery:
    """A Celery app for these services' settings; a missing REDIS_URL is a ConfigError that says
    what to do. The tasks use ``services`` through :func:`services_of` (each pool process makes
    its own copy, so no database connection crosses a fork)."""
    settings = services.settings
    if settings.redis_url is None:
        raise ConfigError(
            "the workers need REDIS_URL (e.g. redis://localhost:6379/0); "
            "`supportbot serve` starts an embedded Redis and a worker when it is not set"
        )
    url = celery_url(settings.redis_url.get_secret_value())
    visibility = settings.visibility_timeout_s or settings.sync_time_limit_s + 300
    transport = {
        # A task a dead worker had taken is handed out again after this long; it must exceed the
        # longest task, or a running task would be delivered twice (harmless but wasteful:
        # bodies are idempotent and syncs take a lock).
        "visibility_timeout": visibility,
        "unacked_restore_interval": max(1, min(10, visibility // 4)),
        "unacked_restore_throttle": 1,
    }
    app = Celery("supportbot", broker=url, backend=url, include=["workers.tasks"], set_as_current=True)
    app.conf.update(
        task_default_queue=settings.worker_queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # At-least-once: a task is acknowledged when it ends, so a worker that dies mid-task
        # (or whose pool process is killed) leaves it to be run again; bodies are idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a long sync must not hold other tasks hostage
        task_track_started=True,
        worker_send_task_events=True,  # for Flower
        task_send_sent_event=True,
        result_expires=timedelta(days=1),
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        beat_schedule={
            "sync-due-sources": {"task": SYNC_DUE_TASK, "schedule": settings.sync_check_interval_s},
        },
        worker_hijack_root_logger=False,
        task_annotations=task_annotations(settings),
    )
    app.conf.supportbot_services = services
    global _app
    with _lock:
        _app = app  # the process's app from now on: the tasks get their settings from it
    return app


_app: Celery | None = None
_lock = threading.RLock()


def get_app() -> Celery:
    """This process's worker app (the one ``create_app`` made last), made on first use from the
    composition root's settings when there is none."""
    if _app is None:
        with _lock:
            if _app is None:
                from adapters.factory import build

                return create_app(build())
    return _app


def services_of(app: Celery) -> Services:
    """The services the app was made with."""
    found: Services = app.conf.supportbot_services
    return found


def __getattr__(name: str) -> Any:
    # ``celery -A workers.app`` looks up ``app`` (then ``celery``); the CLI reads ``settings``.
    if name in ("app", "celery"):
        return get_app()
    if name == "settings":
        return services_of(get_app()).settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
