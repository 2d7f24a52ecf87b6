"""Verified answers in Teams, end to end: activities POSTed to the real web app, replies received by
the fake Bot Connector, a real offline index. Decline → "Answer this" card → an expert's card
action → the same question and a paraphrase are answered with the verified answer cited; a
non-expert's card action does nothing; a private channel's answer is not cited in a public one."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.factory import Services
from adapters.settings import Settings
from adapters.teams.http import teams_router
from adapters.teams.verified import VERIFIED_VERB
from bot.types import Decision
from bot.verified import DOC_PREFIX, NOT_EXPERT_TEXT
from knowledge.loaders import iter_documents
from tests.fakes.openid_server import OpenIdServer, authenticated_gateway
from tests.fakes.teams_connector import Activities, Call, FakeConnector, serve

for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

TEAM = "19:team@thread.tacv2"  # the team every channel activity of the fake belongs to
GENERAL, PRIVATE = "19:general@thread.tacv2", "19:private@thread.tacv2"
EXPERT_AAD = "aad-expert"

DOCS = {
    "vpn.md": "# VPN\n\n## Connecting\n\nTo connect to the VPN, open the GlobalProtect app and sign in with your "
    "company account.\n",
    "billing.md": "# Billing\n\n## Refunds\n\nRefunds take 14 days for every plan.\n",
}
CHAIR_Q = "How do I order a new ergonomic office chair?"
CHAIR_PARAPHRASE = "how to get a new office chair"
CHAIR_A = "Order chairs in the **Facilities portal** under Furniture; your manager approves the request."


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Services:
    root = Path(tmp_path_factory.mktemp("teams-verified"))
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    settings = Settings(
        data_dir=root / "data",
        experts={f"teams:{TEAM}": [EXPERT_AAD]},
        access_channel_groups={f"teams:{PRIVATE}": ["staff"]},
        _env_file=None,  # type: ignore[call-arg]
    )
    built = Services(settings)
    built.ingestor.ingest(iter_documents([docs], source="docs", max_bytes=1 << 20), source="docs")
    return built


APP_ID = "verified-test-app"


@pytest.fixture(scope="module")
def openid() -> Iterator[OpenIdServer]:
    with OpenIdServer() as server:
        yield server


@pytest.fixture(scope="module")
def app_url(services: Services, openid: OpenIdServer) -> Iterator[str]:
    """The Teams endpoint with authentication on: who marks an answer must be vouched for by a
    Bot Framework token (an unauthenticated activity's ids are claims; see test_teams_exposure)."""
    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(teams_router(services, gateway=authenticated_gateway(openid, APP_ID)))
    with serve(app) as url:
        yield url


_OPENID: list[OpenIdServer] = []


@pytest.fixture(autouse=True)
def _signing(openid: OpenIdServer) -> Iterator[None]:
    _OPENID.append(openid)
    yield
    _OPENID.pop()


@pytest.fixture
def acts(connector: FakeConnector) -> Activities:
    return Activities(connector.service_url)


def post(url: str, activity: Mapping[str, object]) -> httpx.Response:
    """POST with the token the Bot Connector would send (its serviceUrl endorsed)."""
    token = _OPENID[-1].token(audience=APP_ID, service_url=str(activity["serviceUrl"]))
    return httpx.post(f"{url}/api/messages", json=dict(activity), headers={"Authorization": f"Bearer {token}"},
                      timeout=30)


def ask(app_url: str, connector: FakeConnector, acts: Activities, text: str, channel: str = GENERAL
        ) -> tuple[dict[str, Any], Call]:
    """Ask in a new channel thread; returns the activity and the final answer card."""
    activity = acts.channel(text, channel=channel, root=str(time.monotonic_ns()))
    assert post(app_url, activity).status_code == 201
    conv = activity["conversation"]["id"]
    card = connector.wait_for(lambda calls: next(
        (c for c in calls if c.conversation == conv and c.card is not None
         and any(a.get("verb") == "supportbot.feedback" for a in c.card.get("actions", []))), None), 60)
    return activity, card


def answer_of(services: Services, card: Call) -> Any:
    assert card.card is not None
    answer = services.answers.get_answer(str(card.card["actions"][0]["data"]["answer_id"]))
    assert answer is not None
    return answer


def cited_verified(services: Services, card: Call) -> list[str]:
    answer = answer_of(services, card)
    if answer.decision != Decision.ANSWERED:
        return []
    return [c.doc_id for c in answer.citations if c.doc_id.startswith(DOC_PREFIX)]


def answer_this_card(connector: FakeConnector, conversation: str) -> dict[str, Any]:
    call = connector.wait_for(lambda calls: next(
        (c for c in calls if c.conversation == conversation and c.card is not None
         and any(a.get("type") == "Action.ShowCard" for a in c.card.get("actions", []))), None), 30)
    assert call.card is not None
    return call.card


def card_action(acts: Activities, question: Mapping[str, Any], data: Mapping[str, Any], *, aad: str,
                user: str) -> dict[str, Any]:
    """The invoke Teams sends when someone presses "Use as answer" in the thread of ``question``."""
    channel = question["channelData"]["channel"]["id"]
    root = question["conversation"]["id"].partition(";messageid=")[2]
    activity = acts.channel("", mention=False, channel=channel, root=root, user=user, aad=aad)
    activity["from"]["name"] = "Erin Expert" if aad == EXPERT_AAD else "Nobody"
    for key in ("text", "textFormat", "entities"):
        activity.pop(key, None)
    activity.update(type="invoke", name="adaptiveCard/action",
                    value={"action": {"type": "Action.Execute", "verb": VERIFIED_VERB, "data": dict(data)},
                           "trigger": "manual"})
    return activity


def teach(app_url: str, connector: FakeConnector, acts: Activities, services: Services, question_text: str,
          answer_text: str, channel: str = GENERAL) -> str:
    question, card = ask(app_url, connector, acts, question_text, channel)
    assert answer_of(services, card).decision == Decision.DECLINED
    offer = answer_this_card(connector, question["conversation"]["id"])
    form = offer["actions"][0]["card"]
    submit = form["actions"][0]
    data = {**submit["data"], form["body"][0]["id"]: answer_text}
    response = post(app_url, card_action(acts, question, data, aad=EXPERT_AAD, user="29:expert"))
    assert response.status_code == 200
    value = response.json()["value"]
    assert "now in the knowledge base" in value
    return str(question["conversation"]["id"])


# -- tests ----------------------------------------------------------------------------------------
def test_decline_then_an_experts_card_action_then_the_question_and_a_paraphrase_cite_it(
        app_url: str, connector: FakeConnector, acts: Activities, services: Services) -> None:
    question, card = ask(app_url, connector, acts, CHAIR_Q)
    assert answer_of(services, card).decision == Decision.DECLINED
    conv = question["conversation"]["id"]
    offer = answer_this_card(connector, conv)
    assert offer["actions"][0]["title"] == "Answer this"
    form = offer["actions"][0]["card"]
    data = {**form["actions"][0]["data"], form["body"][0]["id"]: CHAIR_A}

    # A non-expert's card action does nothing but say who may.
    response = post(app_url, card_action(acts, question, data, aad="aad-user-2", user="29:user-2"))
    assert response.status_code == 200 and response.json()["value"] == NOT_EXPERT_TEXT
    assert services.verified.records() == []

    response = post(app_url, card_action(acts, question, data, aad=EXPERT_AAD, user="29:expert"))
    assert response.status_code == 200
    assert "@Erin Expert's answer is now in the knowledge base" in response.json()["value"]
    connector.wait_for(lambda calls: any(
        c.conversation == conv and "now in the knowledge base" in str(c.body.get("text")) for c in calls), 30)
    [verified] = services.verified.records()
    assert verified.question == CHAIR_Q and verified.author == EXPERT_AAD and verified.text == CHAIR_A
    assert verified.url.startswith("https://teams.microsoft.com/l/message/")

    for text in (CHAIR_Q, CHAIR_PARAPHRASE):
        _, later = ask(app_url, connector, acts, text)
        assert cited_verified(services, later) == [verified.doc_id], text
        lines = [b["text"] for b in later.card["body"]]  # type: ignore[index]
        assert any("Verified by @Erin Expert" in line for line in lines)


def test_a_private_channels_answer_is_not_cited_in_a_public_channel(
        app_url: str, connector: FakeConnector, acts: Activities, services: Services) -> None:
    question = "What is the budget code for the offsite team dinner?"
    teach(app_url, connector, acts, services, question, "Use budget code FIN-4410 for offsite team dinners.", PRIVATE)
    [private] = [v for v in services.verified.records() if v.question == question]
    _, public = ask(app_url, connector, acts, question, GENERAL)
    assert cited_verified(services, public) == []
    _, inside = ask(app_url, connector, acts, question, PRIVATE)
    assert cited_verified(services, inside) == [private.doc_id]


def test_an_unauthenticated_card_action_claiming_an_experts_id_saves_nothing(
        app_url: str, connector: FakeConnector, acts: Activities, services: Services) -> None:
    """Local testing mode (no app id): the expert's aadObjectId in an activity is a claim anyone can
    make, so marking is refused there, and nothing reaches the knowledge base."""
    from fastapi import FastAPI

    from bot.verified import UNVERIFIED_IDENTITY_TEXT

    question, card = ask(app_url, connector, acts, "How do I book the large meeting room for a week?")
    assert answer_of(services, card).decision == Decision.DECLINED
    form = answer_this_card(connector, question["conversation"]["id"])["actions"][0]["card"]
    data = {**form["actions"][0]["data"], form["body"][0]["id"]: "Book it in the Rooms portal."}
    before = len(services.verified.records())
    local = FastAPI()
    local.include_router(teams_router(services))  # no MicrosoftAppId: tokens are not checked
    with serve(local) as local_url:
        response = httpx.post(f"{local_url}/api/messages", timeout=30,
                              json=card_action(acts, question, data, aad=EXPERT_AAD, user="29:expert"))
    assert response.status_code == 200 and response.json()["value"] == UNVERIFIED_IDENTITY_TEXT
    assert len(services.verified.records()) == before


def test_a_down_vote_on_an_answer_in_a_channel_invites_the_experts_once(
        app_url: str, connector: FakeConnector, acts: Activities, services: Services) -> None:
    question, card = ask(app_url, connector, acts, "How do I connect to the VPN?")
    answer = answer_of(services, card)
    assert answer.decision == Decision.ANSWERED
    conv = question["conversation"]["id"]
    vote = {"supportbot": "feedback", "answer_id": answer.id, "vote": "down"}
    activity = card_action(acts, question, vote, aad="aad-user-3", user="29:user-3")
    activity["value"]["action"]["verb"] = "supportbot.feedback"
    for _ in range(2):  # a second 👎 on the same answer does not invite again
        assert post(app_url, activity).status_code == 200
    offer = answer_this_card(connector, conv)
    assert offer["actions"][0]["title"] == "Answer this"
    time.sleep(0.5)
    offers = [c for c in connector.calls if c.conversation == conv and c.card is not None
              and any(a.get("type") == "Action.ShowCard" for a in c.card.get("actions", []))]
    assert len(offers) == 1
