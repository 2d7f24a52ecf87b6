"""Answer → Block Kit and the small text helpers of the Slack adapter (pure functions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.slack.inbound import clean_text, command_argument
from adapters.slack.render import (
    ACTION_VOTE_DOWN,
    ACTION_VOTE_UP,
    MAX_BLOCKS,
    MAX_SECTION_CHARS,
    ago,
    escape,
    render_answer,
    split_text,
    to_mrkdwn,
)
from bot.answering import DECLINE_TEXT
from bot.conversation import parse_ingest_target
from bot.types import Answer, Citation, Decision, Question

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def citation(
    n: int, url: str = "https://kb.example.com/a", days: float = 3, title: str = "Guide"
) -> Citation:
    return Citation(n, f"c{n}", f"d{n}", title, (title, "Setup"), url, NOW - timedelta(days=days))


def answer(text: str, *citations: Citation, decision: Decision = Decision.ANSWERED, note: str = "") -> Answer:
    return Answer("a" * 32, Question("q"), text, decision, 0.8, citations, note=note)


def all_text(blocks: object) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def test_user_text_is_escaped_so_it_cannot_ping_or_link() -> None:
    assert escape("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    rendered = to_mrkdwn("Use <!channel> & <@U123> or <https://evil.example|click>")
    assert "<!channel>" not in rendered and "<@U123>" not in rendered and "<https://evil" not in rendered
    assert "&lt;!channel&gt;" in rendered and "&amp;" in rendered


def test_markdown_subset_becomes_mrkdwn_and_citations_link_to_sources() -> None:
    text = to_mrkdwn(
        "**Reset** it at [the portal](https://id.example.com/a?b=1&c=2) [1]\n- step one", [citation(1)]
    )
    assert text.startswith("*Reset*")
    assert "<https://id.example.com/a?b=1&c=2|the portal>" in text
    assert "<https://kb.example.com/a|[1]>" in text
    assert "• step one" in text


def test_an_answer_has_text_numbered_sources_with_age_buttons_and_fallback() -> None:
    local = citation(2, url="file:///srv/kb/vpn.md", days=40, title="VPN | access")
    [message] = render_answer(answer("Do this [1] and that [2].", citation(1), local), NOW)
    body = all_text(message.blocks)
    assert "*Sources*" in body
    assert "1. <https://kb.example.com/a|Guide> (kb.example.com) · Setup · updated 3 days ago" in body
    assert "2. VPN ¦ access" in body and "file://" not in body  # no link Slack couldn't open
    assert "updated 1 month ago" in body
    actions = [b for b in message.blocks if b["type"] == "actions"][0]["elements"]
    assert [(a["action_id"], a["value"]) for a in actions] == [
        (ACTION_VOTE_UP, "a" * 32),
        (ACTION_VOTE_DOWN, "a" * 32),
    ]
    assert message.text.startswith("Do this [1] and that [2].") and "Sources: [1] Guide" in message.text


def test_a_declined_answer_says_so_and_lists_the_closest_sources() -> None:
    declined = answer(DECLINE_TEXT + " These sources look related:", citation(1), decision=Decision.DECLINED)
    [message] = render_answer(declined, NOW)
    body = all_text(message.blocks)
    assert "couldn't find this in the knowledge base" in body and "*Closest sources*" in body
    [bare] = render_answer(answer(DECLINE_TEXT, decision=Decision.DECLINED), NOW)
    assert "Sources" not in all_text(bare.blocks)


def test_a_note_is_shown_as_context() -> None:
    [message] = render_answer(answer("x [1]", citation(1), note="OpenAI was unavailable"), NOW)
    assert any(b["type"] == "context" and "OpenAI was unavailable" in all_text(b) for b in message.blocks)


def test_long_answers_are_split_within_slack_limits() -> None:
    paragraph = "This sentence is about setting things up properly. " * 30  # ~1,500 characters
    long = answer("\n\n".join([paragraph] * 120) + " [1]", citation(1))  # ~180,000 characters
    messages = render_answer(long, NOW)
    assert len(messages) > 1
    for m in messages:
        assert 0 < len(m.blocks) <= MAX_BLOCKS and m.text
        for block in m.blocks:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= MAX_SECTION_CHARS
    rebuilt = " ".join(b["text"]["text"] for m in messages for b in m.blocks if b["type"] == "section")
    assert rebuilt.count("This sentence is about") == 30 * 120
    assert messages[-1].blocks[-1]["type"] == "actions"  # the buttons close the answer


def test_split_text_prefers_gentle_boundaries_and_keeps_links_whole() -> None:
    text = "word " * 500 + "<https://kb.example.com/" + "x" * 50 + "|a link> " + "tail " * 300
    pieces = split_text(text, 2600)
    assert all(len(p) <= 2600 for p in pieces)
    assert all(p.count("<") == p.count(">") for p in pieces)
    assert " ".join(pieces).split() == text.split()


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=5), "just now"),
        (timedelta(minutes=1), "1 minute ago"),
        (timedelta(hours=5), "5 hours ago"),
        (timedelta(days=1), "1 day ago"),
        (timedelta(days=400), "1 year ago"),
    ],
)
def test_ago(delta: timedelta, expected: str) -> None:
    assert ago(NOW - delta, NOW) == expected
    assert ago(None, NOW) == ""


def test_clean_text_removes_the_bot_mention_and_slack_markup() -> None:
    raw = "<@UBOT> how do I use <https://x.example/a|the portal> in <#C1|general>? a &lt; b &amp; <@U2>"
    assert clean_text(raw, "UBOT") == "how do I use the portal in #general? a < b & <@U2>"
    assert clean_text("<@UBOT|supportbot>", "UBOT") == ""


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("https://help.example.com/guide", "https://help.example.com/guide"),
        ("<https://help.example.com/guide>", "https://help.example.com/guide"),
        ("<https://help.example.com|help.example.com>", "https://help.example.com"),
        (" handbook ", "handbook"),
        ("confluence:ENG", "confluence:ENG"),
        ("", None),
        ("ftp://x.example", None),
        ("https://", None),
        ("http:///path", None),
        ("a b", None),
        ("../etc/passwd", None),
    ],
)
def test_parse_ingest_target(text: str, target: str | None) -> None:
    # Slack's <url|label> wrapping is the adapter's to undo; the rule for targets is the core's.
    assert parse_ingest_target(command_argument(text))[0] == target


def test_the_manifest_declares_what_the_app_uses() -> None:
    import yaml

    from adapters.slack import app as slack_app

    manifest = yaml.safe_load((Path(slack_app.__file__).parent / "manifest.yaml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    assert {"/ask", "/ingest"} <= commands
    assert {"app_mention", "message.channels", "message.im", "reaction_added"} <= events
    needed = {"app_mentions:read", "chat:write", "commands", "channels:history", "im:history"}
    assert needed | {"reactions:read", "reactions:write", "usergroups:read"} <= scopes
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True


# -- disguised links (issue 14): the shared rule in bot/links.py, rendered for Slack ---------------
DISGUISED = "Reset it at [https://sso.company.example/reset](https://evil.example/phish) today."


def test_a_link_whose_text_names_another_host_shows_its_real_target_and_host() -> None:
    text = to_mrkdwn(DISGUISED)
    assert "sso.company.example" not in text
    assert "<https://evil.example/phish|evil.example/phish> (evil.example)" in text


def test_document_link_text_gets_the_target_host_beside_it_and_non_web_targets_are_not_links() -> None:
    text = to_mrkdwn("See [the portal](https://id.example.com/a) or [this](javascript:alert(1)) or [x](file:///srv/kb/a.md)")
    assert "<https://id.example.com/a|the portal> (id.example.com)" in text
    assert "javascript" not in text and "file:" not in text and "/srv/kb" not in text


def test_citation_titles_are_made_honest_and_server_paths_never_show() -> None:
    disguised = citation(1, url="https://evil.example/x", title="https://sso.company.example/reset")
    on_disk = Citation(2, "c2", "kb:a.md", "", (), "file:///srv/kb/a.md", NOW)
    messages = render_answer(answer(DISGUISED + " [1] [2].", disguised, on_disk), NOW)
    body = all_text([m.blocks for m in messages]) + messages[0].text  # the blocks and the fallback text
    assert "sso.company.example" not in body
    assert "<https://evil.example/x|evil.example/x> (evil.example)" in body
    assert "/srv/kb" not in body and "file:" not in body


def test_vote_buttons_carry_words_beside_the_emoji() -> None:
    from adapters.slack.render import feedback_buttons

    # Where no emoji font is installed the emoji alone is an empty box: the words still read.
    texts = [b["text"]["text"] for b in feedback_buttons("a" * 32)]
    assert texts == ["👍 Helpful", "👎 Not helpful"]


def test_page_text_that_only_looks_like_a_heading_is_shown_as_written() -> None:
    # The HTML loader escapes "# of seats" so Markdown does not make it a heading (tests/test_loaders.py).
    text = to_mrkdwn("\\# of seats is 50 per plan [1]\n# Billing", [citation(1)])
    assert text.startswith("# of seats is 50 per plan")
    assert "*Billing*" in text
