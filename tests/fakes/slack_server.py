"""A fake Slack for tests and the benchmark: the Web API, response_urls and a Socket Mode websocket.

``FakeSlack`` is a threaded stdlib HTTP server on 127.0.0.1 serving ``/api/<method>``
(the base URL a WebClient needs is ``fake.api_url``, ending in ``/api/``) and
``/response/<id>`` (response_urls). It records every call, keeps the messages posted so
``conversations.replies`` returns real threads, and can answer the next calls of a method
with 429 + ``Retry-After`` or with a Slack error.

``SocketModeServer`` is a local aiohttp websocket server that plays Slack's side of Socket
Mode: point the fake's ``apps.connections.open`` at it, push envelopes, read the acks.

Also here: request signing (``v0=`` HMAC-SHA256) and builders for event, slash command,
block action and view submission payloads, and a uvicorn runner for the app under test.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM = "T1"


@dataclass
class Call:
    """One Web API call (or response_url post) the fake received."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.perf_counter)
    ok: bool = True  # False when the fake answered with 429 or a Slack error


class FakeSlack:
    """The fake Web API. Use as a context manager; ``api_url`` is the WebClient base URL."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.responses: list[Call] = []  # posts to response_urls
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.ws_url = ""
        self._limits: dict[str, list[float]] = {}
        self._errors: dict[str, list[str]] = {}
        self._delays: dict[str, float] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._base = int(time.time())
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration --------------------------------------------------------------------------
    def rate_limit(self, method: str, times: int = 1, retry_after: float = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with 429 and ``Retry-After``."""
        with self._lock:
            self._limits.setdefault(method, []).extend([retry_after] * times)

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with ``{"ok": false, "error": error}``."""
        with self._lock:
            self._errors.setdefault(method, []).extend([error] * times)

    def delay(self, method: str, seconds: float) -> None:
        """Answer every call of ``method`` only after ``seconds`` (0 to stop)."""
        with self._lock:
            self._delays[method] = seconds

    def next_ts(self) -> str:
        """A fresh message ts, later than every one handed out before."""
        return f"{self._base}.{next(self._seq):06d}"

    def add_message(self, channel: str, text: str, user: str = "U1", thread_ts: str | None = None) -> str:
        """Put a user's message in a channel (as if posted in Slack); returns its ts."""
        ts = self.next_ts()
        with self._lock:
            self.messages.setdefault(channel, []).append(
                {"type": "message", "ts": ts, "user": user, "text": text, "thread_ts": thread_ts or ts}
            )
        return ts

    def response_url(self, name: str = "") -> str:
        """A response_url served by this fake."""
        return f"{self.url}/response/{name or next(self._seq)}"

    # -- inspection -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def answers(self, channel: str | None = None) -> list[Call]:
        """Bot messages that carry an answer (chat.postMessage / chat.update with answer metadata)."""
        with self._lock:
            return [
                c
                for c in self.calls
                if c.ok
                and c.method in ("chat.postMessage", "chat.update")
                and (c.args.get("metadata") or {}).get("event_type") == "supportbot_answer"
                and (channel is None or c.args.get("channel") == channel)
            ]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy; return its value (TimeoutError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError("the fake Slack did not see what the test waited for")
            time.sleep(0.005)

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_GET(self) -> None:
                fake._handle(self)

            do_POST = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeSlack", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- handling -------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        args: dict[str, Any] = {k: v[0] for k, v in parse_qs(split.query).items()}
        if raw:
            if headers.get("content-type", "").startswith("application/json"):
                args.update(json.loads(raw))
            else:
                args.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
        for key in ("blocks", "metadata", "view", "chunks"):  # form posts carry these as JSON strings
            if isinstance(args.get(key), str):
                with suppress(ValueError):
                    args[key] = json.loads(args[key])
        if split.path.startswith("/response/"):
            with self._lock:
                self.responses.append(Call(split.path, args, headers))
            self._send(h, 200, b"ok", "text/plain")
            return
        method = split.path.removeprefix("/api/")
        pause = self._delays.get(method, 0.0)
        if pause:
            time.sleep(pause)
        with self._lock:
            limit = self._limits.get(method)
            retry_after = limit.pop(0) if limit else None
            errors = self._errors.get(method)
            error = errors.pop(0) if errors else None
            self.calls.append(Call(method, args, headers, ok=retry_after is None and not error))
            reply = None if retry_after is not None or error else self._reply(method, args)
        if retry_after is not None:
            body = json.dumps({"ok": False, "error": "ratelimited"}).encode()
            self._send(h, 429, body, "application/json", {"Retry-After": f"{retry_after:g}"})
        elif error:
            self._send(h, 200, json.dumps({"ok": False, "error": error}).encode(), "application/json")
        else:
            self._send(h, 200, json.dumps(reply).encode(), "application/json")

    def _reply(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """The canned reply (called with the lock held)."""
        channel = str(args.get("channel", ""))
        if method == "auth.test":
            return {"ok": True, "user_id": BOT_USER, "bot_id": BOT_ID, "team_id": TEAM, "user": "supportbot"}
        if method in ("chat.postMessage", "chat.startStream"):
            ts = self.next_ts()
            message = {
                "type": "message",
                "ts": ts,
                "bot_id": BOT_ID,
                "user": BOT_USER,
                "text": args.get("text") or args.get("markdown_text") or "",
                "thread_ts": args.get("thread_ts") or ts,
            }
            self.messages.setdefault(channel, []).append(message)
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method in ("chat.update", "chat.appendStream", "chat.stopStream"):
            for message in self.messages.get(channel, []):
                if message["ts"] == args.get("ts") and "text" in args:
                    message["text"] = args["text"]
            return {"ok": True, "channel": channel, "ts": args.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self.next_ts()}
        if method == "conversations.replies":
            thread = str(args.get("ts", ""))
            # ``ts`` may name a reply: Slack then returns the reply's whole thread.
            for m in self.messages.get(channel, []):
                if m.get("ts") == thread:
                    thread = str(m.get("thread_ts") or thread)
            found = [m for m in self.messages.get(channel, []) if m.get("thread_ts") == thread]
            return {"ok": True, "messages": sorted(found, key=lambda m: float(m["ts"])), "has_more": False}
        if method == "usergroups.users.list":
            group = str(args.get("usergroup", ""))
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.usergroups[group]}
        if method == "views.open":
            return {"ok": True, "view": {"id": "V1", **(args.get("view") or {})}}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.ws_url}
        if method == "chat.getPermalink":
            ts = str(args.get("message_ts", "")).replace(".", "")
            return {"ok": True, "channel": channel, "permalink": f"https://example.slack.com/archives/{channel}/p{ts}"}
        if method == "users.info":
            return {"ok": True, "user": {"id": args.get("user"), "name": "someone", "tz": "UTC"}}
        return {"ok": True}  # reactions.add / reactions.remove and the like

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)


class SocketModeServer:
    """Slack's side of Socket Mode on 127.0.0.1: a websocket the app connects to.

    ``send(payload)`` pushes an envelope to every connected client; ``acks`` collects what
    the clients sent back (``{"envelope_id": ...}``).
    """

    def __init__(self) -> None:
        self.acks: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._sockets: list[Any] = []
        self._thread = threading.Thread(target=self._loop.run_forever, name="SocketModeServer", daemon=True)
        self._runner: Any = None
        self.url = ""

    def __enter__(self) -> SocketModeServer:
        from aiohttp import WSMsgType, web

        async def websocket(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(autoping=True)
            await ws.prepare(request)
            self._sockets.append(ws)
            await ws.send_str(json.dumps({"type": "hello", "num_connections": 1}))
            self.connected.set()
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.acks.append(json.loads(msg.data))
            self._sockets.remove(ws)
            return ws

        async def start() -> None:
            app = web.Application()
            app.router.add_get("/link", websocket)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = self._runner.addresses[0][1]
            self.url = f"ws://127.0.0.1:{port}/link"

        self._thread.start()
        asyncio.run_coroutine_threadsafe(start(), self._loop).result(5)
        return self

    def send(self, payload: dict[str, Any]) -> None:
        """Push one envelope (JSON) to the connected clients."""

        async def push() -> None:
            for ws in list(self._sockets):
                await ws.send_str(json.dumps(payload))

        asyncio.run_coroutine_threadsafe(push(), self._loop).result(5)

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            for ws in list(self._sockets):
                await ws.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


# -- signed requests ----------------------------------------------------------------------------
def signed_headers(
    secret: str, body: str, timestamp: int | None = None, content_type: str = ""
) -> dict[str, str]:
    """Headers Slack would send: ``X-Slack-Request-Timestamp`` and the ``v0=`` signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": content_type or "application/json",
    }


def event_body(event: dict[str, Any], event_id: str = "") -> str:
    """An Events API ``event_callback`` envelope (JSON)."""
    return json.dumps(
        {
            "token": "unused",
            "team_id": TEAM,
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": event_id or f"Ev{time.monotonic_ns()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
            "event": event,
        }
    )


def mention(
    channel: str, ts: str, text: str, user: str = "U1", thread_ts: str | None = None
) -> dict[str, Any]:
    """An ``app_mention`` event."""
    event = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT_USER}> {text}",
        "ts": ts,
        "channel": channel,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def message(
    channel: str,
    ts: str,
    text: str,
    user: str = "U1",
    thread_ts: str | None = None,
    channel_type: str = "channel",
) -> dict[str, Any]:
    """A ``message`` event (no subtype)."""
    event = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "channel_type": channel_type,
        "team": TEAM,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def command_body(command: str, text: str, response_url: str, user: str = "U1", channel: str = "C1") -> str:
    """A slash command payload (form-encoded)."""
    return urlencode(
        {
            "token": "unused",
            "team_id": TEAM,
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": "someone",
            "command": command,
            "text": text,
            "api_app_id": "A1",
            "response_url": response_url,
            "trigger_id": "trigger-1",
        }
    )


def interaction_body(payload: dict[str, Any]) -> str:
    """An interactivity payload (form-encoded ``payload=<json>``)."""
    base = {"team": {"id": TEAM}, "api_app_id": "A1", "token": "unused"}
    return urlencode({"payload": json.dumps({**base, **payload})})


def block_action(
    action_id: str,
    value: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    message_ts: str = "",
    thread_ts: str | None = None,
    response_url: str = "",
    ephemeral: bool = False,
) -> dict[str, Any]:
    """A ``block_actions`` payload for one button click."""
    message_: dict[str, Any] = {"ts": message_ts, "type": "message"}
    if thread_ts:
        message_["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "user": {"id": user, "name": "someone", "team_id": TEAM},
        "trigger_id": "trigger-1",
        "channel": {"id": channel, "name": "general"},
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": ephemeral,
        },
        "message": message_,
        "response_url": response_url,
        "actions": [
            {"type": "button", "action_id": action_id, "block_id": "b", "value": value, "action_ts": "1"}
        ],
    }


# -- the app under test ---------------------------------------------------------------------------
@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 (ephemeral port) in a thread; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
