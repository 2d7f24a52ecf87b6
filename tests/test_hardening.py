"""Issue 14 ("close the open doors"), items 3, 5 and 6, against the real app:

- request bodies over the limit are refused before they are read, on every endpoint, over real
  HTTP (uvicorn on 127.0.0.1), with ``Content-Length`` and chunked;
- web votes are rate limited, stay on the web unless an admin confirms them, and fifty
  anonymous 👎 move a passage no further than one voter may;
- /metrics and /healthz keep source names and counts to admins and the metrics token; logout
  revokes the session; short admin passwords are refused at start; Secure cookies by setting.

Disguised links are in ``test_links.py``, the IPv6-embedded IPv4 addresses in ``test_fetch.py``,
the retry owners in ``test_reliability.py``.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adapters.factory import Services
from adapters.web.app import create_app
from adapters.web.auth import SESSION_COOKIE
from adapters.web.limits import BodySizeLimit
from bot.errors import ConfigError
from bot.feedback import FeedbackConfig
from bot.types import Feedback, Platform, Question, Vote
from tests.fakes.slack_server import FakeSlack, event_body, mention, signed_headers
from tests.fakes.slack_server import serve as serve_app
from tests.test_web_api import PASSWORD, bare_services, build_services, csrf_token, login

for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
    os.environ.pop(_proxy, None)

SIGNING = "hardening-signing-secret"
LIMIT = 1 << 20  # the default SUPPORTBOT_MAX_REQUEST_BYTES
ENDPOINTS = ("/slack/events", "/api/messages", "/login", "/api/ask")


# --- body size limit, over real HTTP ----------------------------------------------------------------
@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture(scope="module")
def web_url(tmp_path_factory: pytest.TempPathFactory, slack: FakeSlack) -> Iterator[str]:
    services = build_services(
        tmp_path_factory.mktemp("limits"),
        admin_password=PASSWORD,
        slack_bot_token="xoxb-hardening",
        slack_signing_secret=SIGNING,
        slack_api_url=slack.api_url,
        rate_questions_per_user=0,
        rate_questions_per_conversation=0,
        teams_allow_unauthenticated=True,  # serves /api/messages (loopback test): the limit must cover it
    )
    with serve_app(create_app(services)) as url:
        yield url


def _raw_post(url: str, path: str, headers: dict[str, str], chunks: Iterator[bytes] | None = None,
              chunked: bool = False) -> tuple[int, bytes, int]:
    """POST over a plain socket: (status, body, bytes of body sent before the reply arrived).

    Sends ``chunks`` one at a time and stops as soon as the server has replied, so a server that
    cuts a body off early is seen doing so."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=15)
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if chunked:
            head += "Transfer-Encoding: chunked\r\n"
        sock.sendall((head + "\r\n").encode())
        sent = 0
        replied = False
        for chunk in chunks or iter(()):
            if select.select([sock], [], [], 0.005)[0]:
                replied = True
                break
            data = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                replied = True
                break
            sent += len(chunk)
        if chunked and not replied:
            sock.sendall(b"0\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            piece = sock.recv(65536)
            if not piece:
                break
            reply += piece
        head_bytes, _, body = reply.partition(b"\r\n\r\n")
        status = int(head_bytes.split(b" ", 2)[1])
        length = next((int(line.split(b":", 1)[1]) for line in head_bytes.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            piece = sock.recv(65536)
            if not piece:
                break
            body += piece
        return status, body, sent
    finally:
        sock.close()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_declared_200_mb_body_is_refused_before_a_byte_of_it_is_sent(web_url: str, path: str) -> None:
    started = time.monotonic()
    status, body, _ = _raw_post(web_url, path, {"Content-Type": "application/json",
                                                "Content-Length": str(200 << 20)})
    assert status == 413  # answered with no body sent at all: nothing was read, parsed or verified
    assert b"SUPPORTBOT_MAX_REQUEST_BYTES" in body
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("path", ["/api/ask", "/slack/events", "/api/messages"])
def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(web_url: str, path: str) -> None:
    total = 50 << 20
    chunk = b"x" * (64 << 10)
    status, body, sent = _raw_post(web_url, path, {"Content-Type": "application/json"},
                                   iter([chunk] * (total // len(chunk))), chunked=True)
    assert status == 413 and b"SUPPORTBOT_MAX_REQUEST_BYTES" in body
    assert sent < 8 * LIMIT  # cut off near the limit (socket buffers hold a little more), not at 50 MB


def test_bodies_within_the_limit_still_work(web_url: str, slack: FakeSlack) -> None:
    asked = httpx.post(f"{web_url}/api/ask", json={"text": "How do I connect Slack?"}, timeout=30)
    assert asked.status_code == 200 and asked.json()["citations"]
    chunked = httpx.post(f"{web_url}/api/ask", content=iter([b'{"text": ', b'"How do I connect Slack?"}']),
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert chunked.status_code == 200  # a streamed body under the limit passes through whole
    ts = slack.add_message("CLIMIT", "How do I connect Slack?")
    body = event_body(mention("CLIMIT", ts, "How do I connect Slack?"))
    assert httpx.post(f"{web_url}/slack/events", content=body, headers=signed_headers(SIGNING, body)).status_code == 200
    padded = b'{"text": "' + b"a" * 900_000 + b'"}'  # under 1 MiB: the app decides (here: too long a question)
    assert httpx.post(f"{web_url}/api/ask", content=padded, headers={"Content-Type": "application/json"},
                      timeout=30).status_code == 422


def test_the_limit_is_a_setting_and_routes_can_have_their_own() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never called
        raise AssertionError

    limited = BodySizeLimit(app, 4096, per_path={"/api/admin/upload": 50 << 20, "/api/admin": 8192})
    assert limited.limit_for("/api/ask") == 4096
    assert limited.limit_for("/api/admin/summary") == 8192
    assert limited.limit_for("/api/admin/upload/file") == 50 << 20  # the longest prefix wins


def test_max_request_bytes_setting_applies(tmp_path: Path) -> None:
    services = bare_services(tmp_path, max_request_bytes=2048)
    with TestClient(create_app(services)) as c:
        response = c.post("/api/ask", content=b'{"text": "' + b"a" * 4000 + b'"}',
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "2,048 bytes" in response.json()["detail"]


# --- votes --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def voting(tmp_path_factory: pytest.TempPathFactory) -> Services:
    return build_services(
        tmp_path_factory.mktemp("votes"),
        admin_password=PASSWORD,
        rate_questions_per_user=0,
        rate_questions_per_conversation=0,
        rate_votes_per_user=0,  # the bound, not the rate limit, is what these tests measure
        rate_votes_per_address=0,
    )


QUESTION = "How do I connect Slack to the bot?"


def _web_answer(c: TestClient) -> dict[str, Any]:
    answer = c.post("/api/ask", json={"text": QUESTION}).json()
    assert answer["decision"] == "answered" and answer["citations"]
    return dict(answer)


def _boosts(services: Services, platform: str) -> dict[str, float]:
    ranker = services.feedback_ranker
    ranker.refresh(force=True)
    return ranker.boosts(services.embedder.embed_query(QUESTION), frozenset({"public"}), platform)


def test_fifty_anonymous_downvotes_move_a_passage_no_further_than_one_voter(voting: Services) -> None:
    app = create_app(voting)
    bound = FeedbackConfig().per_voter
    with TestClient(app) as first:
        answer = _web_answer(first)
    for _ in range(50):  # fifty fresh visitors (a new cookie each), each voting 👎
        with TestClient(app) as visitor:
            visitor.get("/")
            assert visitor.post("/api/feedback", json={"answer_id": answer["id"], "vote": "down"}).status_code == 200
    web = _boosts(voting, "web")
    assert web and min(web.values()) >= -bound - 1e-9  # at most one voter's weight
    assert min(web.values()) < 0  # they do count, a little, in the web chat
    assert _boosts(voting, "slack") == {}  # and not at all in Slack or Teams

    # An admin confirms them in the review queue: now they count everywhere — still as one voter.
    with TestClient(app) as admin:
        login(admin)
        csrf = {"X-CSRF-Token": csrf_token(admin)}
        queued = [i for i in admin.get("/api/admin/queue").json()["items"] if i["answer"]["id"] == answer["id"]]
        assert queued and queued[0]["web_votes"] == 50 and queued[0]["votes_confirmed"] is False
        assert admin.post(f"/api/admin/votes/{answer['id']}/confirm").status_code == 403  # CSRF
        assert admin.post(f"/api/admin/votes/{answer['id']}/confirm", headers=csrf).status_code == 200
        slack = _boosts(voting, "slack")
        assert slack and -bound - 1e-9 <= min(slack.values()) < 0
        assert admin.delete(f"/api/admin/votes/{answer['id']}/confirm", headers=csrf).status_code == 200
        assert _boosts(voting, "slack") == {}


def test_identified_voters_are_each_bounded_but_add_up(voting: Services) -> None:
    """The contrast: three Slack users' 👎 reach the overall cap; one Slack user voting on many
    similar answers stays within one voter's bound."""
    answers = [voting.answers.answer(Question(text=QUESTION, asker=f"U{i}", platform=Platform.SLACK))
               for i in range(6)]
    for a in answers:  # one user, six answers citing the same passages
        voting.answers.record_feedback(Feedback(a.id, "slack-one", Platform.SLACK, Vote.DOWN))
    config = FeedbackConfig()
    one = _boosts(voting, "slack")
    assert -config.per_voter - 1e-9 <= min(one.values()) < 0
    for i, a in enumerate(answers[:3]):
        voting.answers.record_feedback(Feedback(a.id, f"slack-{i}", Platform.SLACK, Vote.DOWN))
    assert min(_boosts(voting, "slack").values()) < -config.per_voter  # more voters, more weight
    assert min(_boosts(voting, "slack").values()) >= -config.max_boost - 1e-9


def test_web_votes_are_rate_limited_per_visitor_and_per_address(tmp_path: Path) -> None:
    services = build_services(tmp_path, rate_votes_per_user=3, rate_votes_per_address=5,
                              rate_questions_per_user=0, rate_questions_per_conversation=0)
    app = create_app(services)
    with TestClient(app) as one:
        answer = _web_answer(one)
        codes = [one.post("/api/feedback", json={"answer_id": answer["id"], "vote": v}).status_code
                 for v in ("up", "down", "up", "down")]
        assert codes == [200, 200, 200, 429]  # per visitor
        limited = one.post("/api/feedback", json={"answer_id": answer["id"], "vote": "up"})
        assert "Retry-After" in limited.headers and "votes faster" in limited.json()["detail"]
    codes = []
    for _ in range(3):  # fresh cookies from the same address
        with TestClient(app) as visitor:
            codes.append(visitor.post("/api/feedback", json={"answer_id": answer["id"], "vote": "down"}).status_code)
    assert codes == [200, 200, 429]  # per address: 5 in all (the 3 accepted above, then 2 more)


def test_a_web_visitor_cannot_vote_on_an_answer_given_elsewhere(voting: Services) -> None:
    slack_answer = voting.answers.answer(Question(text=QUESTION, asker="U9", platform=Platform.SLACK))
    with TestClient(create_app(voting)) as c:
        assert c.post("/api/feedback", json={"answer_id": slack_answer.id, "vote": "down"}).status_code == 404
    assert voting.answers.store is not None and voting.answers.store.feedback_for(slack_answer.id) == []


# --- health, metrics, sessions, passwords, cookies ---------------------------------------------------
@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Services:
    root = tmp_path_factory.mktemp("private")
    services = build_services(root, admin_password=PASSWORD, metrics_token="scrape-token-0123456789")
    (root / "hr-handbook").mkdir()
    services.source_store.add("secret-hr-handbook", "folder", {"path": str(root / "hr-handbook")}, access=("hr",))
    return services


def test_metrics_and_healthz_show_source_names_and_counts_only_to_admins_and_the_token(private: Services) -> None:
    app = create_app(private)
    with TestClient(app) as anyone:
        metrics = anyone.get("/metrics").text
        health = anyone.get("/healthz").json()
        wrong = anyone.get("/metrics", headers={"Authorization": "Bearer nope"}).text
        scraper = anyone.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"}).text
        assert "supportbot_questions" in metrics and "supportbot_database_up 1.0" in metrics
        assert "secret-hr-handbook" not in metrics and "supportbot_source_" not in metrics
        assert "secret-hr-handbook" not in wrong
        assert 'source="secret-hr-handbook"' in scraper
        assert health["ok"] is True and health["checks"]["index"] == "ok"  # no chunk count
    with TestClient(app) as admin:
        login(admin)
        assert "secret-hr-handbook" in admin.get("/metrics").text
        assert "chunks" in admin.get("/healthz").json()["checks"]["index"]


def test_logout_revokes_the_session_on_the_server(private: Services) -> None:
    app = create_app(private)
    with TestClient(app) as admin:
        assert login(admin).status_code == 303
        stolen = admin.cookies[SESSION_COOKIE]
        assert admin.get("/api/admin/summary").status_code == 200
        assert admin.post("/logout", follow_redirects=False).status_code == 303
    with TestClient(create_app(private)) as thief:  # another process' app, same database
        thief.cookies.set(SESSION_COOKIE, stolen)
        assert thief.get("/api/admin/summary").status_code == 401
    with TestClient(app) as again:  # signing in again works
        assert login(again).status_code == 303 and again.get("/api/admin/summary").status_code == 200


@pytest.mark.parametrize("password", ["a", "Xk3pL0wQ7zY"])  # the "a", and 11 characters
def test_short_admin_passwords_are_refused_at_start(tmp_path: Path, password: str) -> None:
    with pytest.raises(ConfigError, match="at least 12 characters") as info:
        create_app(bare_services(tmp_path, admin_password=password))
    assert len(password) == 1 or password not in str(info.value)  # never echoed
    from adapters.cli import app as cli

    result = CliRunner().invoke(cli, ["serve"], env={"SUPPORTBOT_ADMIN_PASSWORD": password,
                                                     "SUPPORTBOT_DATA_DIR": str(tmp_path / "d")})
    assert result.exit_code == 2 and "at least 12 characters" in result.output
    assert len(password) == 1 or password not in result.output


def test_no_admin_password_still_serves_without_admin_pages(tmp_path: Path) -> None:
    with TestClient(create_app(bare_services(tmp_path))) as c:
        assert c.get("/").status_code == 200 and c.get("/admin").status_code == 404


@pytest.mark.parametrize(
    ("settings", "secure"),
    [
        ({"public_url": "https://bot.example.com"}, True),  # a TLS proxy on another host
        ({"public_url": "http://bot.example.com"}, False),
        ({"cookie_secure": True}, True),
        ({"public_url": "https://bot.example.com", "cookie_secure": False}, False),
        ({}, False),  # neither says: the scheme this server sees (http here)
    ],
)
def test_secure_cookies_follow_the_settings(tmp_path: Path, settings: dict[str, Any], secure: bool) -> None:
    with TestClient(create_app(bare_services(tmp_path, admin_password=PASSWORD, **settings))) as c:
        cookies = [login(c).headers["set-cookie"], c.get("/").headers["set-cookie"]]
    assert all(("; secure" in h.lower()) == secure for h in cookies)
