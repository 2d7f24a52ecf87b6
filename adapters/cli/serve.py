"""``serve``, ``slack`` and ``worker``: the long-running processes."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from adapters.cli.common import failing, services

QUIET_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat", "alembic")
"""Loggers turned down to WARNING unless the worker runs at DEBUG."""


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: SUPPORTBOT_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: SUPPORTBOT_PORT)")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the chat page in a browser")] = False,
) -> None:
    """Run the web server: Slack HTTP events, the Teams endpoint and the web pages."""
    import logging

    import uvicorn

    from adapters.factory import Services
    from adapters.web.app import create_app
    from adapters.web.auth import check_admin_password

    built = services()
    with failing():
        check_admin_password(built.settings)  # before anything starts
    logging.basicConfig(level=built.settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bind, number = host or built.settings.host, port or built.settings.port
    from adapters.teams.exposure import check_bind

    with failing():
        check_bind(built.settings, bind)  # before anything starts: the unauthenticated Teams mode is loopback-only
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.5, lambda: webbrowser.open(f"http://{bind}:{number}/")).start()
    import signal

    from adapters.embedded_redis import local_workers

    # uvicorn re-raises SIGTERM after its graceful shutdown; as SystemExit it unwinds through
    # local_workers, which then stops the embedded Redis and the worker instead of orphaning them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Without REDIS_URL: an embedded Redis and a worker run alongside, so /ingest works locally.
    with local_workers(built.settings) as settings:
        built = Services(settings) if settings is not built.settings else built
        with failing():  # e.g. an admin password that is too short
            web = create_app(built)
        uvicorn.run(web, host=bind, port=number, log_level=settings.log_level.lower())


def slack() -> None:
    """Run the Slack app in Socket Mode (needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN; no public URL)."""
    import logging

    from adapters.slack.socket import run_socket_mode

    built = services()
    logging.basicConfig(level=built.settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with failing():
        run_socket_mode(built)


def worker(
    concurrency: Annotated[int, typer.Option(help="Tasks run at once (processes)")] = 1,
    beat: Annotated[bool, typer.Option(help="Also run the scheduler (one per deployment!)")] = False,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run a Celery worker: ingests, source syncs and (with --beat) scheduled syncs. Needs REDIS_URL."""
    import logging

    from adapters.factory import Services

    with failing():
        from workers.app import app as celery_app
        from workers.app import settings
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if loglevel.upper() != "DEBUG":
        # Celery logs every task received and succeeded and every beat tick at INFO, and Alembic
        # each migration step: noise in a log that should show what needs attention.
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    if settings.embedder == "onnx":
        with failing():
            Services(settings).onnx_embedder.prepare()  # before the pool forks: its processes then load the cached model
    argv = [
        "worker", f"--concurrency={concurrency}", "--pool=prefork", f"--queues={settings.worker_queue}",
        f"--loglevel={loglevel.upper()}", "--without-gossip", "--without-mingle",
    ]
    if beat:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"]
    celery_app.worker_main(argv)
