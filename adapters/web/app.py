"""The web server: FastAPI carrying the Slack HTTP endpoint, the Teams endpoint and the web pages.

``create_app(services)`` mounts each chat platform that is configured:
Slack at ``POST /slack/events`` (when a signing secret is set), Teams at
``POST /api/messages`` (always: with no Microsoft app id it runs in local/emulator mode).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from adapters.factory import Services

log = logging.getLogger(__name__)


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="supportbot", docs_url=None, redoc_url=None)
    app.state.services = services
    settings = services.settings

    if settings.slack_signing_secret is not None and settings.slack_bot_token is not None:
        from adapters.slack.http import slack_router

        app.include_router(slack_router(services))
        log.info("Slack HTTP mode: POST /slack/events")

    from adapters.teams.http import teams_router

    app.include_router(teams_router(services))

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        checks: dict[str, str] = {}
        try:
            checks["index"] = f"ok ({services.index.count()} chunks)"
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            checks["index"] = f"error: {type(exc).__name__}"
        return {"ok": all(v.startswith("ok") for v in checks.values()), "checks": checks}

    return app
