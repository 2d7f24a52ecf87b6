"""The web chat API, the admin API, login, /healthz and /metrics, against the real app
(adapters.web.app.create_app) on a small real index built in a temporary directory."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from adapters.factory import Services
from adapters.settings import Settings
from adapters.web.app import create_app
from adapters.web.insights import group_questions
from knowledge.loaders import iter_documents

PASSWORD = "correct horse battery staple"

PUBLIC_DOCS = {
    "slack.md": (
        "# Connecting Slack\n\n## Create the Slack app\n\n"
        "To connect Slack, create a Slack app from the manifest, install it to your workspace, "
        "and set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET before you start the server.\n\n"
        "## Invite the bot\n\nInvite the bot to a channel with /invite @supportbot, then mention it with a question.\n"
    ),
    "billing.md": "# Billing\n\n## Refunds\n\nEnterprise customers get refunds within 30 days of the invoice date.\n",
    "remote.md": "# Remote\n\n## Pairing\n\nPress and hold Back and Play for three seconds to pair the remote.\n",
}
HR_DOCS = {
    "salaries.md": (
        "# Salaries\n\n## Engineering pay bands\n\n"
        "Engineering pay bands run from L1 to L7; the L5 engineering pay band starts at 120,000 euros.\n"
    ),
}


def build_services(root: Path, **settings: Any) -> Services:
    """Services on a fresh data directory under ``root`` with a small ingested knowledge base
    (public documents, and one document only the "hr" group may see)."""
    services = Services(Settings(data_dir=root / "data", _env_file=None, **settings))  # type: ignore[call-arg]
    for folder, docs, access in (("public", PUBLIC_DOCS, ("public",)), ("hr", HR_DOCS, ("hr",))):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, text in docs.items():
            (root / folder / name).write_text(text, encoding="utf-8")
        services.ingestor.ingest(
            iter_documents([root / folder], source=folder, access=access, max_bytes=1 << 20), source=folder
        )
    return services


def bare_services(root: Path, **settings: Any) -> Services:
    """Services with an empty index (for tests of settings that need no knowledge)."""
    return Services(Settings(data_dir=root / "data", _env_file=None, **settings))  # type: ignore[call-arg]


def login(client: TestClient, password: str = PASSWORD, next_url: str = "/admin") -> Any:
    """POST the login form; returns the response (not following the redirect)."""
    return client.post("/login", data={"password": password, "next": next_url}, follow_redirects=False)


def page_config(html: str) -> dict[str, Any]:
    """The JSON a page embeds for its script."""
    match = re.search(r'<script type="application/json" id="config">(.*?)</script>', html, re.S)
    assert match, "the page embeds no config"
    return dict(json.loads(match.group(1)))


def csrf_token(client: TestClient) -> str:
    response = client.get("/admin")
    assert response.status_code == 200
    return str(page_config(response.text)["csrf"])


def metric(client: TestClient, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 when absent)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Services:
    return build_services(
        tmp_path_factory.mktemp("web"),
        admin_password=PASSWORD,
        session_secret="test-session-secret-0123456789abcdef",
        access_user_groups={"slack:U1": ["hr"]},
        rate_questions_per_user=0,  # these tests ask many questions from one address
        rate_questions_per_conversation=0,
    )


@pytest.fixture(scope="module")
def app(services: Services) -> FastAPI:
    return create_app(services)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        assert login(c).status_code == 303
        yield c


# --- the chat ----------------------------------------------------------------------------------
def test_chat_page_is_plain_html_with_a_csp_and_a_visitor_cookie(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert "sb_visitor" in response.cookies
    assert '<script src="/static/chat.js"' in response.text
    assert client.get("/static/chat.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_ask_returns_a_cited_answer_without_the_trace(client: TestClient) -> None:
    response = client.post("/api/ask", json={"text": "How do I connect Slack?"})
    assert response.status_code == 200
    answer = response.json()
    assert answer["decision"] == "answered"
    assert answer["citations"] and answer["citations"][0]["title"] == "Connecting Slack"
    assert answer["citations"][0]["heading_path"][-1] == "Create the Slack app"
    assert answer["citations"][0]["updated_at"]
    assert "[1]" in answer["text"]
    assert "trace" not in answer and "groups" not in answer["question"]
    assert answer["question"]["platform"] == "web" and answer["question"]["asker"].startswith("web:")


def test_a_follow_up_carries_the_earlier_turns(client: TestClient, services: Services) -> None:
    first = client.post("/api/ask", json={"text": "How do I connect Slack?", "conversation": "c1"}).json()
    history = [
        {"speaker": "user", "text": "How do I connect Slack?"},
        {"speaker": "assistant", "text": first["text"]},
    ]
    response = client.post(
        "/api/ask", json={"text": "And how do I invite the bot?", "history": history, "conversation": "c1"}
    )
    assert response.status_code == 200
    stored = services.answers.get_answer(response.json()["id"])
    assert stored is not None
    assert [t.speaker for t in stored.question.history] == ["user", "assistant"]
    assert stored.question.conversation == "c1"
    assert any("invite" in c.snippet.lower() for c in stored.citations)


def test_streaming_sends_deltas_then_the_final_answer(client: TestClient) -> None:
    response = client.post("/api/ask/stream", json={"text": "How do I pair the remote?"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        (re.search(r"event: (\w+)", block).group(1), json.loads(re.search(r"data: (.*)", block).group(1)))  # type: ignore[union-attr]
        for block in response.text.strip().split("\n\n")
    ]
    names = [name for name, _ in events]
    assert names[-1] == "answer" and set(names[:-1]) <= {"delta"}
    final = events[-1][1]
    assert final["decision"] == "answered" and final["citations"][0]["title"] == "Remote"
    assert "trace" not in final


def test_a_public_viewer_never_gets_restricted_documents_an_admin_does(
    client: TestClient, admin: TestClient
) -> None:
    question = {"text": "Where does the L5 engineering pay band start?"}
    public = client.post("/api/ask", json=question).json()
    assert all(c["title"] != "Salaries" for c in public["citations"])
    assert "120,000" not in public["text"]
    private = admin.post("/api/ask", json=question).json()
    assert any(c["title"] == "Salaries" for c in private["citations"])


def test_one_vote_per_visitor_and_a_changed_vote_replaces_it(
    app: FastAPI, client: TestClient, services: Services
) -> None:
    answer_id = client.post("/api/ask", json={"text": "How do refunds work?"}).json()["id"]
    assert client.post("/api/feedback", json={"answer_id": answer_id, "vote": "up"}).status_code == 200
    assert client.post("/api/feedback", json={"answer_id": answer_id, "vote": "down"}).status_code == 200
    votes = services.answer_store.feedback_for(answer_id)
    assert [v.vote.value for v in votes] == ["down"]
    with TestClient(app) as other:
        assert other.post("/api/feedback", json={"answer_id": answer_id, "vote": "up"}).status_code == 200
    assert sorted(v.vote.value for v in services.answer_store.feedback_for(answer_id)) == ["down", "up"]


def test_bad_votes_and_non_json_posts_are_refused(client: TestClient) -> None:
    assert client.post("/api/feedback", json={"answer_id": "nope", "vote": "up"}).status_code == 404
    assert client.post("/api/feedback", json={"answer_id": "x", "vote": "meh"}).status_code == 422
    form = client.post("/api/ask", content='{"text": "hi"}', headers={"content-type": "text/plain"})
    assert form.status_code in (415, 422)  # never parsed as a question: cross-site forms cannot ask
    assert client.post("/api/ask", json={"text": ""}).status_code == 422


# --- login and the admin API -------------------------------------------------------------------
ADMIN_READS = [
    "/api/admin/summary",
    "/api/admin/gaps",
    "/api/admin/worst",
    "/api/admin/queue",
    "/api/admin/search?q=slack",
    "/api/admin/sources",
    "/api/admin/export.zip",
]


@pytest.mark.parametrize("path", ADMIN_READS)
def test_admin_api_needs_a_login(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401


def test_admin_page_redirects_to_login(client: TestClient) -> None:
    response = client.get("/admin", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/admin"
    assert client.get("/login").status_code == 200


def test_a_wrong_password_is_refused(client: TestClient) -> None:
    response = login(client, "wrong")
    assert response.status_code == 401
    assert "Wrong password" in response.text
    assert "sb_session" not in response.cookies
    assert client.get("/api/admin/summary").status_code == 401
    client.cookies.set("sb_session", "eyJhZG1pbiI6dHJ1ZX0.forged.sig")
    assert client.get("/api/admin/summary").status_code == 401


def test_login_only_redirects_to_local_pages(client: TestClient) -> None:
    assert login(client, next_url="//evil.example/").headers["location"] == "/admin"
    assert login(client, next_url="https://evil.example/").headers["location"] == "/admin"


def test_admin_changes_need_the_csrf_token(admin: TestClient) -> None:
    answer_id = admin.post("/api/ask", json={"text": "Can I pay with seashells?"}).json()["id"]
    body = {"answer_id": answer_id, "verdict": "unanswerable"}
    assert admin.post("/api/admin/reviews", json=body).status_code == 403
    assert admin.post("/api/admin/reviews", json=body, headers={"X-CSRF-Token": "nope"}).status_code == 403
    ok = admin.post("/api/admin/reviews", json=body, headers={"X-CSRF-Token": csrf_token(admin)})
    assert ok.status_code == 200 and ok.json()["review"]["verdict"] == "unanswerable"


def test_logout_ends_the_session(admin: TestClient) -> None:
    assert admin.get("/api/admin/summary").status_code == 200
    admin.post("/logout", follow_redirects=False)
    assert admin.get("/api/admin/summary").status_code == 401


def test_admin_sees_votes_gaps_worst_answers_and_the_queue(client: TestClient, admin: TestClient) -> None:
    before = admin.get("/api/admin/summary").json()["totals"]
    bad = client.post("/api/ask", json={"text": "How do I pair the remote?"}).json()
    client.post("/api/feedback", json={"answer_id": bad["id"], "vote": "down"})
    for _ in range(2):
        client.post("/api/ask", json={"text": "Do you ship to the Moon?"})

    summary = admin.get("/api/admin/summary").json()
    assert len(summary["days"]) == 30
    assert summary["totals"]["down"] == before["down"] + 1
    assert summary["totals"]["declined"] >= before["declined"] + 2

    gaps = admin.get("/api/admin/gaps").json()["gaps"]
    moon = next(g for g in gaps if g["question"] == "Do you ship to the Moon?")
    assert moon["count"] >= 2

    worst = admin.get("/api/admin/worst").json()["answers"]
    entry = next(w for w in worst if w["answer"]["id"] == bad["id"])
    assert entry["down"] == 1 and entry["answer"]["trace"]["query"]

    queue = {i["answer"]["id"] for i in admin.get("/api/admin/queue").json()["items"]}
    assert bad["id"] in queue


def test_reviewed_questions_export_as_a_beir_set_that_supportbot_eval_runs(
    client: TestClient, admin: TestClient, tmp_path: Path
) -> None:
    from adapters.cli import app as cli

    csrf = {"X-CSRF-Token": csrf_token(admin)}
    asked = client.post("/api/ask", json={"text": "How long do enterprise refunds take?"}).json()
    # A 👎 puts the answer in the review queue whether it was answered or declined.
    client.post("/api/feedback", json={"answer_id": asked["id"], "vote": "down"})
    hits = admin.get("/api/admin/search", params={"q": "enterprise refunds"}).json()["passages"]
    refund = next(p for p in hits if p["title"] == "Billing")
    review = {"answer_id": asked["id"], "verdict": "passages", "passages": [refund]}
    assert admin.post("/api/admin/reviews", json=review, headers=csrf).status_code == 200
    assert asked["id"] in {
        i["answer"]["id"] for i in admin.get("/api/admin/queue?reviewed=true").json()["items"]
    }

    response = admin.get("/api/admin/export.zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    folder = tmp_path / "golden"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        zf.extractall(folder)
    qrels = (folder / "qrels" / "test.tsv").read_text().splitlines()
    assert f"{asked['id']}\t{refund['chunk_id']}\t1" in qrels

    result = CliRunner().invoke(cli, ["eval", "retrieval", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["queries"] >= 1 and figures["recall@10"] == 1.0


def test_gaps_group_questions_by_cosine() -> None:
    class FixedEmbedder:
        name = "fixed"
        dimension = 2
        vectors = {"a": [1.0, 0.0], "a'": [0.9, 0.1], "b": [0.0, 1.0]}

        def embed_documents(self, texts: list[str]) -> np.ndarray:
            return np.array([self.vectors[t] for t in texts], dtype=np.float32)

        def embed_query(self, text: str) -> np.ndarray:
            return self.embed_documents([text])[0]

    from datetime import UTC, datetime

    now = datetime.now(UTC)
    rows = [("1", "a", now), ("2", "b", now), ("3", "a'", now), ("4", "a", now)]
    groups = group_questions(rows, FixedEmbedder())  # type: ignore[arg-type]
    assert [(g.question, g.count, g.answer_ids) for g in groups] == [
        ("a", 3, ["1", "3", "4"]),
        ("b", 1, ["2"]),
    ]
    assert groups[0].examples == ["a", "a'"]


# --- settings: no password, web_chat off / login ---------------------------------------------------
def test_without_an_admin_password_there_are_no_admin_pages(tmp_path: Path) -> None:
    with TestClient(create_app(bare_services(tmp_path))) as c:
        page = c.get("/login")
        assert page.status_code == 404 and "no admin password is configured" in page.text
        admin = c.get("/admin")  # a page a person reads, naming the setting that turns it on
        assert admin.status_code == 404 and admin.headers["content-type"].startswith("text/html")
        assert "SUPPORTBOT_ADMIN_PASSWORD" in admin.text and "<html" in admin.text
        assert login(c).status_code == 404
        assert c.get("/api/admin/summary").status_code == 404
        assert c.get("/").status_code == 200


def test_web_chat_off_gives_404_for_the_chat(tmp_path: Path) -> None:
    with TestClient(create_app(bare_services(tmp_path, web_chat="off", admin_password=PASSWORD))) as c:
        assert c.get("/").status_code == 404
        assert c.post("/api/ask", json={"text": "hello"}).status_code == 404
        assert c.post("/api/ask/stream", json={"text": "hello"}).status_code == 404
        assert c.post("/api/feedback", json={"answer_id": "x", "vote": "up"}).status_code == 404
        assert login(c).status_code == 303
        assert c.get("/admin").status_code == 200
        assert c.get("/healthz").status_code == 200


def test_web_chat_login_puts_the_chat_behind_the_admin_login(tmp_path: Path) -> None:
    with TestClient(create_app(bare_services(tmp_path, web_chat="login", admin_password=PASSWORD))) as c:
        response = c.get("/", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login?next=/"
        assert c.post("/api/ask", json={"text": "hello"}).status_code == 401
        assert login(c, next_url="/").headers["location"] == "/"
        assert c.get("/").status_code == 200
        assert c.post("/api/ask", json={"text": "hello"}).status_code == 200


def test_questions_over_the_rate_limit_get_429_with_retry_after(tmp_path: Path) -> None:
    services = bare_services(tmp_path, rate_questions_per_user=2, rate_questions_window_s=60)
    with TestClient(create_app(services)) as c:
        assert [c.post("/api/ask", json={"text": "hello"}).status_code for _ in range(2)] == [200, 200]
        limited = c.post("/api/ask", json={"text": "hello"})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "try again" in limited.json()["detail"]
        assert c.post("/api/ask/stream", json={"text": "hello"}).status_code == 429
    with TestClient(create_app(services)) as fresh:  # a new cookie does not reset the address's count
        assert fresh.post("/api/ask", json={"text": "hello"}).status_code == 429


# --- health and metrics --------------------------------------------------------------------------
def test_healthz_is_200_when_the_index_and_database_answer(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["checks"]["index"].startswith("ok") and body["checks"]["database"] == "ok"
    assert "broker" not in body["checks"]  # none configured


def test_healthz_is_503_when_the_broker_is_down(tmp_path: Path) -> None:
    services = bare_services(tmp_path, redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(services)) as c:
        response = c.get("/healthz")
    assert response.status_code == 503
    assert response.json()["ok"] is False and response.json()["checks"]["broker"].startswith("error")


def test_healthz_is_503_when_the_database_is_down(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    services = bare_services(tmp_path, database_url=f"sqlite:///{tmp_path / 'file' / 'sub' / 'x.db'}")
    with TestClient(create_app(services)) as c:
        response = c.get("/healthz")
    assert response.status_code == 503 and response.json()["checks"]["database"].startswith("error")


def test_metrics_count_questions_declines_votes_and_latency(client: TestClient) -> None:
    asked = metric(client, "supportbot_questions_total", platform="web")
    declined = metric(client, "supportbot_declines_total", platform="web")
    votes = metric(client, "supportbot_votes_total", platform="web", vote="up")
    latencies = metric(client, "supportbot_answer_latency_seconds_count", platform="web")
    answer = client.post("/api/ask", json={"text": "What colour is the CEO's car?"}).json()
    client.post("/api/feedback", json={"answer_id": answer["id"], "vote": "up"})
    assert metric(client, "supportbot_questions_total", platform="web") == asked + 1
    assert metric(client, "supportbot_declines_total", platform="web") == declined + 1
    assert metric(client, "supportbot_votes_total", platform="web", vote="up") == votes + 1
    assert metric(client, "supportbot_answer_latency_seconds_count", platform="web") == latencies + 1
    assert metric(client, "supportbot_database_up") == 1.0


def test_sync_now_queues_a_sync_and_the_admin_sees_its_progress(tmp_path: Path, redis_url: str) -> None:
    services = bare_services(tmp_path, admin_password=PASSWORD, redis_url=redis_url)
    (tmp_path / "handbook").mkdir()
    services.source_store.add("handbook", "folder", {"path": str(tmp_path / "handbook")})
    with TestClient(create_app(services)) as c:
        login(c)
        csrf = {"X-CSRF-Token": csrf_token(c)}
        assert c.post("/api/admin/sources/handbook/sync").status_code == 403
        assert c.post("/api/admin/sources/nope/sync", headers=csrf).status_code == 404
        queued = c.post("/api/admin/sources/handbook/sync", headers=csrf)
        assert queued.status_code == 202
        listed = c.get("/api/admin/sources").json()
        source = listed["sources"][0]
        assert source["name"] == "handbook" and source["job"]["id"] == queued.json()["job_id"]
        assert source["job"]["state"] == "queued"
        assert metric(c, "supportbot_source_documents", source="handbook") == 0.0
        assert metric(c, "supportbot_source_status", source="handbook", status="idle") == 1.0
        assert c.get("/healthz").json()["checks"]["broker"] == "ok"
