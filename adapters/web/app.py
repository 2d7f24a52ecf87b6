"""The web server: FastAPI carrying the Slack HTTP endpoint, the Teams endpoint and the web pages.

``create_app(services)`` mounts each chat platform that is configured:
Slack at ``POST /slack/events`` (when a signing secret is set), Teams at
``POST /api/messages`` (with ``MicrosoftAppId``, or the explicit unauthenticated local-testing
opt-in; otherwise not at all, see ``adapters/teams/exposure.py``).
It also serves the web chat (``GET /``, ``/api/ask``, ``/api/feedback``; see
``adapters/web/chat.py``), the admin pages (``/login``, ``/admin``, ``/api/admin/*``; see
``adapters/web/admin.py``), ``GET /healthz`` and ``GET /metrics``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.factory import Services
from adapters.web.admin import admin_router
from adapters.web.chat import chat_router
from adapters.web.limits import BodySizeLimit
from adapters.web.observability import observability_router
from adapters.web.pages import STATIC

log = logging.getLogger(__name__)

# Routes allowed bodies larger than SUPPORTBOT_MAX_REQUEST_BYTES: path prefix -> bytes (the
# longest matching prefix wins). The admin upload route takes files up to SUPPORTBOT_MAX_FILE_MB
# (added per app in create_app; the route itself checks the size and type again).
UPLOAD_PATH = "/api/admin/uploads/"
BODY_LIMITS_PER_PATH: dict[str, int] = {}

# The pages load only their own scripts and styles: no CDN, no inline script, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class SecurityHeaders:
    """ASGI middleware adding nosniff and referrer headers, and for HTML pages the CSP and no framing.

    Plain ASGI (not BaseHTTPMiddleware) so streamed answers pass through unbuffered.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(services: Services) -> FastAPI:
    """The FastAPI app for ``services``: chat platforms, web chat, admin pages, health and metrics."""
    app = FastAPI(title="supportbot", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    settings = services.settings

    if settings.slack_signing_secret is not None and settings.slack_bot_token is not None:
        from adapters.slack.http import slack_router

        app.include_router(slack_router(services))
        log.info("Slack HTTP mode: POST /slack/events")

    from adapters.teams.exposure import startup_line, teams_mode

    if teams_mode(settings) == "off":
        log.info(startup_line("off"))
    else:
        from adapters.teams.http import teams_router

        app.include_router(teams_router(services))

    auth = services.web_auth()
    reviews = services.review_store
    app.state.web_auth = auth
    app.state.review_store = reviews
    if auth.enabled and not auth.persistent_secret:
        log.info("SUPPORTBOT_SESSION_SECRET is not set: admin sessions end when the server restarts")

    app.include_router(observability_router(services, reviews))
    app.include_router(chat_router(services, auth))
    app.include_router(admin_router(services, auth, reviews))
    from adapters.web.verified import verified_router

    app.include_router(verified_router(services, auth))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(SecurityHeaders)
    # Added last, so it runs first: oversized bodies are refused before any route reads them.
    per_path = {**BODY_LIMITS_PER_PATH, UPLOAD_PATH: int(settings.max_file_mb * 1024 * 1024)}
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes, per_path=per_path,
                       settings={UPLOAD_PATH: "SUPPORTBOT_MAX_FILE_MB"})
    return app
