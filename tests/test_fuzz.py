"""Fuzzing the chat endpoints and the loaders' content-type path (hypothesis).

Arbitrary Slack payloads — Events API envelopes, slash commands, interactivity payloads, raw
JSON — signed correctly and POSTed to ``/slack/events``, and arbitrary Teams activities POSTed
to ``/api/messages``: never a 5xx (except Bot Framework's 501 for an invoke nobody handles),
never an unhandled error in a listener or a background turn, never a hang (every request has
a timeout). Loaders: arbitrary bytes under every content type (with charset parameters) give
documents or a SourceError, nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.factory import Services
from adapters.settings import Settings
from adapters.slack.app import SlackOptions
from adapters.slack.http import slack_router
from adapters.slack.state import SlackState
from adapters.teams.http import teams_router
from bot.errors import SourceError
from knowledge.loaders import load_bytes
from tests.fakes.slack_server import BOT_USER, TEAM, FakeSlack, signed_headers
from tests.fakes.slack_server import serve as serve_app
from tests.fakes.teams_connector import FakeConnector

for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
    os.environ.pop(_proxy, None)

SIGNING = "fuzz-signing-secret"
FUZZ = settings(max_examples=int(os.environ.get("SUPPORTBOT_FUZZ_EXAMPLES", "120")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# JSON values, a few levels deep, with the strings Slack and Teams put in their payloads now and then.
_atoms = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["", "message", "app_mention", "im", "channel", "C1", "D1", "U1", BOT_USER, TEAM,
                     f"<@{BOT_USER}> how do I reset my password?", "1700000000.000100", "<#C1|x>", "<!here>",
                     "file_share", "bot_message", "block_actions", "view_submission", "/ask", "/ingest",
                     "supportbot_vote_up", "supportbot_share", "invoke", "messageReaction", "personal"]),
)
json_values = st.recursive(
    _atoms,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=20,
)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**base, **extra}


slack_events = st.builds(
    _merge,
    st.fixed_dictionaries({
        "type": st.sampled_from(["event_callback", "url_verification", "app_rate_limited", "weird"]),
        "team_id": st.sampled_from([TEAM, "", "T9"]),
        "event_id": st.text(max_size=10),
        "event": st.one_of(
            json_values,
            st.builds(_merge, st.fixed_dictionaries({
                "type": st.sampled_from(["app_mention", "message", "reaction_added", "app_home_opened", "x"]),
                "channel": st.sampled_from(["C1", "D1", "", "G1"]),
                "user": st.sampled_from(["U1", "", BOT_USER]),
                "ts": st.sampled_from(["1700000000.000100", "", "abc", "1e309"]),
            }), st.dictionaries(st.sampled_from(["text", "thread_ts", "subtype", "channel_type", "bot_id", "item",
                                                 "reaction", "item_user", "files", "blocks"]), json_values,
                                max_size=5)),
        ),
    }),
    st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)

slash_commands = st.dictionaries(
    st.sampled_from(["command", "text", "user_id", "channel_id", "team_id", "response_url", "trigger_id", "token"]),
    st.one_of(st.text(max_size=60), st.sampled_from(["/ask", "/ingest", "http://169.254.169.254/", "<http://x|y>"])),
    max_size=8,
)

interactions = st.builds(
    _merge,
    st.fixed_dictionaries({
        "type": st.sampled_from(["block_actions", "view_submission", "shortcut", "message_action", "x"]),
        "user": st.one_of(st.fixed_dictionaries({"id": st.sampled_from(["U1", ""])}), json_values),
    }),
    st.dictionaries(st.sampled_from(["actions", "view", "channel", "container", "message", "trigger_id",
                                     "response_url", "team"]), json_values, max_size=5),
)


class _Collector(logging.Handler):
    """Keeps every record logged while this module runs, from every thread.

    pytest's ``caplog`` holds only the current test's records, so a separate test that
    checked it after the fuzzing could never see a listener's error; this handler spans the
    module (it is installed before the app serves its first request)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def module_log() -> Iterator[_Collector]:
    collector = _Collector()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield collector
    finally:
        root.removeHandler(collector)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, slack: FakeSlack, redis_url: str,
            module_log: _Collector) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    (root / "docs").mkdir()
    (root / "docs" / "pw.md").write_text("# Password\n\nTo reset your password open id.example.com.\n")
    services = Services(Settings(_env_file=None, data_dir=root / "data", slack_bot_token="xoxb-fuzz",  # type: ignore[call-arg, arg-type]
                                 slack_signing_secret=SIGNING, slack_api_url=slack.api_url,  # type: ignore[arg-type]
                                 rate_questions_per_user=0, rate_questions_per_conversation=0))
    from knowledge.loaders import iter_documents

    services.ingestor.ingest(iter_documents([root / "docs"], source="d", max_bytes=10**6), source="d")
    bot = services.slack_bot(state=SlackState(redis_url, prefix=f"fuzz:{time.time_ns()}:"),
                             options=SlackOptions(first_update_after_s=60))
    web = FastAPI()
    web.include_router(slack_router(services, bot))
    web.include_router(teams_router(services))
    with serve_app(web) as url:
        yield url
    bot.close()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=15) as client:
        yield client


def _post_slack(http: httpx.Client, url: str, body: str, kind: str) -> httpx.Response:
    return http.post(f"{url}/slack/events", content=body.encode("utf-8", "surrogatepass"),
                     headers=signed_headers(SIGNING, body, content_type=kind))


def _no_unhandled_errors(records: list[logging.LogRecord]) -> None:
    bad = [r for r in records if r.levelno >= logging.ERROR and r.exc_info
           and not r.getMessage().startswith(("Slack ", "answering Slack message"))]
    assert bad == [], [r.getMessage() for r in bad]


@FUZZ
@given(payload=st.one_of(slack_events, json_values))
def test_fuzz_slack_events(http: httpx.Client, app_url: str, payload: Any) -> None:
    try:
        body = json.dumps(payload)
    except ValueError:
        return
    response = _post_slack(http, app_url, body, "application/json")
    assert response.status_code < 500, response.text


@FUZZ
@given(fields=slash_commands)
def test_fuzz_slack_slash_commands(http: httpx.Client, app_url: str, fields: dict[str, str]) -> None:
    body = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in fields.items()})
    assert _post_slack(http, app_url, body, "application/x-www-form-urlencoded").status_code < 500


@FUZZ
@given(payload=st.one_of(interactions, json_values), raw=st.booleans())
def test_fuzz_slack_interactivity(http: httpx.Client, app_url: str, payload: Any, raw: bool) -> None:
    text = json.dumps(payload) if not raw else json.dumps(payload)[:-1]  # sometimes not even JSON
    body = urlencode({"payload": text})
    assert _post_slack(http, app_url, body, "application/x-www-form-urlencoded").status_code < 500


def test_fuzz_slack_left_no_unhandled_listener_errors(module_log: _Collector) -> None:
    """Listener errors go to @app.error (one line, no payload); here: nothing else blew up
    during the Slack fuzz tests above (the module-wide collector saw every record)."""
    _no_unhandled_errors(module_log.records)


teams_activities = st.builds(
    _merge,
    st.fixed_dictionaries({
        "type": st.sampled_from(["message", "invoke", "messageReaction", "conversationUpdate", "typing", "event",
                                 "x", ""]),
    }),
    st.dictionaries(
        st.sampled_from(["id", "text", "value", "name", "from", "recipient", "conversation", "channelData",
                         "entities", "replyToId", "reactionsAdded", "membersAdded", "attachments", "locale"]),
        json_values, max_size=8,
    ),
)


@FUZZ
@given(activity=st.one_of(teams_activities, json_values))
def test_fuzz_teams_activities(http: httpx.Client, app_url: str, connector: FakeConnector, activity: Any) -> None:
    if isinstance(activity, dict):
        activity["serviceUrl"] = connector.service_url  # replies go to the fake, never elsewhere
    try:
        body = json.dumps(activity)
    except ValueError:
        return
    response = http.post(f"{app_url}/api/messages", content=body, headers={"Content-Type": "application/json"})
    is_invoke = isinstance(activity, dict) and activity.get("type") == "invoke"
    assert response.status_code < 500 or (is_invoke and response.status_code == 501), response.text


def test_fuzz_teams_background_turns_did_not_fail(module_log: _Collector) -> None:
    time.sleep(1.0)  # let the last background turns finish
    failed = [r.getMessage() for r in module_log.records if r.getMessage().startswith("teams:") and "failed" in
              r.getMessage() and r.exc_info]
    assert failed == []
    _no_unhandled_errors(module_log.records)


# -- loaders by content type ------------------------------------------------------------------------
CONTENT_TYPES = ["text/markdown", "text/html; charset=utf-8", "text/html; charset=latin-1", "text/plain",
                 "text/plain; charset=utf-16", "text/plain; charset=bogus", "application/pdf",
                 "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "application/jsonl",
                 "application/x-ndjson", "application/xhtml+xml", "text/csv", "", "application/octet-stream"]


@settings(max_examples=150, deadline=None)
@given(content_type=st.sampled_from(CONTENT_TYPES), name=st.sampled_from(["page", "a.md", "b.pdf", "c.docx", "d"]),
       data=st.one_of(st.binary(max_size=3000), st.text(max_size=800).map(lambda t: t.encode("utf-8", "replace"))))
def test_fuzz_loaders_by_content_type(content_type: str, name: str, data: bytes) -> None:
    try:
        documents = load_bytes(data, name=name, url="https://example.com/x", source="web", content_type=content_type)
    except SourceError:
        return
    for document in documents:
        assert document.id and all(isinstance(s.text, str) for s in document.sections)
