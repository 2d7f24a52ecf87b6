"""The Teams app package command and the pure Teams pieces (card rendering, activity parsing)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from adapters.cli import app
from adapters.teams.activity import parse
from adapters.teams.memory import ConversationHistory, ReplyIndex
from adapters.teams.render import age, answer_activity, answer_card, citation_line, stream_chunk, stream_final
from bot.types import Answer, Citation, Decision, Question

BOT_ID = "0b5a3f1e-1111-4222-8333-944455556666"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    for name in ("MicrosoftAppId", "SUPPORTBOT_MICROSOFT_APP_ID"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_teams_package_writes_the_zip_with_the_bot_id_from_settings(in_tmp: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MicrosoftAppId", BOT_ID)
    result = CliRunner().invoke(app, ["teams-package"])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(in_tmp / "dist" / "supportbot-teams.zip") as zf:
        assert sorted(zf.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(zf.read("manifest.json"))
        color = Image.open(io.BytesIO(zf.read("color.png")))
        outline = Image.open(io.BytesIO(zf.read("outline.png")))
    assert manifest["bots"][0]["botId"] == BOT_ID and manifest["id"] == BOT_ID
    assert set(manifest["bots"][0]["scopes"]) == {"personal", "team", "groupChat"}
    assert "${" not in json.dumps(manifest)
    assert color.size == (192, 192) and outline.size == (32, 32)
    # Teams requires the outline icon to be white on transparent.
    rgba = outline.convert("RGBA")
    pixels = {rgba.getpixel((x, y)) for x in range(32) for y in range(32)}
    assert {px[:3] for px in pixels if px[3]} <= {(255, 255, 255)}  # type: ignore[index]


def test_teams_package_options_and_errors(in_tmp: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["teams-package"]).exit_code == 2  # no bot id anywhere
    assert runner.invoke(app, ["teams-package", "--bot-id", "not-a-guid"]).exit_code == 2
    out = in_tmp / "x" / "app.zip"
    app_id = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    result = runner.invoke(app, ["teams-package", "--bot-id", BOT_ID, "--app-id", app_id, "--name", "Helpdesk",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads(zipfile.ZipFile(out).read("manifest.json"))
    assert (manifest["id"], manifest["name"]["short"]) == (app_id, "Helpdesk")


# -- pure pieces ---------------------------------------------------------------------------------

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def _answer(decision: Decision = Decision.ANSWERED, citations: int = 2) -> Answer:
    cites = tuple(
        Citation(i, f"c{i}", f"d{i}", f"Guide [{i}]", ("Setup",), f"https://kb.example.com/{i}", NOW - timedelta(days=3 * i))
        for i in range(1, citations + 1)
    )
    return Answer(id="ans-1", question=Question("q"), text="Do this [1].", decision=decision, confidence=0.8,
                  citations=cites)


def test_age_is_short_and_human() -> None:
    assert age(None, NOW) == ""
    assert age(NOW - timedelta(hours=3), NOW) == "updated today"
    assert age(NOW - timedelta(days=1), NOW) == "updated 1 day ago"
    assert age(NOW - timedelta(days=15), NOW) == "updated 2 weeks ago"
    assert age(NOW - timedelta(days=800), NOW) == "updated 2 years ago"
    assert age(datetime(2025, 5, 31, 12), NOW) == "updated 1 day ago"  # naive = UTC


def test_citation_lines_link_and_escape_titles() -> None:
    line = citation_line(_answer().citations[0], NOW)
    assert line == "1. [Guide \\[1\\] › Setup](https://kb.example.com/1) (kb.example.com) · updated 3 days ago"


def test_answer_card_and_decline_card() -> None:
    card = answer_card(_answer(), NOW)
    assert card["version"] == "1.5" and card["body"][0]["text"] == "Do this [1]."
    assert [b["text"] for b in card["body"]][1] == "Sources"
    execute = card["actions"][0]
    assert execute["type"] == "Action.Execute" and execute["fallback"]["type"] == "Action.Submit"
    assert execute["data"] == execute["fallback"]["data"] == {"supportbot": "feedback", "answer_id": "ans-1",
                                                               "vote": "up"}
    declined = answer_card(_answer(Decision.DECLINED, 1), NOW)
    assert [b["text"] for b in declined["body"]][1] == "Closest sources"
    assert answer_card(_answer(Decision.DECLINED, 0), NOW)["body"][1:] == []
    activity = answer_activity(_answer(), NOW)
    assert activity["channelData"] == {"feedbackLoopEnabled": True}
    assert activity["entities"][0]["additionalType"] == ["AIGeneratedContent"]


def test_streaming_activities() -> None:
    chunk = stream_chunk("Do th", 2, "s-1")
    assert chunk["type"] == "typing" and chunk["entities"][0] == {
        "type": "streaminfo", "streamType": "streaming", "streamSequence": 2, "streamId": "s-1"}
    final = stream_final(_answer(), "s-1", NOW)
    assert final["type"] == "message" and final["text"] == "Do this [1]."
    assert final["entities"][0] == {"type": "streaminfo", "streamType": "final", "streamId": "s-1"}
    assert final["channelData"]["feedbackLoopEnabled"] is True
    assert all(b["text"] != "Do this [1]." for b in final["attachments"][0]["content"]["body"])


def test_parse_strips_only_the_bots_mention() -> None:
    activity = {
        "type": "message", "id": "1", "text": "<at>Bot</at> ask <at>Ann</at> about&nbsp;VPN",
        "recipient": {"id": "28:bot"}, "from": {"id": "29:u", "aadObjectId": "aad"},
        "conversation": {"id": "19:c@thread.tacv2;messageid=42", "conversationType": "channel"},
        "entities": [
            {"type": "mention", "text": "<at>Bot</at>", "mentioned": {"id": "28:bot"}},
            {"type": "mention", "text": "<at>Ann</at>", "mentioned": {"id": "29:ann"}},
        ],
        "channelData": {"channel": {"id": "19:c@thread.tacv2"}},
    }
    inc = parse(activity)
    assert inc.mentions_bot and inc.text == "ask Ann about VPN"
    assert inc.access_conversation == "19:c@thread.tacv2" and not inc.personal and inc.voter == "aad"
    assert parse({"type": "message"}).personal  # the emulator sends no conversation type


def test_memory_is_bounded() -> None:
    history = ConversationHistory(turns=4, conversations=2)
    for i in range(3):
        history.add("a", f"q{i}", f"a{i}")
    assert [t.text for t in history.get("a")] == ["q1", "a1", "q2", "a2"]
    history.add("b", "q", "a")
    history.add("c", "q", "a")
    assert history.get("a") == () and history.get("c")
    replies = ReplyIndex(size=2)
    for i in range(3):
        replies.remember(f"r{i}", f"ans{i}")
    assert replies.answer_for("r0") is None and replies.answer_for("r2") == "ans2"
