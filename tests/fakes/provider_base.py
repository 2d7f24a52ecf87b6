"""Plumbing shared by the fake provider servers (OpenAI, Cohere, Pinecone).

Each fake is a threaded stdlib HTTP server on 127.0.0.1 with an ephemeral port, used as a
context manager. It records every request, checks the API key, and can be told to
misbehave for the next N requests: an error status (with ``Retry-After``), a slow
response, or a malformed body. Routes return a ``Reply``; a reply whose ``stream`` is set
is sent with chunked transfer encoding, one chunk per item (server-sent events).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from knowledge.sparse import terms


@dataclass
class Request:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterable[bytes] | None = None


@dataclass
class Fault:
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    malformed: bool = False
    body: Any = None


Route = Callable[[Request, dict[str, str]], Reply]


class FakeServer:
    """Base class: subclasses register routes in ``__init__`` with ``self.route``."""

    api_key_header = "authorization"
    api_key_prefix = "Bearer "

    def __init__(self, api_key: str | None = "test-key") -> None:
        self.api_key = api_key
        self.requests: list[Request] = []
        self._routes: list[tuple[str, list[str], Route]] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration ----------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Route) -> None:
        """``pattern`` is a path; ``{name}`` segments match one path segment each."""
        self._routes.append((method, pattern.strip("/").split("/"), handler))

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``n`` requests with ``status`` (and ``Retry-After`` when given)."""
        with self._lock:
            self._faults.extend(Fault(status=status, retry_after=retry_after, body=body) for _ in range(n))

    def slow_next(self, n: int = 1, *, seconds: float = 2.0) -> None:
        """Hold the next ``n`` requests for ``seconds`` before answering them normally."""
        with self._lock:
            self._faults.extend(Fault(delay=seconds) for _ in range(n))

    def malform_next(self, n: int = 1) -> None:
        """Answer the next ``n`` requests with 200 and a body that is not valid JSON."""
        with self._lock:
            self._faults.extend(Fault(malformed=True) for _ in range(n))

    def clear_faults(self) -> None:
        """Forget faults not yet used (an SDK may retry fewer times than were queued)."""
        with self._lock:
            self._faults.clear()

    def requests_to(self, path_suffix: str) -> list[Request]:
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms stalls

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def _handle(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        self._stop.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # wakes handlers held by slow_next
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- request handling -------------------------------------------------------------------------
    def authorized(self, request: Request) -> bool:
        if self.api_key is None:
            return True
        return request.headers.get(self.api_key_header, "") == self.api_key_prefix + self.api_key

    def unauthorized(self, request: Request) -> Reply:
        return Reply(401, {"error": {"message": "Invalid API key", "code": "unauthorized"}})

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        segments = path.strip("/").split("/")
        for route_method, pattern, handler in self._routes:
            if route_method != method or len(pattern) != len(segments):
                continue
            params: dict[str, str] = {}
            for want, got in zip(pattern, segments, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                return handler, params
        return None

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(request)
            fault = self._faults.popleft() if self._faults else None
        try:
            if fault is not None and fault.delay:
                self._stop.wait(fault.delay)
            if fault is not None and fault.status is not None:
                headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
                body_out = (
                    fault.body
                    if fault.body is not None
                    else {"error": {"message": f"injected {fault.status}"}}
                )
                self._send(handler, Reply(fault.status, body_out, headers))
                return
            if fault is not None and fault.malformed:
                self._send(handler, Reply(200, b'{"this is": not json', {"Content-Type": "application/json"}))
                return
            if not self.authorized(request):
                self._send(handler, self.unauthorized(request))
                return
            matched = self._match(request.method, request.path)
            if matched is None:
                self._send(
                    handler, Reply(404, {"error": {"message": f"no route {request.method} {request.path}"}})
                )
                return
            route, params = matched
            try:
                reply = route(request, params)
            except BadRequest as exc:
                reply = Reply(400, {"error": {"message": str(exc), "code": "bad_request"}})
            self._send(handler, reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeouts): nothing to do

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        handler.send_response(reply.status)
        headers = dict(reply.headers)
        if reply.stream is not None:
            headers.setdefault("Content-Type", "text/event-stream")
            headers["Transfer-Encoding"] = "chunked"
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            for piece in reply.stream:
                handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
            return
        if isinstance(reply.body, bytes):
            payload = reply.body
        elif reply.body is None:
            payload = b""
        else:
            payload = json.dumps(reply.body).encode()
            headers.setdefault("Content-Type", "application/json")
        headers["Content-Length"] = str(len(payload))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()


class BadRequest(Exception):
    """Raised by a route to answer 400 with this message."""


def hashed_embedding(text: str, dimension: int) -> list[float]:
    """A deterministic pseudo-embedding: the sum of one random unit vector per word, normalised.

    Texts that share words get similar vectors, so dense search over a fake behaves like
    (a crude) semantic search and the retrieval contract tests mean something.
    """
    vector = np.zeros(dimension, dtype=np.float64)
    words = terms(text) or [text.strip().lower() or "<empty>"]
    for word in words:
        vector += np.random.default_rng(hash_word(word)).standard_normal(dimension)
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32).tolist() if norm else [0.0] * dimension


def hash_word(word: str) -> int:
    """A stable 64-bit hash (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def sse(events: Iterable[Any]) -> Iterator[bytes]:
    """Server-sent events for JSON payloads, ending with ``data: [DONE]``."""
    for event in events:
        yield f"data: {json.dumps(event)}\n\n".encode()
    yield b"data: [DONE]\n\n"
