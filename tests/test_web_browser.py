"""The web pages in a real headless browser: Debian's chromium driven by Playwright.

The real app (adapters.web.app.create_app) is served by uvicorn in a thread on 127.0.0.1
with a small real index; the browser asks, reads citations, votes, follows up, signs in as
admin and reviews. Chromium is installed with apt-get when it is missing; with CI=true a
browser that cannot be installed fails the test instead of skipping it.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from adapters.factory import Services
from adapters.web.app import create_app
from tests.conftest import missing_service
from tests.test_web_api import PASSWORD, build_services

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing (fails in CI if that is impossible)."""
    if not CHROMIUM.exists() and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], env=env, check=False, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            env=env, check=False, capture_output=True, timeout=1200,
        )  # fmt: skip
    if not CHROMIUM.exists():
        missing_service("Chromium (/usr/bin/chromium; apt-get install chromium as root)")
    return CHROMIUM


class Server:
    """uvicorn serving an app in a thread on a free 127.0.0.1 port."""

    def __init__(self, app: Any) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", ws="none", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Services:
    return build_services(
        tmp_path_factory.mktemp("browser"), admin_password=PASSWORD, rate_questions_per_user=0
    )


@pytest.fixture(scope="module")
def server(services: Services) -> Iterator[Server]:
    with Server(create_app(services)) as running:
        yield running


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context; the test fails on any page error or console error (e.g. a CSP violation)."""
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
    )
    yield page
    context.close()
    # Expected: the browser logs the 401 of a wrong password and the 404 of a disabled login page.
    problems = [p for p in problems if not re.search(r"status of 40[14]", p)]
    assert not problems, problems


def ask(page: Any, text: str) -> Any:
    """Type a question, press Enter and wait for the answer; returns the answer's list item."""
    count = page.locator("li.turn.bot[data-answer-id]").count()
    page.fill("#question", text)
    page.press("#question", "Enter")
    answer = page.locator("li.turn.bot[data-answer-id]").nth(count)
    answer.wait_for()
    return answer


def test_ask_see_citations_vote_follow_up_then_review_as_admin(
    page: Any, server: Server, services: Services
) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    expect(page.locator("h1")).to_have_text("supportbot")

    # Ask: a cited answer with numbered, clickable sources (title, heading path, update age).
    answer = ask(page, "How do I connect Slack?")
    expect(answer.locator(".body")).to_contain_text("Slack app")
    sources = answer.locator("ol.sources li.source")
    expect(sources.first).to_contain_text("Connecting Slack")
    expect(sources.first.locator(".heading")).to_have_text("Create the Slack app")
    expect(sources.first.locator(".age")).to_contain_text("updated")
    snippet = sources.first.locator(".snippet")
    expect(snippet).to_be_hidden()
    answer.locator("a.cite").first.click()
    expect(snippet).to_be_visible()
    expect(snippet).to_contain_text("SLACK_BOT_TOKEN")

    # Vote 👎 (then see that the button stays pressed); the buttons say it in words too.
    expect(answer.locator("button.vote-up")).to_contain_text("Helpful")
    expect(answer.locator("button.vote-down")).to_contain_text("Not helpful")
    answer.locator("button.vote-down").click()
    expect(answer.locator(".vote-status")).to_contain_text("Thanks")
    expect(answer.locator("button.vote-down")).to_have_attribute("aria-pressed", "true")
    first_id = answer.get_attribute("data-answer-id")

    # A follow-up carries the earlier turns of the page's conversation.
    follow = ask(page, "And how do I invite the bot?")
    expect(follow.locator("ol.sources")).to_contain_text("Connecting Slack")
    stored = services.answers.get_answer(follow.get_attribute("data-answer-id"))
    assert stored is not None
    assert [t.text for t in stored.question.history][0] == "How do I connect Slack?"

    # A question the knowledge base does not cover is declined.
    declined = ask(page, "Do you ship to the Moon?")
    expect(declined).to_have_class("turn bot declined")

    # Sign in as admin: a wrong password first.
    page.goto(server.url + "/admin")
    expect(page).to_have_url(server.url + "/login?next=/admin")
    page.fill("#password", "wrong password")
    page.click("#sign-in")
    expect(page.locator("#error")).to_have_text("Wrong password.")
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    expect(page).to_have_url(server.url + "/admin")

    # The vote and the questions are on the admin page.
    expect(page.locator("#total-down strong")).to_have_text("1")
    expect(page.locator("#total-declined strong")).to_have_text("1")
    expect(page.locator("#chart svg polyline.s-answered")).to_have_count(1)
    worst = page.locator(f'#worst li.card[data-answer-id="{first_id}"]')
    expect(worst.locator(".question")).to_have_text("How do I connect Slack?")
    expect(worst.locator(".votes-count")).to_contain_text("👎 1")
    worst.locator("details.trace summary").click()
    expect(worst.locator("details.trace")).to_contain_text("Searched for")
    expect(page.locator("#gaps")).to_contain_text("Do you ship to the Moon?")
    expect(page.locator("#queue")).to_contain_text("How do I connect Slack?")
    expect(page.locator("#sources-empty")).to_be_visible()

    # Review: the declined question is truly unanswerable; the 👎 answer should have found a passage.
    moon = page.locator("#queue li.card", has_text="Do you ship to the Moon?")
    moon.locator("button.unanswerable").click()
    expect(moon.locator(".review-status")).to_have_text("Reviewed: unanswerable")
    slack = page.locator(f'#queue li.card[data-answer-id="{first_id}"]')
    slack.locator("input.review-search").fill("invite the bot to a channel")
    slack.locator(".review-form button").click()
    slack.locator("input.mark").first.check()
    slack.locator("button.save-passages").click()
    expect(slack.locator(".review-status")).to_contain_text("1 passage(s)")

    # Export the golden set as a BEIR zip.
    with page.expect_download() as download_info:
        page.click("#export")
    data = Path(download_info.value.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["corpus.jsonl", "qrels/test.tsv", "queries.jsonl"]
        assert first_id in zf.read("qrels/test.tsv").decode()
        assert "Do you ship to the Moon?" in zf.read("queries.jsonl").decode()

    # Reviewed items leave the queue and show under "Show reviewed".
    page.reload()
    expect(page.locator("#queue")).not_to_contain_text("Do you ship to the Moon?")
    page.check("#show-reviewed")
    expect(page.locator("#queue")).to_contain_text("Do you ship to the Moon?")

    page.click("#sign-out")
    expect(page).to_have_url(server.url + "/login")


def test_login_page_says_when_there_are_no_admin_pages(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from tests.test_web_api import bare_services

    with Server(create_app(bare_services(tmp_path))) as running:
        page.goto(running.url + "/")
        expect(page.locator("#admin-link")).to_be_hidden()
        page.goto(running.url + "/login")
        expect(page.locator("#notice")).to_contain_text("no admin password is configured")
        expect(page.locator("#password")).to_be_disabled()


def test_a_disguised_link_in_a_document_shows_its_real_target_and_host(page: Any, tmp_path: Path) -> None:
    """Issue 14: a document's link whose text names a trusted site and whose target is another
    shows, in the chat page, the real target as its text and the target's host beside it."""
    from playwright.sync_api import expect

    from knowledge.loaders import iter_documents

    services = build_services(tmp_path, rate_questions_per_user=0)
    (tmp_path / "it").mkdir()
    (tmp_path / "it" / "reset.md").write_text(
        "# Password reset\n\nTo reset your single sign-on password, open "
        "[https://sso.company.example/reset](https://evil.example/phish) and follow the steps there.\n"
    )
    services.ingestor.ingest(iter_documents([tmp_path / "it"], source="it", max_bytes=1 << 20), source="it")
    with Server(create_app(services)) as running:
        page.goto(running.url + "/")
        answer = ask(page, "How do I reset my single sign-on password?")
        link = answer.locator(".body a[href='https://evil.example/phish']")
        expect(link).to_have_text("evil.example/phish")
        expect(answer.locator(".body .link-host")).to_have_text("(evil.example)")
        expect(answer.locator(".body")).not_to_contain_text("sso.company.example")
        # A source on the server's disk shows its title, never its path.
        expect(answer.locator("ol.sources")).not_to_contain_text(str(tmp_path))


def test_a_quoted_code_block_and_list_render_as_code_and_list(page: Any, server: Server) -> None:
    page.goto(server.url + "/")
    html = page.evaluate(
        """() => {
            const box = document.createElement("div");
            box.append(window.sb.renderText(
                "From **Branches** [1]:\\n\\nInstead of HEAD, use:\\n\\n  ```\\n  # start from main\\n"
                + "  $ git switch -c topic main\\n  ```\\n\\n- first item\\n  continued\\n- second <b>item</b>",
                null));
            return box.innerHTML;
        }"""
    )
    assert "<pre><code># start from main\n$ git switch -c topic main</code></pre>" in html
    assert "<ul><li>first item<br>continued</li><li>second &lt;b&gt;item&lt;/b&gt;</li></ul>" in html
    assert "<h1>" not in html
