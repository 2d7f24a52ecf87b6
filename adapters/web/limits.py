"""A request body size limit in front of the whole web server (Slack, Teams, web chat, admin).

Pure ASGI, outside every router, so it acts before any parsing, signature check or token
validation: a request whose ``Content-Length`` is over the limit gets 413 without a byte of its
body being read; a body sent without one (chunked) is counted as it arrives and cut off with 413
as soon as it passes the limit. Nothing is buffered here: memory per request stays at the
limit, whatever the client sends.

The limit is ``SUPPORTBOT_MAX_REQUEST_BYTES`` (1 MiB by default). Routes that need more (e.g. a
document upload) get their own limit through ``per_path`` (longest matching path prefix wins):
``BodySizeLimit(app, 1 << 20, per_path={"/api/admin/upload": 50 << 20})``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestTooLarge(Exception):
    """Raised from ``receive`` when a streamed body passes the limit (stops the app reading)."""


class BodySizeLimit:
    """413 for request bodies over ``max_bytes`` (or the longest matching ``per_path`` prefix's limit)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        per_path: Mapping[str, int] | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})
        # path prefix -> the setting that raises its limit (named in the 413; default
        # SUPPORTBOT_MAX_REQUEST_BYTES)
        self.settings = dict(settings or {})

    def limit_for(self, path: str) -> int:
        """The body limit for a request to ``path``."""
        best, limit = -1, self.max_bytes
        for prefix, value in self.per_path.items():
            if path.startswith(prefix) and len(prefix) > best:
                best, limit = len(prefix), value
        return limit

    def setting_for(self, path: str) -> str:
        """The setting an operator changes to raise the limit for ``path``."""
        best, name = -1, "SUPPORTBOT_MAX_REQUEST_BYTES"
        for prefix, value in self.settings.items():
            if path.startswith(prefix) and len(prefix) > best:
                best, name = len(prefix), value
        return name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        too_large = _too_large(limit, self.setting_for(scope.get("path", "")))
        declared = _content_length(scope)
        if declared == -1:
            await _reply(send, 400, "the Content-Length header is not a number")
            return
        if declared is not None and declared > limit:
            await _reply(send, 413, too_large)
            return

        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise RequestTooLarge(too_large)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # Whatever the app made of the cut-off body (a 400 from a parser, a 500), the
                # client gets the 413 that explains it.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _reply(send, 413, too_large)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
            if not started:
                await _reply(send, 413, too_large)


def _content_length(scope: Scope) -> int | None:
    """The declared body length: None when absent, -1 when malformed."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                n = int(value)
            except ValueError:
                return -1
            return n if n >= 0 else -1
    return None


def _too_large(limit: int, setting: str) -> str:
    return f"the request body is larger than this server accepts ({limit:,} bytes; the operator can raise {setting})"


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
