"""A fake Bot Connector (the Teams side of the Bot Framework REST API) and helpers to drive
the bot over real HTTP on 127.0.0.1.

``FakeConnector`` is a threaded stdlib server. Give its ``service_url`` as the activities'
``serviceUrl``: the bot's replies (``POST v3/conversations/{id}/activities[/{replyTo}]``),
updates (``PUT .../activities/{id}``) and member look-ups (``GET .../members/{id}``) land
here and are recorded. ``wait_for`` blocks until a predicate over the recorded calls holds.

``serve(app)`` runs an ASGI app under uvicorn in a thread; ``Activities`` builds the
activities Teams would post for a personal chat, a channel mention and a group chat.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Call:
    """One request the bot made to the connector."""

    method: str
    conversation: str
    activity_id: str  # the {activityId} path segment ("" for a plain send)
    body: dict[str, Any]
    assigned_id: str  # the id the fake answered with
    at: float = field(default_factory=time.perf_counter)
    authorization: str = ""  # the bot's Authorization header ("" when it sent none)

    @property
    def type(self) -> str:
        return str(self.body.get("type", ""))

    @property
    def card(self) -> dict[str, Any] | None:
        for a in self.body.get("attachments") or []:
            if a.get("contentType") == "application/vnd.microsoft.card.adaptive":
                return dict(a["content"])
        return None

    @property
    def stream_info(self) -> dict[str, Any] | None:
        for e in self.body.get("entities") or []:
            if e.get("type") == "streaminfo":
                return dict(e)
        return None


class FakeConnector:
    """The Bot Connector service, recording every call. Use as a context manager."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.members: dict[str, dict[str, Any]] = {}
        self.lookups: list[str] = []  # member ids the bot asked about (GET .../members/{id})
        self._cond = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> FakeConnector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, predicate: Callable[[list[Call]], Any], timeout: float = 20.0) -> Any:
        """Block until ``predicate(calls)`` is truthy; return its value (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(list(self.calls))
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; calls: {[(c.method, c.type, c.body) for c in self.calls]}")
                self._cond.wait(left)

    def in_conversation(self, conversation: str) -> list[Call]:
        return [c for c in self.calls if c.conversation == conversation]

    def _record(self, call: Call) -> None:
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _parts(self) -> list[str]:
                path = urlsplit(self.path).path
                return [unquote(p) for p in path.strip("/").split("/")]

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                parts = self._parts()
                if len(parts) < 4 or parts[:2] != ["v3", "conversations"] or parts[3] != "activities":
                    self._reply(404, {"error": {"code": "NotFound"}})
                    return
                body = self._body()
                info = next((e for e in body.get("entities") or [] if e.get("type") == "streaminfo"), None)
                # Like Teams, a stream keeps the id its first update was given.
                assigned = (info or {}).get("streamId") or f"act-{uuid.uuid4().hex[:12]}"
                fake._record(Call("POST", parts[2], parts[4] if len(parts) > 4 else "", body, assigned,
                                  authorization=self.headers.get("Authorization") or ""))
                self._reply(201, {"id": assigned})

            def do_PUT(self) -> None:  # noqa: N802
                parts = self._parts()
                body = self._body()
                fake._record(Call("PUT", parts[2], parts[4], body, parts[4],
                                  authorization=self.headers.get("Authorization") or ""))
                self._reply(200, {"id": parts[4]})

            def do_GET(self) -> None:  # noqa: N802
                parts = self._parts()
                if len(parts) == 5 and parts[3] == "members":
                    fake.lookups.append(parts[4])
                if len(parts) == 5 and parts[3] == "members" and parts[4] in fake.members:
                    self._reply(200, fake.members[parts[4]])
                    return
                self._reply(404, {"error": {"code": "MemberNotFound", "message": "no such member"}})

        return Handler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread on 127.0.0.1; yield its base URL."""
    import uvicorn

    port = free_port()
    # ws="none": no websocket stack is needed (and its legacy module warns on import).
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


BOT_ID = "28:supportbot-test"
TENANT = "tenant-0000"


class Activities:
    """Activities as Teams posts them, aimed at one service URL."""

    def __init__(self, service_url: str, bot_id: str = BOT_ID, bot_name: str = "SupportBot") -> None:
        self.service_url = service_url
        self.bot_id = bot_id
        self.bot_name = bot_name

    def _base(self, conversation: dict[str, Any], user: str, aad: str, **extra: Any) -> dict[str, Any]:
        activity = {
            "id": f"msg-{uuid.uuid4().hex[:10]}",
            "channelId": "msteams",
            "serviceUrl": self.service_url,
            "timestamp": "2025-01-01T12:00:00.000Z",
            "from": {"id": user, "name": "Test User", "aadObjectId": aad},
            "recipient": {"id": self.bot_id, "name": self.bot_name},
            "conversation": {"tenantId": TENANT, **conversation},
            "channelData": {"tenant": {"id": TENANT}},
        }
        activity.update(extra)
        return activity

    def personal(self, text: str, *, conversation: str = "a:personal-1", user: str = "29:user-1",
                 aad: str = "aad-user-1") -> dict[str, Any]:
        conv = {"id": conversation, "conversationType": "personal"}
        return self._base(conv, user, aad, type="message", text=text, textFormat="plain")

    def _mention(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        tag = f"<at>{self.bot_name}</at>"
        entity = {"type": "mention", "text": tag, "mentioned": {"id": self.bot_id, "name": self.bot_name}}
        return f"{tag} {text}", [entity]

    def channel(self, text: str, *, mention: bool = True, channel: str = "19:general@thread.tacv2",
                root: str | None = None, user: str = "29:user-2", aad: str = "aad-user-2") -> dict[str, Any]:
        body, entities = self._mention(text) if mention else (text, [])
        root = root or f"{int(time.time() * 1000)}"
        conv = {"id": f"{channel};messageid={root}", "conversationType": "channel", "isGroup": True}
        activity = self._base(conv, user, aad, type="message", text=body, textFormat="plain", entities=entities)
        activity["channelData"].update({"channel": {"id": channel}, "team": {"id": "19:team@thread.tacv2"}})
        return activity

    def group(self, text: str, *, mention: bool = True, conversation: str = "19:group-chat@thread.v2",
              user: str = "29:user-3", aad: str = "aad-user-3") -> dict[str, Any]:
        body, entities = self._mention(text) if mention else (text, [])
        conv = {"id": conversation, "conversationType": "groupChat", "isGroup": True}
        return self._base(conv, user, aad, type="message", text=body, textFormat="plain", entities=entities)

    def invoke(self, name: str, value: dict[str, Any], *, reply_to: str = "", conversation: str = "a:personal-1",
               user: str = "29:user-1", aad: str = "aad-user-1") -> dict[str, Any]:
        conv = {"id": conversation, "conversationType": "personal"}
        activity = self._base(conv, user, aad, type="invoke", name=name, value=value)
        if reply_to:
            activity["replyToId"] = reply_to
        return activity

    def card_submit(self, data: dict[str, Any], *, reply_to: str, conversation: str = "a:personal-1",
                    user: str = "29:user-1", aad: str = "aad-user-1") -> dict[str, Any]:
        conv = {"id": conversation, "conversationType": "personal"}
        return self._base(conv, user, aad, type="message", value=data, replyToId=reply_to)

    def reaction(self, reaction: str, *, reply_to: str, conversation: str = "a:personal-1",
                 user: str = "29:user-1", aad: str = "aad-user-1") -> dict[str, Any]:
        conv = {"id": conversation, "conversationType": "personal"}
        return self._base(conv, user, aad, type="messageReaction", replyToId=reply_to,
                          reactionsAdded=[{"type": reaction}])
