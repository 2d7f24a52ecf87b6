"""Verified answers in Slack, end to end: signed requests to the real app over HTTP, a fake Slack
Web API, a real offline index. Decline → an expert replies in the thread → ✅ → the same question
and a paraphrase are answered with the verified answer cited; a non-expert's ✅ does nothing; an
answer from a private channel is never cited in a public one."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.factory import Services
from adapters.settings import Settings
from adapters.slack.app import SlackBot, SlackOptions
from adapters.slack.http import slack_router
from adapters.slack.state import SlackState
from adapters.slack.verified import ACTION_ANSWER_THIS, SHORTCUT_USE_AS_ANSWER, to_markdown
from bot.types import Decision, SearchFilters
from bot.verified import DOC_PREFIX, NOT_EXPERT_TEXT
from knowledge.loaders import iter_documents
from tests.fakes.slack_server import (
    BOT_USER,
    FakeSlack,
    block_action,
    event_body,
    interaction_body,
    mention,
    message,
    serve,
    signed_headers,
)

pytestmark = pytest.mark.usefixtures("no_proxy")

SECRET = "test-signing-secret"
EXPERT, OTHER_EXPERT, NOBODY = "UEXPERT", "UEXPERT2", "UNOBODY"
PUBLIC_CH, PRIVATE_CH = "C300", "G300"

DOCS = {
    "password.md": "# Resetting your password\n\nTo reset your password, open https://id.example.com, choose "
    '"Forgot password" and follow the link we email you. The link expires after 30 minutes.\n',
    "vpn.md": "# VPN access\n\nInstall the WireGuard client and import the profile from the self-service "
    "portal. The VPN is required for the finance systems and the HR portal.\n",
}
CHAIR_Q = "How do I order a new ergonomic office chair?"
CHAIR_PARAPHRASE = "how to get a new office chair"
CHAIR_A = (
    "Order chairs in the *Facilities portal* under Furniture: pick the ergonomic model and your manager "
    "approves the request. Delivery takes about a week. Details: <https://facilities.example.com/chairs|chair guide>"
)
PARKING_Q = "Where do visitors park when they come to the office?"
PARKING_A = "Visitors park on level -2 of the garage; reception hands out a parking ticket on arrival."


@pytest.fixture(scope="module")
def fake(slack: FakeSlack) -> FakeSlack:
    """conftest's fake Slack Web API for this module (the tests name it ``fake``)."""
    return slack


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, fake: FakeSlack) -> Services:
    root = tmp_path_factory.mktemp("slack-verified")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=root / "data",
        slack_bot_token="xoxb-test",  # type: ignore[arg-type]
        slack_signing_secret=SECRET,  # type: ignore[arg-type]
        slack_api_url=fake.api_url,
        experts={"slack:*": [EXPERT, OTHER_EXPERT]},
        access_channel_groups={f"slack:{PRIVATE_CH}": ["staff"]},
        rate_questions_per_user=0,
        rate_questions_per_conversation=0,
    )
    built = Services(settings)
    built.ingestor.ingest(iter_documents([docs], source="kb", max_bytes=10**7), source="kb")
    return built


@pytest.fixture(scope="module")
def bot(services: Services, redis_url: str) -> Iterator[SlackBot]:
    state = SlackState(redis_url, prefix=f"test:{uuid.uuid4().hex}:")
    # No streaming: under load an answer can take over the default 0.8 s, and a streamed answer
    # ends as a chat.update of its draft, which carries no thread_ts for ask() to match on.
    slack = services.slack_bot(state=state, options=SlackOptions(first_update_after_s=60))
    yield slack
    slack.close()


@pytest.fixture(scope="module")
def app_url(services: Services, bot: SlackBot) -> Iterator[str]:
    web = FastAPI()
    web.include_router(slack_router(services, bot))
    with serve(web) as url:
        yield url


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=20) as client:
        yield client


# -- helpers --------------------------------------------------------------------------------------
def post(http: httpx.Client, url: str, body: str, *, form: bool = False) -> None:
    kind = "application/x-www-form-urlencoded" if form else "application/json"
    response = http.post(f"{url}/slack/events", content=body, headers=signed_headers(SECRET, body, content_type=kind))
    assert response.status_code == 200


def ask(fake: FakeSlack, http: httpx.Client, url: str, channel: str, text: str) -> tuple[str, Any]:
    """Ask with a mention; returns (thread ts, the answer message call)."""
    ts = fake.add_message(channel, f"<@{BOT_USER}> {text}")
    post(http, url, event_body(mention(channel, ts, text)))
    call = fake.wait_for(lambda: next((c for c in fake.answers(channel) if c.args.get("thread_ts") == ts), None), 120)
    return ts, call


def expert_reply(fake: FakeSlack, http: httpx.Client, url: str, channel: str, thread_ts: str, text: str,
                 user: str = EXPERT) -> str:
    """An expert's reply in the thread, delivered to the app as Slack would (a message event)."""
    ts = fake.add_message(channel, text, user=user, thread_ts=thread_ts)
    post(http, url, event_body(message(channel, ts, text, user=user, thread_ts=thread_ts)))
    return ts


def react(http: httpx.Client, url: str, fake: FakeSlack, channel: str, item_ts: str, user: str,
          item_user: str = EXPERT, name: str = "white_check_mark") -> None:
    event = {
        "type": "reaction_added",
        "user": user,
        "reaction": name,
        "item_user": item_user,
        "item": {"type": "message", "channel": channel, "ts": item_ts},
        "event_ts": fake.next_ts(),
    }
    post(http, url, event_body(event))


def posts_in_thread(fake: FakeSlack, channel: str, thread_ts: str) -> list[str]:
    return [
        str(c.args.get("text", "")) for c in fake.calls_to("chat.postMessage")
        if c.args.get("channel") == channel and c.args.get("thread_ts") == thread_ts
    ]


def cited_verified(services: Services, call: Any) -> list[str]:
    answer = services.answers.get_answer(call.args["metadata"]["event_payload"]["answer_id"])
    assert answer is not None
    return [c.doc_id for c in answer.citations if c.doc_id.startswith(DOC_PREFIX)] if answer.decision == Decision.ANSWERED else []


def announced(fake: FakeSlack, channel: str, thread_ts: str) -> bool:
    return any("now in the knowledge base" in t for t in posts_in_thread(fake, channel, thread_ts))


# -- tests ----------------------------------------------------------------------------------------
def test_decline_expert_reply_check_then_the_question_and_a_paraphrase_cite_it(
    fake: FakeSlack, http: httpx.Client, app_url: str, services: Services
) -> None:
    thread, declined = ask(fake, http, app_url, PUBLIC_CH, CHAIR_Q)
    assert cited_verified(services, declined) == []
    stored = services.answers.get_answer(declined.args["metadata"]["event_payload"]["answer_id"])
    assert stored is not None and stored.decision == Decision.DECLINED
    buttons = [e for b in declined.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert ACTION_ANSWER_THIS in [b["action_id"] for b in buttons]  # the decline offers "Answer this"

    reply_ts = expert_reply(fake, http, app_url, PUBLIC_CH, thread, CHAIR_A)
    time.sleep(1.0)
    # The expert's reply is the answer, not a follow-up question: the bot does not answer it.
    assert [c for c in fake.answers(PUBLIC_CH) if c.args.get("thread_ts") == thread] == [declined]

    # A non-expert's ✅ does nothing.
    react(http, app_url, fake, PUBLIC_CH, reply_ts, user=NOBODY)
    time.sleep(1.0)
    assert not announced(fake, PUBLIC_CH, thread)
    assert services.verified.records() == []

    # Another expert's ✅ makes it a verified answer; the thread is told.
    react(http, app_url, fake, PUBLIC_CH, reply_ts, user=OTHER_EXPERT)
    fake.wait_for(lambda: announced(fake, PUBLIC_CH, thread), 120)
    [verified] = services.verified.records()
    assert verified.question == CHAIR_Q and verified.author == EXPERT
    assert "**Facilities portal**" in verified.text  # the expert's formatting, as Markdown
    assert "[chair guide](https://facilities.example.com/chairs)" in verified.text
    assert verified.url.startswith("https://example.slack.com/archives/")
    assert verified.groups == frozenset({"public"})
    assert services.verified_store.get(verified.id) is not None

    # The same question, and a paraphrase, asked later: answered with the verified answer cited.
    for text in (CHAIR_Q, CHAIR_PARAPHRASE):
        _, later = ask(fake, http, app_url, "C301", text)
        assert cited_verified(services, later) == [verified.doc_id], text
        blocks = json.dumps(later.args["blocks"])
        assert "Verified by @someone" in blocks  # the badge (users.info gives the name)
        assert "Facilities portal" in blocks
    fake.wait_for(lambda: services.verified.records()[0].uses >= 2)


def test_the_use_as_answer_shortcut_and_answer_this_button(
    fake: FakeSlack, http: httpx.Client, app_url: str, services: Services
) -> None:
    thread, declined = ask(fake, http, app_url, PUBLIC_CH, PARKING_Q)
    answer_id = declined.args["metadata"]["event_payload"]["answer_id"]
    # "Answer this" tells a non-expert who can answer, and an expert how.
    for user, expected in ((NOBODY, NOT_EXPERT_TEXT), (EXPERT, "react to your reply")):
        post(http, app_url, interaction_body(block_action(ACTION_ANSWER_THIS, answer_id, user=user, channel=PUBLIC_CH,
                                                          message_ts=declined.args.get("ts", ""), thread_ts=thread)),
             form=True)
        fake.wait_for(lambda u=user, e=expected: any(
            c.args.get("user") == u and e in str(c.args.get("text")) for c in fake.calls_to("chat.postEphemeral")), 30)
    reply_ts = fake.add_message(PUBLIC_CH, PARKING_A, user=EXPERT, thread_ts=thread)
    shortcut = {
        "type": "message_action",
        "callback_id": SHORTCUT_USE_AS_ANSWER,
        "trigger_id": "trigger-2",
        "user": {"id": EXPERT, "name": "expert"},
        "channel": {"id": PUBLIC_CH, "name": "general"},
        "message": {"type": "message", "user": EXPERT, "ts": reply_ts, "thread_ts": thread, "text": PARKING_A},
        "response_url": fake.response_url(),
    }
    post(http, app_url, interaction_body(shortcut), form=True)
    fake.wait_for(lambda: announced(fake, PUBLIC_CH, thread), 120)
    assert any(v.question == PARKING_Q for v in services.verified.records())


def test_a_down_voted_answer_invites_experts_and_their_reply_replaces_it(
    fake: FakeSlack, http: httpx.Client, app_url: str, services: Services
) -> None:
    question = "How long is the password reset link valid?"
    thread, answered = ask(fake, http, app_url, PUBLIC_CH, question)
    assert services.answers.get_answer(answered.args["metadata"]["event_payload"]["answer_id"]).decision == Decision.ANSWERED  # type: ignore[union-attr]
    bot_ts = next(m["ts"] for m in fake.messages[PUBLIC_CH] if m.get("thread_ts") == thread and m.get("bot_id"))
    react(http, app_url, fake, PUBLIC_CH, bot_ts, user="U7", item_user=BOT_USER, name="-1")
    invite = fake.wait_for(lambda: next((c for c in fake.calls_to("chat.postMessage") if c.args.get("thread_ts") == thread
                                         and "Know the answer?" in str(c.args.get("text"))), None), 60)
    assert ACTION_ANSWER_THIS in json.dumps(invite.args["blocks"])
    reply_ts = expert_reply(fake, http, app_url, PUBLIC_CH, thread, "The reset link is valid for 30 minutes; ask IT after that.")
    react(http, app_url, fake, PUBLIC_CH, reply_ts, user=EXPERT)
    fake.wait_for(lambda: announced(fake, PUBLIC_CH, thread), 120)
    assert any(v.question == question for v in services.verified.records())


def test_a_private_channels_answer_is_not_cited_in_a_public_channel(
    fake: FakeSlack, http: httpx.Client, app_url: str, services: Services
) -> None:
    question = "What is the budget code for the offsite team dinner?"
    thread, _ = ask(fake, http, app_url, PRIVATE_CH, question)
    reply_ts = expert_reply(fake, http, app_url, PRIVATE_CH, thread, "Use budget code FIN-4410 for team dinners at offsites.")
    react(http, app_url, fake, PRIVATE_CH, reply_ts, user=EXPERT)
    fake.wait_for(lambda: announced(fake, PRIVATE_CH, thread), 120)
    [private] = [v for v in services.verified.records() if v.question == question]
    assert private.groups == frozenset({"public", "staff"})

    _, public = ask(fake, http, app_url, "C302", question)
    assert cited_verified(services, public) == []
    assert "FIN-4410" not in json.dumps(public.args["blocks"])
    _, inside = ask(fake, http, app_url, PRIVATE_CH, question)
    assert cited_verified(services, inside) == [private.doc_id]


def test_expired_and_removed_verified_answers_are_not_cited(
    fake: FakeSlack, http: httpx.Client, app_url: str, services: Services
) -> None:
    [chair] = [v for v in services.verified.records() if v.question == CHAIR_Q]
    assert services.verified.expire(chair.id) is not None
    _, after = ask(fake, http, app_url, "C303", CHAIR_Q)
    assert cited_verified(services, after) == []
    hits = services.retriever.search(CHAIR_Q, 10, SearchFilters())
    assert chair.doc_id not in {h.chunk.doc_id for h in hits.passages}
    assert services.verified.remove(chair.id)
    assert all(v.id != chair.id for v in services.verified.records())


def test_mrkdwn_to_markdown_keeps_formatting() -> None:
    text = "*Step 1* open <https://x.example/a|the portal>\n• pick _model_\n`*not bold*` &amp; <@U1>"
    assert to_markdown(text) == "**Step 1** open [the portal](https://x.example/a)\n- pick _model_\n`*not bold*` & @U1"
