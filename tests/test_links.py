"""Disguised links (issue 14): a document's link text may not name another host than its target,
and every renderer shows the target's host beside document link text. The rule lives once in
``bot/links.py``; Slack's renderer is tested in ``test_slack_render.py``, Teams' and the web
chat's here (the web page's own rendering in ``test_web_browser.py``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from adapters.teams.render import answer_activity, citation_line, partial_activity, stream_final
from adapters.web.chat import public_answer
from bot.links import honest_markdown, named_host, safe_link, web_url
from bot.types import Answer, Citation, Decision, Question

NOW = datetime(2026, 11, 1, tzinfo=UTC)
DISGUISED = "Reset it at [https://sso.company.example/reset](https://evil.example/phish) today [1]."


def _answer(text: str = DISGUISED, *citations: Citation) -> Answer:
    return Answer("a" * 32, Question("q"), text, Decision.ANSWERED, 0.8, citations)


@pytest.mark.parametrize(
    ("text", "url", "shown"),
    [
        ("https://sso.company.example/reset", "https://evil.example/phish", "evil.example/phish"),
        ("sso.company.example", "https://evil.example/", "evil.example/"),
        ("www.bank.example", "http://bank.example.evil.example/", "bank.example.evil.example/"),
        ("10.0.0.1", "https://evil.example/", "evil.example/"),
        ("HTTPS://SSO.COMPANY.EXAMPLE", "https://evil.example/", "evil.example/"),
        # honest ones are kept
        ("Reset your password", "https://evil.example/x", "Reset your password"),
        ("company.example", "https://www.company.example/a", "company.example"),
        ("https://kb.example.com/a", "https://kb.example.com/b", "https://kb.example.com/a"),
    ],
)
def test_link_text_naming_another_host_is_replaced_by_the_target(text: str, url: str, shown: str) -> None:
    link = safe_link(text, url)
    assert link.text == shown
    assert link.url == url and link.host == url.split("/")[2].lower()


@pytest.mark.parametrize("url", ["javascript:alert(1)", "file:///srv/kb/a.md", "data:text/html,x", "https://", "//x.example"])
def test_only_http_and_https_targets_become_links(url: str) -> None:
    assert web_url(url) == ""
    assert safe_link("click", url).url == ""


def test_plain_words_are_not_host_names() -> None:
    assert named_host("Reset your password") is None
    assert named_host("the portal") is None
    assert named_host("sso.company.example/reset") == "sso.company.example"


def test_honest_markdown_keeps_markdown_but_not_the_disguise() -> None:
    out = honest_markdown(DISGUISED)
    assert out == "Reset it at [evil.example/phish](https://evil.example/phish) today [1]."


# -- Teams ---------------------------------------------------------------------------------------
def test_teams_card_text_and_stream_show_the_real_target_and_host() -> None:
    for payload in (answer_activity(_answer()), stream_final(_answer(), "s1"), partial_activity(DISGUISED)):
        body = json.dumps(payload)
        assert "sso.company.example" not in body
        assert "[evil.example/phish](https://evil.example/phish) (evil.example)" in body


def test_teams_citation_titles_are_honest_and_server_paths_never_show() -> None:
    disguised = Citation(1, "c1", "d1", "https://sso.company.example/reset", (), "https://evil.example/x", None)
    assert citation_line(disguised, NOW) == "1. [evil.example/x](https://evil.example/x) (evil.example)"
    on_disk = Citation(2, "c2", "kb:a.md", "", (), "file:///srv/kb/a.md", None)
    line = citation_line(on_disk, NOW)
    assert "/srv/kb" not in line and "file:" not in line and "kb:a.md" not in line


# -- web chat API ---------------------------------------------------------------------------------
def test_web_answers_carry_honest_links_and_no_server_paths() -> None:
    disguised = Citation(1, "c1", "d1", "https://sso.company.example/reset", (), "https://evil.example/x", None)
    on_disk = Citation(2, "kb:srv/a.md#0", "kb:srv/a.md", "Guide", (), "file:///srv/kb/a.md", None)
    data = public_answer(_answer(DISGUISED + " [2]", disguised, on_disk))
    body = json.dumps(data)
    assert "sso.company.example" not in body
    assert "/srv/kb" not in body and "file:" not in body
    assert data["text"].startswith("Reset it at [evil.example/phish](https://evil.example/phish)")
    assert data["citations"][0]["title"] == "evil.example/x"
    assert data["citations"][1] == {**data["citations"][1], "title": "Guide", "url": ""}
