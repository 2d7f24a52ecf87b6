"""The Teams bot end to end: activities POSTed over HTTP to the real FastAPI app (uvicorn on
127.0.0.1), replies received by a fake Bot Connector, answers from a real offline index.

Most tests use the unauthenticated local testing mode (the Bot Framework Emulator's); ``ingest``
needs an admin, which only an authenticated activity can be, so those tests sign their
activities with a local OpenID server's key (``tests/fakes/openid_server.py``)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from adapters.factory import Services
from adapters.settings import Settings
from adapters.teams.handler import FAILED, REFUSE_INGEST, TeamsOptions
from adapters.teams.http import teams_router
from adapters.web.app import create_app
from bot.answering import DECLINE_TEXT, AnswerService
from bot.errors import ProviderUnavailable
from bot.extractive import ExtractiveGenerator
from bot.messages import thanks
from bot.ports import GenerationRequest, JobStatus
from bot.types import ChatAddress, Decision, Feedback, Platform, Vote
from knowledge.loaders import iter_documents
from tests.fakes.openid_server import OpenIdServer, authenticated_gateway
from tests.fakes.teams_connector import Activities, Call, FakeConnector, serve

for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

ADMIN_AAD = "aad-admin-1"
ADMIN_UPN = "Admin@Contoso.com"
APP_ID = "11111111-2222-3333-4444-555555555555"

DOCS = {
    "vpn.md": "# VPN\n\n## Connecting\n\nTo connect to the VPN, open the GlobalProtect app and sign in with your "
    "company account. The VPN portal address is vpn.example.com.\n\n## Split tunnelling\n\nSplit tunnelling "
    "is disabled: all traffic goes through the VPN while GlobalProtect is connected.\n",
    "billing.md": "# Billing\n\n## Refunds\n\nRefunds take 14 days for every plan. Ask billing@example.com to "
    "request a refund for an invoice.\n",
    "laptop.md": "# Laptops\n\n## Replacement\n\nA broken laptop is replaced within two working days. Open a "
    "hardware ticket in the service portal and bring the laptop to the IT desk.\n",
}


@dataclass
class ScriptedQueue:
    """A small IngestQueue implementation for tests: records what is queued (the worker, not the
    web process, reports on jobs: tests/test_job_notes.py)."""

    enqueued: list[tuple[str, str, Mapping[str, str]]] = field(default_factory=list)

    def enqueue_ingest(self, target: str, requested_by: str, notify: Mapping[str, str]) -> str:
        self.enqueued.append((target, requested_by, dict(notify)))
        return f"job-{len(self.enqueued)}"

    def enqueue_sync(self, source: str, requested_by: str = "", notify: Mapping[str, str] | None = None) -> str:
        return self.enqueue_ingest(source, requested_by, notify or {})

    def status(self, job_id: str) -> JobStatus:
        return JobStatus(job_id, "queued")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Services:
    root = Path(tmp_path_factory.mktemp("teams"))
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    settings = Settings(data_dir=root / "data", teams_admins=f"{ADMIN_AAD},{ADMIN_UPN}",  # type: ignore[call-arg]
                        teams_allow_unauthenticated=True, _env_file=None)
    services = Services(settings)
    report = services.ingestor.ingest(iter_documents([docs], source="docs", max_bytes=1 << 20), source="docs")
    assert len(report.added) == len(DOCS)
    # Calibrate the decline policy now: done on the first question it takes longer than the 0.8 s
    # after which a reply streams, and the first test expects the one-card (non-streamed) reply.
    services.decline_policy()
    return services


@pytest.fixture(scope="module")
def queue(services: Services) -> ScriptedQueue:
    q = ScriptedQueue()
    # The composition root's ingest_queue is a cached property: giving the instance one is
    # how an entry point (or a test) injects the queue the router will use.
    services.ingest_queue = q  # type: ignore[misc]
    return q


@pytest.fixture(scope="module")
def app_url(services: Services, queue: ScriptedQueue) -> Iterator[str]:
    """The real web app (adapters/web/app.py), Teams in local testing mode (no app id, the opt-in)."""
    with serve(create_app(services)) as url:
        yield url


@pytest.fixture
def acts(connector: FakeConnector) -> Activities:
    return Activities(connector.service_url)


def post(url: str, activity: Mapping[str, object]) -> httpx.Response:
    return httpx.post(f"{url}/api/messages", json=dict(activity), timeout=20)


def reply_to(connector: FakeConnector, activity: Mapping[str, object], pred: Callable[[Call], bool]) -> Call:
    """The first connector call answering ``activity`` that satisfies ``pred``."""
    conv = activity["conversation"]["id"]  # type: ignore[index]
    return connector.wait_for(lambda calls: next((c for c in calls if c.conversation == conv and pred(c)), None))


def card_reply(connector: FakeConnector, activity: Mapping[str, object]) -> Call:
    return reply_to(connector, activity, lambda c: c.card is not None and c.activity_id == activity["id"]
                    or c.card is not None and c.method == "PUT")


def answer_id_of(call: Call) -> str:
    card = call.card
    assert card is not None
    return str(card["actions"][0]["data"]["answer_id"])


def card_texts(call: Call) -> list[str]:
    assert call.card is not None
    return [b["text"] for b in call.card["body"]]


def unique_conversation(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


# -- questions ---------------------------------------------------------------------------------


def test_personal_chat_gets_typing_at_once_then_an_answer_card(app_url: str, connector: FakeConnector,
                                                               acts: Activities, services: Services) -> None:
    conv = unique_conversation("a:personal")
    activity = acts.personal("How do I connect to the VPN?", conversation=conv)
    started = time.perf_counter()
    response = post(app_url, activity)
    assert response.status_code == 201
    assert time.perf_counter() - started < 1.0  # acknowledged before the answer is written

    card = card_reply(connector, activity)
    calls = connector.in_conversation(conv)
    assert calls[0].type == "typing" and calls[0].activity_id == activity["id"]
    assert card.activity_id == activity["id"]  # a reply to the question, in the same conversation
    texts = card_texts(card)
    assert "GlobalProtect" in texts[0]
    assert "Sources" in texts
    assert any(t.startswith("1. VPN › Connecting") and "updated today" in t for t in texts)
    assert card.body["channelData"]["feedbackLoopEnabled"] is True
    titles = [a["title"] for a in card.card["actions"]]  # type: ignore[index]
    assert titles == ["👍 Helpful", "👎 Not helpful"]
    stored = services.answers.get_answer(answer_id_of(card))
    assert stored is not None and stored.decision == Decision.ANSWERED
    assert stored.question.platform.value == "teams" and stored.question.asker == "aad-user-1"


def test_personal_follow_up_carries_the_earlier_turns(app_url: str, connector: FakeConnector,
                                                      acts: Activities, services: Services) -> None:
    conv = unique_conversation("a:personal")
    first = acts.personal("How do I connect to the VPN?", conversation=conv)
    post(app_url, first)
    card_reply(connector, first)
    follow = acts.personal("Is split tunnelling allowed?", conversation=conv)
    post(app_url, follow)
    answer = services.answers.get_answer(answer_id_of(card_reply(connector, follow)))
    assert answer is not None
    history = [(t.speaker, t.text) for t in answer.question.history]
    assert history[0] == ("user", "How do I connect to the VPN?")
    assert history[1][0] == "assistant" and "GlobalProtect" in history[1][1]


def test_channel_mention_is_answered_in_the_thread_without_the_mention(
        app_url: str, connector: FakeConnector, acts: Activities, services: Services) -> None:
    activity = acts.channel("How long do refunds take?", root=str(time.monotonic_ns()))
    assert post(app_url, activity).status_code == 201
    card = card_reply(connector, activity)
    assert card.conversation == activity["conversation"]["id"]  # type: ignore[index]
    assert ";messageid=" in card.conversation  # the thread
    answer = services.answers.get_answer(answer_id_of(card))
    assert answer is not None
    assert answer.question.text == "How long do refunds take?"
    assert "14 days" in answer.text


def test_channel_message_without_mention_is_ignored(app_url: str, connector: FakeConnector,
                                                    acts: Activities) -> None:
    activity = acts.channel("How long do refunds take?", mention=False, root=str(time.monotonic_ns()))
    assert post(app_url, activity).status_code == 201
    control = acts.channel("How long do refunds take?", root=str(time.monotonic_ns()))
    post(app_url, control)
    card_reply(connector, control)  # the mentioned one (sent later) is answered...
    assert connector.in_conversation(activity["conversation"]["id"]) == []  # type: ignore[index]


def test_group_chat_mention_is_answered(app_url: str, connector: FakeConnector, acts: Activities) -> None:
    activity = acts.group("How quickly is a broken laptop replaced?", conversation=unique_conversation("19:group"))
    assert post(app_url, activity).status_code == 201
    card = card_reply(connector, activity)
    assert "two working days" in card_texts(card)[0]


def test_an_unknown_topic_is_declined_and_says_so(app_url: str, connector: FakeConnector,
                                                  acts: Activities) -> None:
    activity = acts.personal("What is the capital of Mongolia's second moon?",
                             conversation=unique_conversation("a:personal"))
    post(app_url, activity)
    card = card_reply(connector, activity)
    texts = card_texts(card)
    assert texts[0].startswith(DECLINE_TEXT)
    assert "Sources" not in texts  # a decline never presents sources as support
    assert "entities" not in card.body  # and is not labelled AI-generated content


def test_help_and_bad_requests(app_url: str, connector: FakeConnector, acts: Activities) -> None:
    activity = acts.personal("help", conversation=unique_conversation("a:personal"))
    post(app_url, activity)
    call = reply_to(connector, activity, lambda c: c.type == "message")
    assert "@mention" in call.body["text"]
    assert httpx.post(f"{app_url}/api/messages", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert httpx.post(f"{app_url}/api/messages", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert httpx.post(f"{app_url}/api/messages", json={"no": "type"}).status_code == 400


# -- feedback ------------------------------------------------------------------------------------


def _answered(app_url: str, connector: FakeConnector, acts: Activities, conv: str) -> tuple[str, str]:
    """Ask a question; return (reply activity id, answer id)."""
    activity = acts.personal("How do I connect to the VPN?", conversation=conv)
    post(app_url, activity)
    card = card_reply(connector, activity)
    return card.assigned_id, answer_id_of(card)


def _votes(services: Services, answer_id: str, timeout: float = 10) -> list[Feedback]:
    deadline = time.monotonic() + timeout
    while True:
        votes = services.answer_store.feedback_for(answer_id)
        if votes or time.monotonic() > deadline:
            return votes
        time.sleep(0.05)


def test_teams_builtin_feedback_is_recorded_once_per_user(app_url: str, connector: FakeConnector,
                                                         acts: Activities, services: Services) -> None:
    conv = unique_conversation("a:personal")
    reply_id, answer_id = _answered(app_url, connector, acts, conv)
    like = acts.invoke("message/submitAction", {"actionName": "feedback", "actionValue": {"reaction": "like"}},
                       reply_to=reply_id, conversation=conv)
    response = post(app_url, like)
    assert response.status_code == 200
    assert [(v.vote, v.user) for v in _votes(services, answer_id)] == [(Vote.UP, "aad-user-1")]

    dislike = acts.invoke(
        "message/submitAction",
        {"actionName": "feedback", "actionValue": {"reaction": "dislike", "feedback": '{"feedbackText":"outdated"}'}},
        reply_to=reply_id, conversation=conv)
    assert post(app_url, dislike).status_code == 200
    votes = services.answer_store.feedback_for(answer_id)
    assert [(v.vote, v.comment, v.platform.value) for v in votes] == [(Vote.DOWN, "outdated", "teams")]


def test_adaptive_card_action_execute_records_the_vote(app_url: str, connector: FakeConnector,
                                                       acts: Activities, services: Services) -> None:
    conv = unique_conversation("a:personal")
    reply_id, answer_id = _answered(app_url, connector, acts, conv)
    data = {"supportbot": "feedback", "answer_id": answer_id, "vote": "down"}
    execute = acts.invoke("adaptiveCard/action",
                          {"action": {"type": "Action.Execute", "verb": "supportbot.feedback", "data": data},
                           "trigger": "manual"}, reply_to=reply_id, conversation=conv)
    response = post(app_url, execute)
    assert response.status_code == 200
    assert response.json() == {"statusCode": 200, "type": "application/vnd.microsoft.activity.message",
                               "value": thanks(Vote.DOWN)}
    assert [v.vote for v in _votes(services, answer_id)] == [Vote.DOWN]


def test_adaptive_card_action_execute_for_an_unknown_answer(app_url: str, acts: Activities) -> None:
    data = {"supportbot": "feedback", "answer_id": "no-such-answer", "vote": "up"}
    response = post(app_url, acts.invoke("adaptiveCard/action", {"action": {"type": "Action.Execute", "data": data}}))
    assert response.status_code == 200
    assert "couldn't find" in response.json()["value"]


def test_adaptive_card_action_submit_records_the_vote(app_url: str, connector: FakeConnector,
                                                      acts: Activities, services: Services) -> None:
    conv = unique_conversation("a:personal")
    reply_id, answer_id = _answered(app_url, connector, acts, conv)
    submit = acts.card_submit({"supportbot": "feedback", "answer_id": answer_id, "vote": "up"},
                              reply_to=reply_id, conversation=conv)
    assert post(app_url, submit).status_code == 201
    assert [v.vote for v in _votes(services, answer_id)] == [Vote.UP]


def test_message_reaction_records_a_vote(app_url: str, connector: FakeConnector, acts: Activities,
                                         services: Services) -> None:
    conv = unique_conversation("a:personal")
    reply_id, answer_id = _answered(app_url, connector, acts, conv)
    assert post(app_url, acts.reaction("like", reply_to=reply_id, conversation=conv)).status_code == 201
    assert [v.vote for v in _votes(services, answer_id)] == [Vote.UP]
    # A second user's reaction is a second vote; the same user's later one replaces the first.
    post(app_url, acts.reaction("angry", reply_to=reply_id, conversation=conv, aad="aad-other", user="29:other"))
    post(app_url, acts.reaction("sad", reply_to=reply_id, conversation=conv))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        votes = {v.user: v.vote for v in services.answer_store.feedback_for(answer_id)}
        if votes == {"aad-user-1": Vote.DOWN, "aad-other": Vote.DOWN}:
            break
        time.sleep(0.05)
    assert votes == {"aad-user-1": Vote.DOWN, "aad-other": Vote.DOWN}


# -- ingest ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openid() -> Iterator[OpenIdServer]:
    with OpenIdServer() as server:
        yield server


def signed_post(url: str, openid: OpenIdServer, activity: Mapping[str, object]) -> httpx.Response:
    """POST ``activity`` with the token the Bot Connector would send (its serviceUrl endorsed)."""
    token = openid.token(audience=APP_ID, service_url=str(activity["serviceUrl"]))
    return httpx.post(f"{url}/api/messages", json=dict(activity), headers={"Authorization": f"Bearer {token}"},
                      timeout=20)


@pytest.fixture(scope="module")
def fast_bot_url(services: Services, queue: ScriptedQueue, openid: OpenIdServer) -> Iterator[str]:
    """The Teams router with authentication and quick ingest polling (same services, same queue)."""
    gateway = authenticated_gateway(openid, APP_ID)
    bot = services.teams_bot(gateway, ingest_queue=queue)
    app = FastAPI()
    app.include_router(teams_router(services, gateway=gateway, bot=bot))
    with serve(app) as url:
        yield url


def test_admin_ingest_is_queued_with_where_the_worker_reports(
        fast_bot_url: str, openid: OpenIdServer, connector: FakeConnector, acts: Activities,
        queue: ScriptedQueue) -> None:
    conv = unique_conversation("a:personal")
    activity = acts.personal("ingest https://docs.example.com/handbook", conversation=conv, aad=ADMIN_AAD)
    assert signed_post(fast_bot_url, openid, activity).status_code == 201
    queued = reply_to(connector, activity, lambda c: str(c.body.get("text")).startswith("Queued the ingest"))
    target, requested_by, notify = queue.enqueued[-1]
    assert (target, requested_by) == ("https://docs.example.com/handbook", f"teams:{ADMIN_AAD}")
    assert "job-" in queued.body["text"]
    # Everything a proactive reply needs, so the worker posts progress and the result
    # (tests/test_job_notes.py) and a restarted web process loses nothing.
    address = ChatAddress.from_notify(notify)
    assert address is not None and address.platform == Platform.TEAMS
    assert (address.conversation, address.thread, address.service_url) == (
        conv, activity["id"], connector.service_url)
    assert address.bot == activity["recipient"]["id"]  # type: ignore[index]
    assert address.user == activity["from"]["id"]  # type: ignore[index]  # the channel id a reply's recipient carries


def test_admin_by_upn_may_ingest_and_a_bad_target_gets_usage(
        fast_bot_url: str, openid: OpenIdServer, connector: FakeConnector, acts: Activities,
        queue: ScriptedQueue) -> None:
    connector.members["29:upn-admin"] = {"id": "29:upn-admin", "name": "Ada", "aadObjectId": "aad-upn-admin",
                                         "userPrincipalName": "admin@contoso.com"}
    activity = acts.channel("ingest https://intranet.example/", user="29:upn-admin", aad="aad-upn-admin",
                            root=str(time.monotonic_ns()))
    signed_post(fast_bot_url, openid, activity)
    reply_to(connector, activity, lambda c: str(c.body.get("text")).startswith("Queued the ingest"))
    assert queue.enqueued[-1][:2] == ("https://intranet.example/", "teams:aad-upn-admin")
    # The same target rules as Slack's /ingest (they used to be Slack's alone).
    bad = acts.personal("ingest ftp://files.example/x", conversation=unique_conversation("a:p"), aad=ADMIN_AAD)
    signed_post(fast_bot_url, openid, bad)
    usage = reply_to(connector, bad, lambda c: c.type == "message")
    assert "not a valid http(s) URL" in usage.body["text"] and "Usage: `ingest" in usage.body["text"]


def test_non_admin_ingest_is_politely_refused(fast_bot_url: str, openid: OpenIdServer, connector: FakeConnector,
                                              acts: Activities, queue: ScriptedQueue) -> None:
    before = len(queue.enqueued)
    activity = acts.personal("ingest https://docs.example.com/", conversation=unique_conversation("a:p"))
    signed_post(fast_bot_url, openid, activity)
    refusal = reply_to(connector, activity, lambda c: c.type == "message")
    assert refusal.body["text"] == REFUSE_INGEST
    assert len(queue.enqueued) == before


# -- streaming ---------------------------------------------------------------------------------


class SlowGenerator:
    """The extractive generator, streamed word by word with a pause: a stand-in for an LLM."""

    name = "slow-extractive"

    def __init__(self, delay: float) -> None:
        self.inner = ExtractiveGenerator()
        self.delay = delay

    def generate(self, request: GenerationRequest):  # type: ignore[no-untyped-def]
        return self.inner.generate(request)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        for piece in re.split(r"(?<=\s)", self.inner.generate(request).text):
            time.sleep(self.delay)
            yield piece


@pytest.fixture(scope="module")
def streaming_url(services: Services) -> Iterator[str]:
    answers = AnswerService(services.retriever, SlowGenerator(0.03), services.answer_store,
                            policy=services.decline_policy, k=services.settings.top_k)
    gateway = services.teams_gateway
    bot = services.teams_bot(gateway, answers=answers,
                             options=TeamsOptions(first_update_after_s=0.0, update_interval_s=0.05))
    app = FastAPI()
    app.include_router(teams_router(services, gateway=gateway, bot=bot))
    with serve(app) as url:
        yield url


def test_personal_chat_streams_with_teams_streaming(streaming_url: str, connector: FakeConnector,
                                                    acts: Activities) -> None:
    conv = unique_conversation("a:personal")
    activity = acts.personal("How do I connect to the VPN?", conversation=conv)
    post(streaming_url, activity)
    final = reply_to(connector, activity, lambda c: c.type == "message" and c.card is not None)
    calls = connector.in_conversation(conv)
    chunks = [c for c in calls if c.stream_info and c.stream_info["streamType"] == "streaming"]
    assert len(chunks) >= 2
    assert [c.stream_info["streamSequence"] for c in chunks] == list(range(1, len(chunks) + 1))  # type: ignore[index]
    stream_id = chunks[0].assigned_id
    assert all(c.stream_info.get("streamId") == stream_id for c in chunks[1:])  # type: ignore[union-attr]
    texts = [c.body["text"] for c in chunks]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))  # text only grows
    assert final.stream_info == {"type": "streaminfo", "streamType": "final", "streamId": stream_id}
    assert "GlobalProtect" in final.body["text"]
    assert final.body["channelData"]["feedbackLoopEnabled"] is True


def test_channel_reply_is_updated_as_it_grows(streaming_url: str, connector: FakeConnector,
                                              acts: Activities) -> None:
    activity = acts.channel("How do I connect to the VPN?", root=str(time.monotonic_ns()))
    post(streaming_url, activity)
    final = reply_to(connector, activity, lambda c: c.method == "PUT" and c.card is not None)
    calls = connector.in_conversation(activity["conversation"]["id"])  # type: ignore[index]
    first = next(c for c in calls if c.method == "POST" and c.type == "message")
    assert first.card is None and first.body["text"].endswith("…")
    updates = [c for c in calls if c.method == "PUT"]
    assert len(updates) >= 2 and all(u.activity_id == first.assigned_id for u in updates)
    assert final is updates[-1]
    assert "GlobalProtect" in card_texts(final)[0]


class BrokenGenerator:
    """A generator whose provider is down (and no fallback is configured)."""

    name = "broken"

    def generate(self, request: GenerationRequest):  # type: ignore[no-untyped-def]
        raise ProviderUnavailable("generator down")

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        raise ProviderUnavailable("generator down")
        yield ""  # pragma: no cover - makes this a generator


def test_a_failing_provider_still_gets_the_asker_a_reply(services: Services, connector: FakeConnector,
                                                         acts: Activities) -> None:
    answers = AnswerService(services.retriever, BrokenGenerator(), services.answer_store,
                            policy=services.decline_policy)
    gateway = services.teams_gateway
    app = FastAPI()
    app.include_router(teams_router(services, gateway=gateway, bot=services.teams_bot(gateway, answers=answers)))
    with serve(app) as url:
        activity = acts.personal("How do I connect to the VPN?", conversation=unique_conversation("a:p"))
        post(url, activity)
        reply = reply_to(connector, activity, lambda c: c.type == "message")
    assert reply.body["text"] == FAILED
