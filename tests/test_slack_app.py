"""The Slack app end to end: real HTTP on 127.0.0.1 against a fake Slack Web API, real answers.

The app runs under uvicorn (HTTP mode) or connects to a local websocket (Socket Mode); the
knowledge base is a small real index built with the offline defaults (ONNX embedder,
extractive generator). Requests are signed like Slack signs them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.factory import Services
from adapters.settings import Settings
from adapters.slack.app import SlackBot, SlackOptions
from adapters.slack.http import slack_router
from adapters.slack.render import (
    ACTION_COMMENT,
    ACTION_SHARE,
    ACTION_VOTE_DOWN,
    ACTION_VOTE_UP,
    VIEW_FEEDBACK,
)
from adapters.slack.socket import socket_handler
from adapters.slack.state import SlackState
from bot.answering import AnswerService
from bot.errors import ProviderRejected
from bot.extractive import ExtractiveGenerator
from bot.messages import FAILED as FAILURE_TEXT
from bot.ports import Generation, GenerationRequest, JobStatus
from bot.types import ChatAddress, Platform, Vote
from knowledge.loaders import iter_documents
from tests.fakes.slack_server import (
    BOT_USER,
    TEAM,
    FakeSlack,
    SocketModeServer,
    block_action,
    command_body,
    event_body,
    interaction_body,
    mention,
    message,
    serve,
    signed_headers,
)

pytestmark = pytest.mark.usefixtures("no_proxy")

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token-do-not-log"

DOCS = {
    "password.md": "# Resetting your password\n\nTo reset your password, open https://id.example.com, choose "
    '"Forgot password" and follow the link we email you. The link expires after 30 minutes.\n\n'
    "## Locked accounts\n\nAfter five failed sign-in attempts your account is locked for 15 minutes. "
    "IT support can unlock it sooner.\n",
    "vpn.md": "# VPN access\n\nInstall the WireGuard client and import the profile from the self-service "
    "portal. The VPN is required for the finance systems and the HR portal.\n",
    "refunds.md": "# Refund policy\n\nCustomers can request a refund within 30 days of purchase. Refunds are "
    "paid to the original payment method within 5 business days.\n",
}


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, fake: FakeSlack) -> Services:
    root = tmp_path_factory.mktemp("slack-kb")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=root / "data",
        slack_bot_token=TOKEN,  # type: ignore[arg-type]
        slack_signing_secret=SECRET,  # type: ignore[arg-type]
        slack_api_url=fake.api_url,
        slack_admins=["UADMIN"],
        slack_admin_group="SADMINS",
    )
    built = Services(settings)
    report = built.ingestor.ingest(iter_documents([docs], source="kb", max_bytes=10**7), source="kb")
    assert len(report.added) == 3
    built.decline_policy()  # calibrated after the ingest, as `supportbot ingest` does
    return built


class ScriptedQueue:
    """A test implementation of the IngestQueue port: records jobs, plays back a status script.
    (Progress and results are posted by the worker: tests/test_job_notes.py.)"""

    def __init__(self, script: list[JobStatus] | None = None) -> None:
        self.jobs: list[tuple[str, str, dict[str, str]]] = []
        self.script = script or [
            JobStatus("job-1", "queued"),
            JobStatus("job-1", "running", done=1, total=3, current="guide.html"),
            JobStatus(
                "job-1",
                "done",
                done=3,
                total=3,
                summary="added 2, changed 1, unchanged 0, removed 0, failed 0",
            ),
        ]
        self._reads = 0

    def enqueue_ingest(self, target: str, requested_by: str, notify: Mapping[str, str]) -> str:
        self.jobs.append((target, requested_by, dict(notify)))
        return "job-1"

    def enqueue_sync(self, source: str, requested_by: str = "", notify: Mapping[str, str] | None = None) -> str:
        return self.enqueue_ingest(source, requested_by, notify or {})

    def status(self, job_id: str) -> JobStatus:
        status = self.script[min(self._reads, len(self.script) - 1)]
        self._reads += 1
        return status


@pytest.fixture
def queue() -> ScriptedQueue:
    return ScriptedQueue()


@pytest.fixture
def state(redis_url: str) -> SlackState:
    return SlackState(redis_url, prefix=f"test:{uuid.uuid4().hex}:")


@pytest.fixture
def bot(services: Services, state: SlackState, queue: ScriptedQueue) -> Iterator[SlackBot]:
    slack = services.slack_bot(state=state, ingest_queue=queue)
    yield slack
    slack.close()


@pytest.fixture
def app_url(services: Services, bot: SlackBot) -> Iterator[str]:
    web = FastAPI()
    web.include_router(slack_router(services, bot))
    with serve(web) as url:
        yield url


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield client


def post(
    http: httpx.Client, url: str, body: str, *, form: bool = False, extra: dict[str, str] | None = None
) -> httpx.Response:
    kind = "application/x-www-form-urlencoded" if form else "application/json"
    headers = {**signed_headers(SECRET, body, content_type=kind), **(extra or {})}
    return http.post(f"{url}/slack/events", content=body, headers=headers)


def ask_in_channel(fake: FakeSlack, http: httpx.Client, url: str, text: str, channel: str = "C1") -> str:
    ts = fake.add_message(channel, f"<@{BOT_USER}> {text}")
    assert post(http, url, event_body(mention(channel, ts, text))).status_code == 200
    return ts


def ack_text(response: httpx.Response) -> str:
    """The text of an ack: bolt sends a text-only ack as text/plain, a richer one as JSON."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return str(response.json().get("text", ""))
    return response.text


def answers_in(fake: FakeSlack, channel: str, thread_ts: str) -> list[Any]:
    return [
        c for c in fake.answers(channel) if c.args.get("thread_ts") == thread_ts or c.method == "chat.update"
    ]


def settle(seconds: float = 0.4) -> None:
    """Give a duplicate time to show up (if it were going to) before counting answers."""
    time.sleep(seconds)


def answer_id_of(call: Any) -> str:
    return str(call.args["metadata"]["event_payload"]["answer_id"])


# -- answering ------------------------------------------------------------------------------------
def test_mention_is_answered_in_the_thread_with_sources_and_buttons(
    fake: FakeSlack, http: httpx.Client, app_url: str, services: Services
) -> None:
    ts = ask_in_channel(fake, http, app_url, "How do I reset my password?", channel="C100")
    [answer] = fake.wait_for(lambda: fake.answers("C100"))
    assert answer.args["thread_ts"] == ts
    assert "reset your password" in answer.args["text"]  # fallback text
    blocks = answer.args["blocks"]
    texts = json.dumps(blocks)
    assert "*Sources*" in texts and "Resetting your password" in texts
    assert "updated just now" in texts or "minute" in texts
    actions = [b for b in blocks if b["type"] == "actions"][0]["elements"]
    assert [a["action_id"] for a in actions] == [ACTION_VOTE_UP, ACTION_VOTE_DOWN]
    stored = services.answers.get_answer(actions[0]["value"])
    assert stored is not None and stored.question.platform == "slack" and stored.question.thread == ts
    # Working indicator at once, removed once the answer is there.
    [added] = fake.calls_to("reactions.add")[-1:]
    assert added.args["timestamp"] == ts and added.args["name"] == "eyes"
    fake.wait_for(lambda: any(c.args.get("timestamp") == ts for c in fake.calls_to("reactions.remove")))


def test_forged_signature_and_stale_timestamp_get_401(
    fake: FakeSlack, http: httpx.Client, app_url: str
) -> None:
    body = event_body(mention("C101", fake.next_ts(), "How do I reset my password?"))
    forged = signed_headers("not-the-secret", body)
    assert http.post(f"{app_url}/slack/events", content=body, headers=forged).status_code == 401
    stale = signed_headers(SECRET, body, timestamp=int(time.time()) - 10 * 60)
    assert http.post(f"{app_url}/slack/events", content=body, headers=stale).status_code == 401
    settle(0.3)
    assert fake.answers("C101") == []


def test_a_retried_event_gives_exactly_one_answer(fake: FakeSlack, http: httpx.Client, app_url: str) -> None:
    ts = fake.add_message("C102", f"<@{BOT_USER}> how long until a refund is paid?")
    body = event_body(mention("C102", ts, "how long until a refund is paid?"), event_id="Ev-retried")
    assert post(http, app_url, body).status_code == 200
    for n in (1, 2, 3):
        retry = {"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"}
        assert post(http, app_url, body, extra=retry).status_code == 200
    fake.wait_for(lambda: fake.answers("C102"))
    settle()
    assert len(fake.answers("C102")) == 1


def test_app_mention_and_message_for_one_mention_give_one_answer(
    fake: FakeSlack, http: httpx.Client, app_url: str
) -> None:
    text = "how long until a refund is paid?"
    ts = fake.add_message("C103", f"<@{BOT_USER}> {text}")
    bodies = [event_body(mention("C103", ts, text)), event_body(message("C103", ts, f"<@{BOT_USER}> {text}"))]
    threads = [threading.Thread(target=post, args=(http, app_url, b)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fake.wait_for(lambda: fake.answers("C103"))
    settle()
    assert len(fake.answers("C103")) == 1


def test_a_follow_up_in_an_answered_thread_needs_no_mention_and_carries_history(
    fake: FakeSlack, http: httpx.Client, app_url: str, services: Services
) -> None:
    root = ask_in_channel(fake, http, app_url, "How do I reset my password?", channel="C104")
    fake.wait_for(lambda: fake.answers("C104"))
    follow = fake.add_message("C104", "what if my account is locked?", thread_ts=root)
    post(http, app_url, event_body(message("C104", follow, "what if my account is locked?", thread_ts=root)))
    fake.wait_for(lambda: len(fake.answers("C104")) == 2)
    second = fake.answers("C104")[1]
    assert second.args["thread_ts"] == root
    assert "locked for 15 minutes" in second.args["text"]
    stored = services.answers.get_answer(answer_id_of(second))
    assert stored is not None
    assert [t.speaker for t in stored.question.history] == ["user", "assistant"]
    assert stored.question.history[0].text == "How do I reset my password?"  # the mention is gone
    assert "reset your password" in stored.question.history[1].text
    assert "Sources:" not in stored.question.history[1].text
    # A thread the bot never answered in is left alone.
    other = fake.add_message("C104", "anyone around?")
    reply = fake.add_message("C104", "what about refunds?", thread_ts=other)
    post(http, app_url, event_body(message("C104", reply, "what about refunds?", thread_ts=other)))
    settle()
    assert len(fake.answers("C104")) == 2


def test_a_direct_message_is_answered(fake: FakeSlack, http: httpx.Client, app_url: str) -> None:
    ts = fake.add_message("D105", "how do I get VPN access?")
    post(http, app_url, event_body(message("D105", ts, "how do I get VPN access?", channel_type="im")))
    [answer] = fake.wait_for(lambda: fake.answers("D105"))
    assert answer.args["thread_ts"] == ts and "VPN" in answer.args["text"]


def test_an_unknown_question_is_declined_politely(fake: FakeSlack, http: httpx.Client, app_url: str) -> None:
    ask_in_channel(fake, http, app_url, "What is the capital of France?", channel="C106")
    [answer] = fake.wait_for(lambda: fake.answers("C106"))
    assert "couldn't find this in the knowledge base" in answer.args["text"]


def test_a_429_delays_the_answer_but_never_drops_it(
    fake: FakeSlack, http: httpx.Client, app_url: str
) -> None:
    before = len(fake.calls_to("chat.postMessage"))
    fake.rate_limit("chat.postMessage", times=1, retry_after=1)
    started = time.monotonic()
    ask_in_channel(fake, http, app_url, "how do I get VPN access?", channel="C107")
    [answer] = fake.wait_for(lambda: fake.answers("C107"))
    assert time.monotonic() - started >= 0.9  # it waited out Retry-After
    assert "VPN" in answer.args["text"]
    assert len(fake.calls_to("chat.postMessage")) - before == 2


def test_a_failure_reaches_the_user_and_the_log_has_no_token(
    fake: FakeSlack,
    http: httpx.Client,
    services: Services,
    state: SlackState,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenGenerator:
        name = "broken"

        def generate(self, request: GenerationRequest) -> Generation:
            raise ProviderRejected("the model refused")

        def stream(self, request: GenerationRequest) -> Iterator[str]:
            raise ProviderRejected("the model refused")

    broken = AnswerService(services.retriever, BrokenGenerator(), services.answer_store)
    slack = services.slack_bot(answers=broken, state=state)
    web = FastAPI()
    web.include_router(slack_router(services, slack))
    with caplog.at_level(logging.DEBUG), serve(web) as url:
        ts = ask_in_channel(fake, http, url, "How do I reset my password?", channel="C108")
        failure = fake.wait_for(
            lambda: [c for c in fake.calls_to("chat.postMessage") if c.args.get("channel") == "C108"]
        )
        fake.wait_for(lambda: any(c.args.get("timestamp") == ts for c in fake.calls_to("reactions.remove")))
    slack.close()
    assert failure[0].args["text"] == FAILURE_TEXT and failure[0].args["thread_ts"] == ts
    assert "the model refused" in caplog.text
    assert TOKEN not in caplog.text


# -- feedback -------------------------------------------------------------------------------------
def test_vote_buttons_are_acknowledged_at_once_recorded_and_thanked(
    fake: FakeSlack, http: httpx.Client, app_url: str, services: Services
) -> None:
    root = ask_in_channel(fake, http, app_url, "How do I reset my password?", channel="C110")
    [answer] = fake.wait_for(lambda: fake.answers("C110"))
    answer_id = answer_id_of(answer)
    click = block_action(
        ACTION_VOTE_UP, answer_id, user="U5", channel="C110", message_ts="1.0", thread_ts=root
    )
    started = time.perf_counter()
    assert post(http, app_url, interaction_body(click), form=True).status_code == 200
    assert time.perf_counter() - started < 3
    fake.wait_for(lambda: [c for c in fake.calls_to("chat.postEphemeral") if c.args.get("user") == "U5"])
    assert [(f.user, f.vote) for f in services.answer_store.feedback_for(answer_id)] == [("U5", Vote.UP)]

    # 👎 replaces the vote, opens the "what was wrong" modal; its submission adds the comment.
    down = block_action(
        ACTION_VOTE_DOWN, answer_id, user="U5", channel="C110", message_ts="1.0", thread_ts=root
    )
    assert post(http, app_url, interaction_body(down), form=True).status_code == 200
    [modal] = fake.wait_for(lambda: fake.calls_to("views.open"))
    view = modal.args["view"]
    assert view["callback_id"] == VIEW_FEEDBACK
    fake.wait_for(lambda: services.answer_store.feedback_for(answer_id)[0].vote == Vote.DOWN)
    submission = {
        "type": "view_submission",
        "user": {"id": "U5", "name": "someone", "team_id": TEAM},
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": VIEW_FEEDBACK,
            "private_metadata": view["private_metadata"],
            "state": {
                "values": {"comment": {"comment": {"type": "plain_text_input", "value": "Link is wrong"}}}
            },
        },
    }
    response = post(http, app_url, interaction_body(submission), form=True)
    assert response.status_code == 200
    fake.wait_for(lambda: services.answer_store.feedback_for(answer_id)[0].comment == "Link is wrong")
    [vote] = services.answer_store.feedback_for(answer_id)
    assert (vote.user, vote.vote) == ("U5", Vote.DOWN)


def test_a_vote_on_an_unknown_answer_is_not_recorded_and_the_voter_is_told(
    fake: FakeSlack, http: httpx.Client, app_url: str, services: Services
) -> None:
    # The same rule as Teams' (bot/conversation.py): the answer must exist.
    click = block_action(ACTION_VOTE_UP, "no-such-answer", user="U404", channel="C404", message_ts="1.0")
    assert post(http, app_url, interaction_body(click), form=True).status_code == 200
    [told] = fake.wait_for(lambda: [c for c in fake.calls_to("chat.postEphemeral") if c.args.get("user") == "U404"])
    assert "couldn't find that answer" in told.args["text"]
    assert services.answer_store.feedback_for("no-such-answer") == []


def test_thumbs_reactions_on_an_answer_are_votes(
    fake: FakeSlack, http: httpx.Client, app_url: str, services: Services
) -> None:
    ask_in_channel(fake, http, app_url, "how long until a refund is paid?", channel="C111")
    [answer] = fake.wait_for(lambda: fake.answers("C111"))
    answer_id = answer_id_of(answer)
    answer_ts = fake.messages["C111"][-1]["ts"]
    # The ts → answer mapping is stored right after the post; the 👀 goes once it is.
    fake.wait_for(lambda: [c for c in fake.calls_to("reactions.remove") if c.args.get("channel") == "C111"])

    def react(name: str, item_ts: str, item_user: str = BOT_USER) -> None:
        event = {
            "type": "reaction_added",
            "user": "U6",
            "reaction": name,
            "item_user": item_user,
            "item": {"type": "message", "channel": "C111", "ts": item_ts},
            "event_ts": fake.next_ts(),
        }
        assert post(http, app_url, event_body(event)).status_code == 200

    react("thumbsup", answer_ts)
    fake.wait_for(lambda: services.answer_store.feedback_for(answer_id))
    react("-1::skin-tone-3", answer_ts)
    fake.wait_for(lambda: services.answer_store.feedback_for(answer_id)[0].vote == Vote.DOWN)
    assert len(services.answer_store.feedback_for(answer_id)) == 1  # one vote per user, replaced
    # Each vote is thanked after it is stored: wait for the second thank-you, not just the first.
    thanks = fake.wait_for(
        lambda: [c for c in fake.calls_to("chat.postEphemeral") if c.args.get("user") == "U6"][1:] and [
            c for c in fake.calls_to("chat.postEphemeral") if c.args.get("user") == "U6"
        ]
    )
    assert len(thanks) == 2
    assert ACTION_COMMENT in json.dumps(thanks[-1].args.get("blocks"))
    # A 👍 on somebody else's message is not a vote.
    react("+1", fake.add_message("C111", "thanks all"), item_user="U1")
    settle(0.3)
    assert len([c for c in fake.calls_to("chat.postEphemeral") if c.args.get("user") == "U6"]) == 2


# -- slash commands -------------------------------------------------------------------------------
def test_ingest_acks_at_once_and_queues_the_job_with_where_to_report(
    fake: FakeSlack, http: httpx.Client, app_url: str, queue: ScriptedQueue
) -> None:
    url = fake.response_url("ingest-ok")
    started = time.perf_counter()
    response = post(
        http,
        app_url,
        command_body("/ingest", "https://help.example.com/guide", url, user="UADMIN"),
        form=True,
    )
    assert time.perf_counter() - started < 3
    assert response.status_code == 200 and "requested" in ack_text(response)
    [queued] = fake.wait_for(lambda: [r for r in fake.responses if r.method.endswith("ingest-ok")])
    assert queued.args["text"].startswith("Queued the ingest") and "job-1" in queued.args["text"]
    assert queued.args.get("response_type") == "ephemeral"
    target, requested_by, notify = queue.jobs[0]
    assert (target, requested_by) == ("https://help.example.com/guide", "slack:UADMIN")
    # The job carries where the worker reports (the requester and the channel), never the
    # response_url: it is a capability, and job records are readable on the web page.
    assert ChatAddress.from_notify(notify) == ChatAddress(Platform.SLACK, "C1", user="UADMIN", team=TEAM)
    assert "response_url" not in notify and url not in json.dumps(notify)
    assert queued.args["text"].endswith("in a direct message.")  # the worker DMs the requester
    # Typed in the DM with the bot: the worker reports in that DM.
    dm_url = fake.response_url("ingest-dm")
    post(http, app_url, command_body("/ingest", "handbook", dm_url, user="UADMIN", channel="D1"), form=True)
    [in_dm] = fake.wait_for(lambda: [r for r in fake.responses if r.method.endswith("ingest-dm")])
    assert in_dm.args["text"].endswith("the result here.")
    assert ChatAddress.from_notify(queue.jobs[1][2]) == ChatAddress(Platform.SLACK, "D1", user="UADMIN", team=TEAM)


def test_ingest_tells_the_admin_when_the_queue_is_down(
    fake: FakeSlack, http: httpx.Client, app_url: str, queue: ScriptedQueue
) -> None:
    def broken(target: str, requested_by: str, notify: Mapping[str, str]) -> str:
        raise ConnectionError("broker down")

    queue.enqueue_ingest = broken  # type: ignore[method-assign]
    url = fake.response_url("ingest-down")
    post(http, app_url, command_body("/ingest", "handbook", url, user="UADMIN"), form=True)
    [reply] = fake.wait_for(lambda: [r for r in fake.responses if r.method.endswith("ingest-down")])
    assert "couldn't queue" in reply.args["text"]


def test_slash_command_and_button_acks_do_not_wait_for_the_work(
    fake: FakeSlack, http: httpx.Client, app_url: str, queue: ScriptedQueue
) -> None:
    # The group lookup (a Slack call) and the enqueue happen after the ack; both are slow here.
    fake.usergroups["SADMINS"] = ["USLOW"]
    fake.delay("usergroups.users.list", 3.5)
    fake.delay("chat.postEphemeral", 3.5)
    try:
        url = fake.response_url("slow-ingest")
        started = time.perf_counter()
        response = post(http, app_url, command_body("/ingest", "handbook", url, user="USLOW"), form=True)
        assert response.status_code == 200 and time.perf_counter() - started < 1.0
        click = block_action(ACTION_VOTE_UP, "no-such-answer", user="USLOW", channel="C150", message_ts="1.0")
        started = time.perf_counter()
        assert post(http, app_url, interaction_body(click), form=True).status_code == 200
        assert time.perf_counter() - started < 1.0
        # ... and the work still gets done afterwards.
        fake.wait_for(
            lambda: [
                r for r in fake.responses if r.method.endswith("slow-ingest") and "Queued" in r.args["text"]
            ]
        )
        fake.wait_for(
            lambda: [c for c in fake.calls_to("chat.postEphemeral") if c.args.get("user") == "USLOW"]
        )
    finally:
        fake.delay("usergroups.users.list", 0)
        fake.delay("chat.postEphemeral", 0)


@pytest.mark.parametrize("text", ["", "   ", "ftp://files.example.com/x", "http://", "two words", "bad/name"])
def test_ingest_without_a_good_argument_gets_usage_help(
    fake: FakeSlack, http: httpx.Client, app_url: str, queue: ScriptedQueue, text: str
) -> None:
    response = post(
        http, app_url, command_body("/ingest", text, fake.response_url(), user="UADMIN"), form=True
    )
    assert response.status_code == 200 and "Usage: `/ingest" in ack_text(response)
    assert queue.jobs == []


def test_only_admins_may_ingest(
    fake: FakeSlack, http: httpx.Client, app_url: str, queue: ScriptedQueue
) -> None:
    fake.usergroups["SADMINS"] = ["UGROUP"]
    refused_url = fake.response_url("refused")
    assert (
        post(
            http, app_url, command_body("/ingest", "handbook", refused_url, user="UNOBODY"), form=True
        ).status_code
        == 200
    )
    [refusal] = fake.wait_for(lambda: [r for r in fake.responses if r.method.endswith("refused")])
    assert "only the knowledge base admins" in refusal.args["text"]
    allowed_url = fake.response_url("group-member")
    post(http, app_url, command_body("/ingest", "handbook", allowed_url, user="UGROUP"), form=True)
    fake.wait_for(
        lambda: [
            r for r in fake.responses if r.method.endswith("group-member") and "Queued" in r.args["text"]
        ]
    )
    assert [j[0] for j in queue.jobs] == ["handbook"]  # the refused one never reached the queue
    assert fake.calls_to("usergroups.users.list")[-1].args["usergroup"] == "SADMINS"


def test_ask_answers_privately_and_can_be_shared(
    fake: FakeSlack, http: httpx.Client, app_url: str, services: Services
) -> None:
    url = fake.response_url("ask")
    started = time.perf_counter()
    response = post(
        http, app_url, command_body("/ask", "how do I get VPN access?", url, channel="C120"), form=True
    )
    assert time.perf_counter() - started < 3 and response.status_code == 200
    [private] = fake.wait_for(
        lambda: [r for r in fake.responses if r.method.endswith("/ask") and r.args.get("blocks")]
    )
    assert private.args["response_type"] == "ephemeral" and "VPN" in private.args["text"]
    share = [
        e
        for b in private.args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == ACTION_SHARE
    ]
    assert share and fake.answers("C120") == []
    click = block_action(ACTION_SHARE, share[0]["value"], channel="C120", response_url=url, ephemeral=True)
    assert post(http, app_url, interaction_body(click), form=True).status_code == 200
    [shared] = fake.wait_for(lambda: fake.answers("C120"))
    assert "VPN" in shared.args["text"] and "Shared by <@U1>" in json.dumps(shared.args["blocks"])
    fake.wait_for(
        lambda: [r for r in fake.responses if r.method.endswith("/ask") and r.args.get("delete_original")]
    )


def test_ask_without_a_question_gets_usage(fake: FakeSlack, http: httpx.Client, app_url: str) -> None:
    response = post(http, app_url, command_body("/ask", "", fake.response_url()), form=True)
    assert "Usage: `/ask" in ack_text(response)


# -- streaming ------------------------------------------------------------------------------------
class SlowGenerator:
    """A test Generator: the extractive answer, one word every 30 ms (like a remote LLM)."""

    name = "slow-extractive"

    def __init__(self) -> None:
        self.inner = ExtractiveGenerator()

    def generate(self, request: GenerationRequest) -> Generation:
        return self.inner.generate(request)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        text = self.inner.generate(request).text
        for i, word in enumerate(text.split(" ")):
            time.sleep(0.03)
            yield word if i == 0 else " " + word


@pytest.fixture
def slow_url(services: Services, state: SlackState) -> Iterator[str]:
    slow = AnswerService(services.retriever, SlowGenerator(), services.answer_store)
    slack = services.slack_bot(
        answers=slow, state=state, options=SlackOptions(first_update_after_s=0.05, update_interval_s=0.1)
    )
    web = FastAPI()
    web.include_router(slack_router(services, slack))
    with serve(web) as url:
        yield url
    slack.close()


def test_a_slow_answer_streams_with_the_chat_streaming_methods(
    fake: FakeSlack, http: httpx.Client, slow_url: str
) -> None:
    ts = ask_in_channel(fake, http, slow_url, "How do I reset my password?", channel="C130")
    [final] = fake.wait_for(lambda: fake.answers("C130"), timeout=15)
    [start] = [c for c in fake.calls_to("chat.startStream") if c.args["channel"] == "C130"]
    assert start.args["thread_ts"] == ts and start.args["recipient_user_id"] == "U1"
    assert [c for c in fake.calls_to("chat.appendStream") if c.args["channel"] == "C130"]
    [stop] = [c for c in fake.calls_to("chat.stopStream") if c.args["channel"] == "C130"]
    assert stop.at <= final.at
    # The final message replaces the stream with the authoritative answer and its buttons.
    assert final.method == "chat.update" and final.args["ts"] == fake.messages["C130"][-1]["ts"]
    assert any(b["type"] == "actions" for b in final.args["blocks"])


def test_without_chat_streaming_the_answer_is_updated_in_place(
    fake: FakeSlack, http: httpx.Client, slow_url: str
) -> None:
    fake.fail("chat.startStream", "not_allowed_token_type")
    ask_in_channel(fake, http, slow_url, "How do I reset my password?", channel="C131")
    [final] = fake.wait_for(lambda: fake.answers("C131"), timeout=15)
    [placeholder] = [c for c in fake.calls_to("chat.postMessage") if c.args["channel"] == "C131"]
    assert placeholder.args["text"].endswith("…")
    updates = [c for c in fake.calls_to("chat.update") if c.args["channel"] == "C131"]
    assert final in updates and final.args["ts"] == fake.messages["C131"][-1]["ts"]
    partial = [u for u in updates if u is not final]
    gaps = [b.at - a.at for a, b in zip([placeholder, *partial], partial, strict=False)]
    # Throttled to the configured 0.1 s (measured on arrival, so allow for network jitter).
    assert all(g >= 0.06 for g in gaps), gaps


# -- dedup store ----------------------------------------------------------------------------------
def test_dedup_holds_across_processes_sharing_redis(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    one, two = SlackState(redis_url, prefix=prefix), SlackState(redis_url, prefix=prefix)
    assert one.claim("T1", "C1", "1.000001") is True
    assert two.claim("T1", "C1", "1.000001") is False
    assert two.claim("T1", "C1", "1.000002") is True


def test_dedup_degrades_to_memory_when_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    state = SlackState("redis://127.0.0.1:9/0")  # nothing listens on the discard port
    with caplog.at_level(logging.WARNING):
        assert state.claim("T1", "C1", "1.0") is True
        assert state.claim("T1", "C1", "1.0") is False
        state.remember_answer("C1", "2.0", "answer-1", "1.0")
        assert state.answer_for("C1", "2.0") == ("answer-1", "1.0")
    assert "Redis unavailable" in caplog.text


# -- Socket Mode ----------------------------------------------------------------------------------
def test_socket_mode_answers_through_a_local_websocket(
    fake: FakeSlack, services: Services, state: SlackState
) -> None:
    with SocketModeServer() as ws:
        fake.ws_url = ws.url
        slack = services.slack_bot(state=state, socket_mode=True)
        handler = socket_handler(slack, "xapp-test")
        handler.connect()
        try:
            assert ws.connected.wait(10)
            ts = fake.add_message("C140", f"<@{BOT_USER}> how do I get VPN access?")
            payload = json.loads(event_body(mention("C140", ts, "how do I get VPN access?")))
            ws.send(
                {
                    "envelope_id": "env-1",
                    "type": "events_api",
                    "accepts_response_payload": False,
                    "payload": payload,
                }
            )
            fake.wait_for(lambda: any(a.get("envelope_id") == "env-1" for a in ws.acks))
            [answer] = fake.wait_for(lambda: fake.answers("C140"))
            assert answer.args["thread_ts"] == ts and "VPN" in answer.args["text"]
            # The same event delivered again (a reconnect) is not answered twice.
            ws.send(
                {
                    "envelope_id": "env-2",
                    "type": "events_api",
                    "accepts_response_payload": False,
                    "payload": payload,
                }
            )
            fake.wait_for(lambda: any(a.get("envelope_id") == "env-2" for a in ws.acks))
            settle()
            assert len(fake.answers("C140")) == 1
        finally:
            handler.close()
            slack.close()


def test_settings_pick_the_mode() -> None:
    from adapters.slack.app import resolve_mode

    base = {"_env_file": None}
    assert resolve_mode(Settings(**base)) == "http"  # type: ignore[arg-type]
    assert resolve_mode(Settings(**base, slack_app_token="xapp-1")) == "socket"  # type: ignore[arg-type]
    assert resolve_mode(Settings(**base, slack_app_token="xapp-1", slack_mode="http")) == "http"  # type: ignore[arg-type]
