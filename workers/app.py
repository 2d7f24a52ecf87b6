"""The Celery app: Redis broker and result backend, reliable-delivery settings, the beat schedule.

An entry point (like the CLI): it reads Settings once. Run it with ``supportbot worker`` (or
``celery -A workers.app worker``), beat with ``celery -A workers.app beat``; Flower with
``celery -A workers.app flower``. See docs/workers.md.
"""

from __future__ import annotations

from datetime import timedelta

from celery import Celery

from adapters.celery_queue import SYNC_DUE_TASK, celery_url
from adapters.settings import Settings
from bot.errors import ConfigError


def create_app(settings: Settings) -> Celery:
    """A Celery app for these settings; a missing REDIS_URL is a ConfigError that says what to do."""
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
    )
    app.conf.supportbot_settings = settings
    return app


settings = Settings()
app = create_app(settings)
