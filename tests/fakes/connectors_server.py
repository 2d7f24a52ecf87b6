"""Fake source systems on 127.0.0.1 for the connector tests: Confluence Cloud (REST v2), Zendesk
Help Center, GitHub (trees + contents), Notion (search + block children) and a plain web site.

Each speaks the few endpoints the connectors call, with their real pagination (cursor links,
``has_more``/``next_cursor``) and a small page size so that pagination is exercised. Every fake
checks its credentials, records requests, and can answer the next N requests with 429 and a
``Retry-After`` (``rate_limit_next``) or with 503 (``fail_next``). Tests mutate ``pages`` to
change, add and delete documents at the "source".
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Hit:
    at: float
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Page:
    title: str
    body: str
    version: int = 1

    def touch(self, body: str) -> None:
        self.body = body
        self.version += 1


Reply = tuple[int, dict[str, str], bytes]


def json_reply(data: Any, status: int = 200) -> Reply:
    return status, {"content-type": "application/json"}, json.dumps(data).encode()


class FakeServer:
    """Threaded HTTP server on an ephemeral port of 127.0.0.1; subclasses implement ``handle``."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.pages: dict[str, Page] = {}
        self.page_size = 2
        self.delay_s = 0.0  # added to every reply: makes a sync slow enough to interrupt
        self._faults: list[Reply] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- faults --------------------------------------------------------------------------------
    def rate_limit_next(self, n: int = 1, retry_after: float = 0) -> None:
        with self._lock:
            self._faults += [(429, {"retry-after": f"{retry_after:g}"}, b'{"error":"rate limited"}')] * n

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        with self._lock:
            self._faults += [(status, {}, b'{"error":"unavailable"}')] * n

    def authorized(self, headers: dict[str, str]) -> bool:
        return True

    def handle(self, hit: Hit) -> Reply:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                hit = Hit(
                    time.monotonic(),
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                with fake._lock:
                    fake.hits.append(hit)
                    fault = fake._faults.pop(0) if fake._faults else None
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if fault is not None:
                    status, headers, body = fault
                elif not fake.authorized(hit.headers):
                    status, headers, body = json_reply({"message": "unauthorized"}, 401)
                else:
                    status, headers, body = fake.handle(hit)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def requests_to(self, fragment: str) -> list[Hit]:
        return [h for h in self.hits if fragment in h.path]


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


class ConfluenceFake(FakeServer):
    """/wiki/api/v2: spaces?keys=, spaces/{id}/pages (cursor in _links.next), pages/{id}?body-format=storage."""

    email, token, space_key, space_id = "bot@example.com", "conf-token", "DOCS", "98304"

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == _basic(self.email, self.token)

    def handle(self, hit: Hit) -> Reply:
        q = {k: v[0] for k, v in hit.query.items()}
        if hit.path == "/wiki/api/v2/spaces":
            found = [{"id": self.space_id, "key": self.space_key}] if q.get("keys") == self.space_key else []
            return json_reply({"results": found, "_links": {}})
        if hit.path == f"/wiki/api/v2/spaces/{self.space_id}/pages":
            ids = sorted(self.pages)
            start = int(q.get("cursor") or 0)
            size = min(int(q.get("limit") or 25), self.page_size)
            results = [
                {
                    "id": pid,
                    "title": self.pages[pid].title,
                    "status": "current",
                    "version": {
                        "number": self.pages[pid].version,
                        "createdAt": f"2024-01-0{min(9, self.pages[pid].version)}T00:00:00Z",
                    },
                    "_links": {"webui": f"/spaces/{self.space_key}/pages/{pid}"},
                }
                for pid in ids[start : start + size]
            ]
            links: dict[str, str] = {"base": self.url + "/wiki"}
            if start + size < len(ids):
                links["next"] = (
                    f"/wiki/api/v2/spaces/{self.space_id}/pages?limit={size}&cursor={start + size}"
                )
            return json_reply({"results": results, "_links": links})
        if hit.path.startswith("/wiki/api/v2/pages/"):
            pid = hit.path.rsplit("/", 1)[-1]
            page = self.pages.get(pid)
            if page is None:
                return json_reply({"message": "not found"}, 404)
            assert q.get("body-format") == "storage"
            return json_reply(
                {
                    "id": pid,
                    "title": page.title,
                    "version": {"number": page.version},
                    "body": {"storage": {"representation": "storage", "value": page.body}},
                }
            )
        return json_reply({"message": "no route"}, 404)


class ZendeskFake(FakeServer):
    """/api/v2/help_center/articles.json with cursor pagination (page[size], page[after])."""

    email, token = "agent@example.com", "zd-token"
    drafts: set[str]

    def __init__(self) -> None:
        super().__init__()
        self.drafts = set()

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == _basic(f"{self.email}/token", self.token)

    def handle(self, hit: Hit) -> Reply:
        q = {k: v[0] for k, v in hit.query.items()}
        if hit.path != "/api/v2/help_center/articles.json":
            return json_reply({"error": "InvalidEndpoint"}, 404)
        ids = sorted(self.pages, key=int)
        start = int(q.get("page[after]") or 0)
        size = min(int(q.get("page[size]") or 30), self.page_size)
        articles = [
            {
                "id": int(aid),
                "title": self.pages[aid].title,
                "body": self.pages[aid].body,
                "html_url": f"{self.url}/hc/en-us/articles/{aid}",
                "updated_at": f"2024-02-{self.pages[aid].version:02d}T10:00:00Z",
                "draft": aid in self.drafts,
                "locale": "en-us",
            }
            for aid in ids[start : start + size]
        ]
        more = start + size < len(ids)
        links = {
            "next": f"{self.url}/api/v2/help_center/articles.json?page[size]={size}&page[after]={start + size}"
            if more
            else None
        }
        return json_reply(
            {
                "articles": articles,
                "meta": {"has_more": more, "after_cursor": str(start + size)},
                "links": links,
            }
        )


class GitHubFake(FakeServer):
    """/repos/{o}/{r}, git/trees/{branch}?recursive=1 and contents/{path} (raw). ``pages`` keys are paths."""

    repo, token = "acme/handbook", "gh-token"

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {self.token}"

    def _sha(self, path: str) -> str:
        import hashlib

        return hashlib.sha1(self.pages[path].body.encode()).hexdigest()

    def handle(self, hit: Hit) -> Reply:
        base = f"/repos/{self.repo}"
        if hit.path == base:
            return json_reply({"full_name": self.repo, "default_branch": "main"})
        if hit.path == f"{base}/git/trees/main":
            tree = [{"path": "docs", "type": "tree", "sha": "t0"}]
            tree += [
                {"path": p, "type": "blob", "sha": self._sha(p), "size": len(self.pages[p].body)}
                for p in sorted(self.pages)
            ]
            return json_reply({"sha": "root", "tree": tree, "truncated": False})
        if hit.path.startswith(f"{base}/contents/"):
            path = hit.path[len(f"{base}/contents/") :]
            if path not in self.pages:
                return json_reply({"message": "Not Found"}, 404)
            assert hit.headers.get("accept") == "application/vnd.github.raw+json"
            return 200, {"content-type": "application/vnd.github.raw+json"}, self.pages[path].body.encode()
        return json_reply({"message": "Not Found"}, 404)


class NotionFake(FakeServer):
    """POST /v1/search (pages, start_cursor/next_cursor) and GET /v1/blocks/{id}/children."""

    token = "secret_notion"

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {self.token}" and bool(headers.get("notion-version"))

    def handle(self, hit: Hit) -> Reply:
        if hit.path == "/v1/search" and hit.method == "POST":
            body = json.loads(hit.body)
            assert body["filter"] == {"property": "object", "value": "page"}
            ids = sorted(self.pages)
            start = int(body.get("start_cursor") or 0)
            size = min(int(body.get("page_size") or 100), self.page_size)
            results = [
                {
                    "object": "page",
                    "id": pid,
                    "url": f"https://www.notion.so/{pid}",
                    "last_edited_time": f"2024-03-{self.pages[pid].version:02d}T00:00:00.000Z",
                    "archived": False,
                    "properties": {
                        "Name": {"type": "title", "title": [{"plain_text": self.pages[pid].title}]}
                    },
                }
                for pid in ids[start : start + size]
            ]
            more = start + size < len(ids)
            return json_reply(
                {
                    "object": "list",
                    "results": results,
                    "has_more": more,
                    "next_cursor": str(start + size) if more else None,
                }
            )
        if hit.path.startswith("/v1/blocks/") and hit.path.endswith("/children"):
            pid = hit.path.split("/")[3]
            page = self.pages.get(pid)
            if page is None:
                return json_reply({"object": "error", "status": 404}, 404)
            blocks = [
                {
                    "id": f"{pid}-h",
                    "type": "heading_2",
                    "has_children": False,
                    "heading_2": {"rich_text": [{"plain_text": page.title}]},
                }
            ]
            blocks += [
                {
                    "id": f"{pid}-{i}",
                    "type": "paragraph",
                    "has_children": False,
                    "paragraph": {"rich_text": [{"plain_text": para}]},
                }
                for i, para in enumerate(page.body.split("\n\n"))
            ]
            start = int(hit.query.get("start_cursor", ["0"])[0])
            size = self.page_size
            more = start + size < len(blocks)
            return json_reply(
                {
                    "object": "list",
                    "results": blocks[start : start + size],
                    "has_more": more,
                    "next_cursor": str(start + size) if more else None,
                }
            )
        return json_reply({"object": "error", "status": 404}, 404)


@dataclass
class Site:
    """What the fake web site serves: path -> (content type, body); robots.txt; redirects."""

    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    robots: str = "User-agent: *\nDisallow: /docs/private/\n"
    redirects: dict[str, str] = field(default_factory=dict)


class WebsiteFake(FakeServer):
    """A small site: HTML pages linking each other, robots.txt, a sitemap, redirects."""

    def __init__(self) -> None:
        super().__init__()
        self.site = Site()

    def html(self, path: str, title: str, text: str, links: list[str] = ()) -> None:  # type: ignore[assignment]
        anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
        paragraphs = "".join(f"<p>{p}</p>" for p in text.split("\n\n"))
        body = (
            f"<html><head><title>{title}</title></head><body><nav><ul>{anchors}</ul></nav>"
            f"<main><article><h1>{title}</h1>{paragraphs}</article></main></body></html>"
        )
        self.site.files[path] = ("text/html; charset=utf-8", body.encode())

    def handle(self, hit: Hit) -> Reply:
        if hit.path in self.site.redirects:
            return 302, {"location": self.site.redirects[hit.path]}, b""
        if hit.path == "/robots.txt":
            return 200, {"content-type": "text/plain"}, self.site.robots.encode()
        if hit.path in self.site.files:
            ctype, body = self.site.files[hit.path]
            return 200, {"content-type": ctype}, body
        return 404, {"content-type": "text/html"}, b"<html><body>not found</body></html>"
