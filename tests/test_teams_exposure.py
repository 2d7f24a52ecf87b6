"""Issue 14, Teams: the endpoint is closed by default, and an open one cannot be turned on the server.

One test per attack on an exposed ``/api/messages``: the endpoint is absent without
``MicrosoftAppId`` or the explicit opt-in (404); the opt-in refuses a non-loopback bind; the
server never posts to a ``serviceUrl`` its token does not endorse (a listener proves no
request arrives) and never follows a redirect; a claimed ``aadObjectId`` gets no private
answer; a member look-up cannot make anyone an admin. Each has a positive control with a
real Bot Framework token (signed by a local OpenID server), so "refused" means the rule held.
Real HTTP through the FastAPI app, the fake Bot Connector and the real bot.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.factory import Services
from adapters.settings import Settings
from adapters.teams.exposure import check_bind, is_loopback_url
from adapters.teams.handler import REFUSE_INGEST
from adapters.teams.http import teams_router
from adapters.web.app import create_app
from bot.errors import ConfigError
from bot.ports import JobStatus
from knowledge.loaders import iter_documents
from tests.fakes.openid_server import BOT_TOKEN, OpenIdServer, authenticated_gateway
from tests.fakes.teams_connector import Activities, FakeConnector, serve

for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

APP_ID = "99999999-8888-7777-6666-555555555555"
HR_AAD = "aad-hr-member"
ADMIN_AAD = "aad-the-admin"
ADMIN_UPN = "boss@contoso.example"
HR_CHANNEL = "19:hr-private@thread.tacv2"
CANARY = "CANARY-TEAMS-EXPOSURE-4471"
QUESTION = "What is the payroll correction code?"


class Listener:
    """A plain HTTP server on ``host`` that records every request; optionally redirects them all."""

    def __init__(self, host: str = "127.0.0.1", redirect_to: str | None = None) -> None:
        self.requests: list[str] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                listener.requests.append(f"{self.command} {self.path}")
                if redirect_to:
                    self.send_response(307)
                    self.send_header("Location", redirect_to + self.path.lstrip("/"))
                else:
                    self.send_response(201)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = _any  # noqa: N815 - stdlib names

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://{host}:{self._server.server_address[1]}/"

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def lan_address() -> str | None:
    """This machine's non-loopback IPv4 address (the one a default route would use), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # no packet is sent: connect() on UDP only picks a route
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


class Queue:
    def __init__(self) -> None:
        self.enqueued: list[str] = []

    def enqueue_ingest(self, target: str, requested_by: str, notify: Mapping[str, str]) -> str:
        self.enqueued.append(target)
        return f"job-{len(self.enqueued)}"

    def enqueue_sync(self, source: str, requested_by: str = "", notify: Mapping[str, str] | None = None) -> str:
        return self.enqueue_ingest(source, requested_by, notify or {})

    def status(self, job_id: str) -> JobStatus:
        return JobStatus(job_id, "done", summary="ok")


@pytest.fixture(scope="module")
def openid() -> Iterator[OpenIdServer]:
    with OpenIdServer() as server:
        yield server


def settings(root: Path, **overrides: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=root / "data", teams_admins=[ADMIN_AAD, ADMIN_UPN],
        access_user_groups={f"teams:{HR_AAD}": ["hr"]}, access_channel_groups={f"teams:{HR_CHANNEL}": ["hr"]},
        rate_questions_per_user=0, rate_questions_per_conversation=0, **overrides,
    )


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = Path(tmp_path_factory.mktemp("teams-exposure"))
    (root / "public").mkdir()
    (root / "public" / "vpn.md").write_text("# VPN\n\nTo connect to the VPN, open GlobalProtect and sign in.\n")
    (root / "hr").mkdir()
    (root / "hr" / "payroll.md").write_text(
        f"# Payroll corrections\n\nThe payroll correction code is {CANARY}. Enter it in the payroll portal.\n"
    )
    return root


@pytest.fixture(scope="module")
def services(kb: Path) -> Services:
    built = Services(settings(kb))
    built.ingestor.ingest(iter_documents([kb / "public"], source="public", max_bytes=10**6), source="public")
    built.ingestor.ingest(iter_documents([kb / "hr"], source="hr", access=("hr",), max_bytes=10**6), source="hr")
    return built


@pytest.fixture(scope="module")
def queue() -> Queue:
    return Queue()


@pytest.fixture(scope="module")
def local_url(services: Services, queue: Queue) -> Iterator[str]:
    """Unauthenticated local testing mode (no app id), as the opt-in serves it."""
    gateway = services.teams_gateway
    assert not gateway.auth_enabled
    bot = services.teams_bot(gateway, ingest_queue=queue)
    app = FastAPI()
    app.include_router(teams_router(services, gateway=gateway, bot=bot))
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def auth_url(services: Services, queue: Queue, openid: OpenIdServer) -> Iterator[str]:
    """Authentication on: tokens from the local OpenID server, replies with the bot's own token."""
    gateway = authenticated_gateway(openid, APP_ID)
    bot = services.teams_bot(gateway, ingest_queue=queue)
    app = FastAPI()
    app.include_router(teams_router(services, gateway=gateway, bot=bot))
    with serve(app) as url:
        yield url


def post(url: str, activity: Mapping[str, Any], token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/api/messages", json=dict(activity), headers=headers, timeout=20)


def signed(openid: OpenIdServer, activity: Mapping[str, Any]) -> str:
    """The token the Bot Connector would send with ``activity`` (its serviceUrl endorsed)."""
    return openid.token(audience=APP_ID, service_url=str(activity["serviceUrl"]))


def replies(connector: FakeConnector, activity: Mapping[str, Any]) -> str:
    """Everything the bot posted in the activity's conversation, once it has posted a message."""
    conv = activity["conversation"]["id"]
    calls = connector.wait_for(
        lambda calls: [c for c in calls if c.conversation == conv and c.type == "message" and c.method == "POST"]
    )
    return "\n".join(str(c.body) for c in calls)


def conversation(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


# -- the endpoint is closed by default ----------------------------------------------------------


def test_without_app_id_or_opt_in_the_endpoint_does_not_exist(
        kb: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), Listener() as listener:
        app = create_app(Services(settings(kb)))
        with serve(app) as url:
            activity = Activities(listener.url).personal("hi", conversation=conversation("a:closed"))
            assert post(url, activity).status_code == 404
            assert httpx.get(f"{url}/healthz", timeout=20).status_code == 200  # the rest of the server is up
        time.sleep(0.3)
        assert listener.requests == []
    said = [r for r in caplog.records if r.name.startswith("adapters")]
    assert any(r.levelno == logging.INFO and r.getMessage().startswith("Teams: off (no MicrosoftAppId")
               for r in said)
    assert not [r for r in said if r.levelno >= logging.WARNING and "Teams" in r.getMessage()]


def test_local_opt_in_serves_the_emulator_with_an_information_line_not_a_warning(
        kb: Path, services: Services, connector: FakeConnector, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        local = Services(settings(kb, teams_allow_unauthenticated=True))
        app = create_app(local)
    said = [r for r in caplog.records if r.name.startswith("adapters")]
    assert any(r.levelno == logging.INFO and "Teams: local testing mode" in r.getMessage() for r in said)
    assert not [r for r in said if r.levelno >= logging.WARNING and "Teams" in r.getMessage()]
    with serve(app) as url:  # the Emulator: a loopback serviceUrl gets its replies
        activity = Activities(connector.service_url).personal("How do I connect to the VPN?",
                                                              conversation=conversation("a:emulator"))
        assert post(url, activity).status_code == 201
        assert "GlobalProtect" in replies(connector, activity)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "example.com", ""])
def test_the_opt_in_refuses_a_non_loopback_bind(kb: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        check_bind(settings(kb, teams_allow_unauthenticated=True), host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_the_opt_in_allows_a_loopback_bind_and_an_app_id_any_bind(kb: Path, host: str) -> None:
    check_bind(settings(kb, teams_allow_unauthenticated=True), host)
    check_bind(settings(kb, microsoft_app_id=APP_ID, teams_allow_unauthenticated=True), "0.0.0.0")
    check_bind(settings(kb), "0.0.0.0")  # Teams off: nothing to refuse


def test_serve_with_the_opt_in_on_0_0_0_0_refuses_to_start(tmp_path: Path) -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPPORTBOT_", "Microsoft"))}
    env.update(SUPPORTBOT_DATA_DIR=str(tmp_path / "data"), SUPPORTBOT_TEAMS_ALLOW_UNAUTHENTICATED="true",
               SUPPORTBOT_HOST="0.0.0.0", SUPPORTBOT_PORT=str(number))
    done = subprocess.run([sys.executable, "-m", "adapters.cli", "serve"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "SUPPORTBOT_TEAMS_ALLOW_UNAUTHENTICATED" in done.stderr and "'0.0.0.0'" in done.stderr
    with pytest.raises(httpx.ConnectError):  # nothing was started
        httpx.get(f"http://127.0.0.1:{number}/healthz", timeout=2)


# -- SSRF: replies only where a token (or, unauthenticated, loopback) allows ----------------------


def test_unauthenticated_activity_cannot_aim_the_bot_at_another_host(
        local_url: str, caplog: pytest.LogCaptureFixture) -> None:
    lan = lan_address()
    targets = ["http://169.254.169.254/", "http://metadata.google.internal/", "https://smba.trafficmanager.net/emea/",
               "http://127.0.0.1@169.254.169.254/", "http://169.254.169.254\\@127.0.0.1/", "file:///etc/passwd"]
    with Listener("0.0.0.0") as listener:
        if lan is not None:  # a real listener on this machine's LAN address: it must hear nothing
            targets.append(listener.url.replace("0.0.0.0", lan))
        with caplog.at_level(logging.WARNING):
            for target in targets:
                for activity in (Activities(target).personal("How do I connect to the VPN?"),
                                 Activities(target).personal("ingest https://example.com/", aad=ADMIN_AAD)):
                    assert post(local_url, activity).status_code == 403, target
        time.sleep(0.5)  # a background turn would have posted by now
        assert listener.requests == []
    assert sum("refused an activity without posting" in r.getMessage() for r in caplog.records) == 2 * len(targets)


def test_authenticated_bot_posts_only_to_the_service_url_its_token_endorses(
        auth_url: str, openid: OpenIdServer, connector: FakeConnector) -> None:
    with Listener() as listener:  # 127.0.0.1, another port: an internal service
        endorsed = openid.token(audience=APP_ID, service_url=connector.service_url)
        for target in (listener.url, "http://169.254.169.254/"):
            activity = Activities(target).personal("How do I connect to the VPN?")
            assert post(auth_url, activity, endorsed).status_code in (401, 403)
            assert post(auth_url, activity).status_code == 401  # and with no token at all
        time.sleep(0.5)
        assert listener.requests == []
    # Positive control: the endorsed serviceUrl gets the answer, sent with the bot's own token.
    activity = Activities(connector.service_url).personal("How do I connect to the VPN?",
                                                          conversation=conversation("a:endorsed"))
    assert post(auth_url, activity, endorsed).status_code == 201
    assert "GlobalProtect" in replies(connector, activity)
    assert {c.authorization for c in connector.in_conversation(activity["conversation"]["id"])} == {
        f"Bearer {BOT_TOKEN}"}


def test_replies_never_follow_a_redirect(local_url: str, connector: FakeConnector) -> None:
    with Listener() as target, Listener(redirect_to=target.url) as bouncer:
        activity = Activities(bouncer.url).personal("How do I connect to the VPN?",
                                                    conversation=conversation("a:bounce"))
        assert post(local_url, activity).status_code == 201  # loopback: allowed in local mode
        deadline = time.monotonic() + 20
        while len(bouncer.requests) < 2 and time.monotonic() < deadline:  # typing, then the answer
            time.sleep(0.05)
        time.sleep(0.5)
        assert len(bouncer.requests) >= 1
        assert target.requests == []


def test_loopback_service_urls() -> None:
    assert is_loopback_url("http://127.0.0.1:3978/") and is_loopback_url("http://localhost:52525")
    assert is_loopback_url("http://[::1]:8000/")
    for url in ("http://169.254.169.254/", "http://127.0.0.1@10.0.0.1/", "http://10.0.0.1\\@127.0.0.1/",
                "http://127.0.0.1.nip.io/", "ftp://127.0.0.1/", "http://127.0.0.1:99999/", "", None, 7,
                "http://0.0.0.0:80/", "http://[::ffff:a9fe:a9fe]/"):
        assert not is_loopback_url(url), url


# -- identity claims ------------------------------------------------------------------------------


def test_a_claimed_aad_object_id_gets_no_private_answer(
        local_url: str, auth_url: str, openid: OpenIdServer, connector: FakeConnector) -> None:
    acts = Activities(connector.service_url)
    claimed = acts.personal(QUESTION, conversation=conversation("a:claim"), aad=HR_AAD)
    assert post(local_url, claimed).status_code == 201
    said = replies(connector, claimed)
    assert CANARY not in said
    in_channel = acts.channel(QUESTION, channel=HR_CHANNEL, root=str(time.monotonic_ns()), aad=HR_AAD)
    assert post(local_url, in_channel).status_code == 201  # a claimed private channel opens nothing either
    assert CANARY not in replies(connector, in_channel)
    # Positive control: the same user, vouched for by a Bot Framework token, sees the document.
    vouched = acts.personal(QUESTION, conversation=conversation("a:vouched"), aad=HR_AAD)
    assert post(auth_url, vouched, signed(openid, vouched)).status_code == 201
    assert CANARY in replies(connector, vouched)


def test_a_member_lookup_cannot_make_an_unauthenticated_sender_an_admin(
        local_url: str, auth_url: str, openid: OpenIdServer, connector: FakeConnector, queue: Queue) -> None:
    connector.members["29:mallory"] = {"id": "29:mallory", "name": "Mallory", "aadObjectId": "aad-mallory",
                                       "userPrincipalName": ADMIN_UPN}
    acts = Activities(connector.service_url)
    before = len(queue.enqueued)
    by_upn = acts.personal("ingest https://evil.example/plant", conversation=conversation("a:upn"),
                           user="29:mallory", aad="aad-mallory")
    assert post(local_url, by_upn).status_code == 201
    assert REFUSE_INGEST in replies(connector, by_upn)
    by_aad = acts.personal("ingest https://evil.example/plant", conversation=conversation("a:aad"), aad=ADMIN_AAD)
    assert post(local_url, by_aad).status_code == 201
    assert REFUSE_INGEST in replies(connector, by_aad)
    assert len(queue.enqueued) == before
    assert "29:mallory" not in connector.lookups  # the sender's own "directory" was not even asked
    # Positive control: with a token, the member look-up does make the admin (by UPN).
    vouched = acts.personal("ingest https://docs.example/handbook", conversation=conversation("a:admin"),
                            user="29:mallory", aad="aad-mallory")
    assert post(auth_url, vouched, signed(openid, vouched)).status_code == 201
    assert "Queued the ingest" in replies(connector, vouched)
    assert queue.enqueued[before:] == ["https://docs.example/handbook"]
    assert "29:mallory" in connector.lookups
