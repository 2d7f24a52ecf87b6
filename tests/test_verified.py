"""Verified answers in the core, the admin API and the fine-tuning export: real SQLite, the real
offline embedder and index, the real web app and CLI (the chat platforms have their own files:
tests/test_slack_verified.py and tests/test_teams_verified.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.factory import Services
from adapters.settings import Settings
from adapters.web.app import create_app
from bot.types import Decision, Feedback, Platform, Question, SearchFilters, Vote
from bot.verified import (
    AUTHOR_NOT_EXPERT_TEXT,
    NOT_EXPERT_TEXT,
    NOT_NEEDED_TEXT,
    ExpertReply,
    VerifiedAnswer,
)
from knowledge.loaders import iter_documents

PASSWORD = "correct horse battery staple"
EXPERT, NOBODY = "UEXP", "UNOBODY"
DOCS = {"vpn.md": "# VPN\n\nInstall the WireGuard client and import the profile from the self-service portal.\n"}


def make_services(root: Path) -> Services:
    docs = root / "docs"
    docs.mkdir(parents=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    services = Services(Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=root / "data",
        experts={"slack:C1": [EXPERT]},
        slack_admins=["UADMIN"],
        admin_password=PASSWORD,  # type: ignore[arg-type]
        session_secret="test-session-secret-0123456789abcdef",  # type: ignore[arg-type]
        access_channel_groups={"slack:G1": ["staff"]},
    ))
    services.ingestor.ingest(iter_documents([docs], source="kb", max_bytes=1 << 20), source="kb")
    return services


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Services:
    return make_services(tmp_path_factory.mktemp("verified"))


def ask(services: Services, text: str, channel: str = "C1", thread: str = "1.0", user: str = "U1") -> Any:
    groups = services.access.groups_for(platform="slack", conversation=channel, user=user, private_chat=False)
    return services.answers.answer(
        Question(text, asker=user, platform=Platform.SLACK, conversation=channel, thread=thread, groups=groups)
    )


def reply(text: str, *, channel: str = "C1", thread: str = "1.0", ts: str = "1.5", author: str = EXPERT) -> ExpertReply:
    return ExpertReply(Platform.SLACK, channel, thread, ts, author, "erin", text, url="https://slack.example/x")


def test_marking_checks_who_and_where(services: Services) -> None:
    verified = services.verified
    answered = ask(services, "How do I install the VPN client?", thread="2.0")
    assert answered.decision == Decision.ANSWERED
    # An answered, un-voted thread needs no answer.
    assert verified.mark(reply("x", thread="2.0"), EXPERT).text == NOT_NEEDED_TEXT
    # ... until someone votes 👎 on it.
    services.answers.record_feedback(Feedback(answered.id, "U9", Platform.SLACK, Vote.DOWN))
    declined = ask(services, "Which desk booking app do we use?", thread="3.0")
    assert declined.decision == Decision.DECLINED
    assert verified.mark(reply("Use Deskly.", thread="3.0"), NOBODY).text == NOT_EXPERT_TEXT
    assert verified.mark(reply("Use Deskly.", thread="3.0", author=NOBODY), EXPERT).text == AUTHOR_NOT_EXPERT_TEXT
    assert verified.mark(reply("Use Deskly.", channel="C2", thread="3.0"), EXPERT).text == NOT_EXPERT_TEXT
    assert verified.records() == []
    # An admin is an expert everywhere.
    assert verified.mark(reply("Use **Deskly**.", thread="3.0", author="UADMIN"), "UADMIN").ok
    down = verified.mark(reply("Reinstall the client from the portal.", thread="2.0", ts="2.5"), EXPERT)
    assert down.ok and down.verified is not None and down.verified.question == "How do I install the VPN client?"
    # Marking the same reply again updates the one verified answer.
    again = verified.mark(reply("Use **Deskly** (desk booking).", thread="3.0", author="UADMIN"), "UADMIN")
    assert again.ok and "was updated" in again.text
    assert len(verified.records()) == 2


def test_paraphrases_come_from_the_same_knowledge_gap(tmp_path: Path) -> None:
    services = make_services(tmp_path)
    first = ask(services, "How do I book a meeting room for tomorrow?", thread="5.0")
    ask(services, "how can I book a meeting room", thread="6.0")
    ask(services, "What is the wifi password for guests?", thread="7.0")
    assert first.decision == Decision.DECLINED
    result = services.verified.mark(reply("Book rooms in Outlook's room finder.", thread="5.0"), EXPERT)
    assert result.verified is not None
    assert result.verified.paraphrases == ("how can I book a meeting room",)


def test_expiry_edit_and_removal_control_what_is_cited(tmp_path: Path) -> None:
    services = make_services(tmp_path)
    ask(services, "Who approves overtime for support staff?", thread="8.0")
    result = services.verified.mark(reply("Your team lead approves overtime in the HR portal.", thread="8.0"), EXPERT)
    assert result.verified is not None
    vid, doc_id = result.verified.id, result.verified.doc_id
    assert result.verified.review_by is not None and result.verified.review_by > datetime.now(UTC) + timedelta(days=170)

    def cited(text: str) -> bool:
        answer = ask(services, text, thread=f"q{text}")
        return answer.decision == Decision.ANSWERED and any(c.doc_id == doc_id for c in answer.citations)

    assert cited("Who approves overtime for support staff?")
    edited = services.verified.edit(vid, text="Your team lead approves overtime in Workday.")
    assert edited is not None
    assert "Workday" in ask(services, "Who approves overtime for support staff?", thread="e1").text
    services.verified.expire(vid)
    assert not cited("Who approves overtime for support staff?")
    hits = services.retriever.search("Who approves overtime for support staff?", 10, SearchFilters())
    assert doc_id not in {h.chunk.doc_id for h in hits.passages}
    services.verified.edit(vid, review_by=None)  # reviewed again: cited again
    assert cited("Who approves overtime for support staff?")
    assert services.verified.remove(vid)
    assert not cited("Who approves overtime for support staff?")
    assert services.verified.records() == []


# --- the admin API --------------------------------------------------------------------------------
@pytest.fixture
def admin(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as c:
        assert c.post("/login", data={"password": PASSWORD, "next": "/admin"}, follow_redirects=False).status_code == 303
        yield c


def test_admin_lists_edits_expires_and_removes(admin: TestClient, services: Services) -> None:
    page = admin.get("/admin")
    assert "Verified answers" in page.text and "/static/verified.js" in page.text
    csrf = {"X-CSRF-Token": json.loads(re.search(r'id="config">(.*?)</script>', page.text, re.S).group(1))["csrf"]}  # type: ignore[union-attr]
    ask(services, "Which desk booking app do we use?", thread="used")  # cites the verified answer once more
    items = admin.get("/api/admin/verified").json()["verified"]
    desk = next(v for v in items if "desk booking" in v["question"])
    assert desk["author_name"] == "erin" and desk["status"] == "active" and desk["uses"] >= 1
    assert desk["url"] == "https://slack.example/x" and desk["created_at"]
    url = f"/api/admin/verified/{desk['id']}"
    assert admin.patch(url, json={"text": "Deskly"}).status_code == 403  # changes need the CSRF token
    changed = admin.patch(url, json={"text": "Use Deskly, the desk booking app."}, headers=csrf).json()["verified"]
    assert changed["text"] == "Use Deskly, the desk booking app."
    assert admin.post(f"{url}/expire", headers=csrf).json()["verified"]["status"] == "expired"
    later = admin.patch(url, json={"review_by": "2999-01-01T00:00:00+00:00"}, headers=csrf).json()["verified"]
    assert later["status"] == "active"
    assert admin.delete(url, headers=csrf).json() == {"ok": True}
    assert all(v["id"] != desk["id"] for v in admin.get("/api/admin/verified").json()["verified"])
    assert admin.delete(url, headers=csrf).status_code == 404


# --- the fine-tuning export -----------------------------------------------------------------------
def test_export_finetune_writes_openai_jsonl_filtered_by_groups(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from adapters.cli import app

    services = make_services(tmp_path)
    ask(services, "Who approves overtime for support staff?", thread="o")
    assert services.verified.mark(reply("Your team lead approves it.", thread="o"), EXPERT).ok
    ask(services, "What is the budget code for team dinners?", channel="G1", thread="p", user=EXPERT)
    private = services.verified.mark(reply("FIN-4410.", channel="G1", thread="p", ts="p.1"), EXPERT, marker_is_admin=True)
    assert private.ok and private.verified is not None and private.verified.access == ("staff",)
    liked = ask(services, "How do I install the VPN client?", thread="l")
    services.answers.record_feedback(Feedback(liked.id, "U5", Platform.SLACK, Vote.UP))

    env = {"SUPPORTBOT_DATA_DIR": str(tmp_path / "data")}
    out = tmp_path / "ft.jsonl"
    result = CliRunner().invoke(app, ["export", "finetune", "--format", "openai", str(out)], env=env)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [[m["role"] for m in r["messages"]] for r in records] == [["system", "user", "assistant"]] * len(records)
    text = out.read_text()
    assert "team lead approves" in text and "WireGuard" in text
    assert "FIN-4410" not in text  # a private channel's answer stays out of a public export
    both = tmp_path / "staff.jsonl"
    result = CliRunner().invoke(app, ["export", "finetune", "--format", "openai", "--groups", "public,staff", str(both)], env=env)
    assert result.exit_code == 0 and "FIN-4410" in both.read_text()
    bad = CliRunner().invoke(app, ["export", "finetune", "--format", "csv", str(out)], env=env)
    assert bad.exit_code == 2 and "openai" in bad.output


def test_verified_document_carries_badge_and_access() -> None:
    v = VerifiedAnswer(
        id="abc", question="How?", text="Like this.", author="U1", author_name="erin", platform=Platform.SLACK,
        conversation="G1", thread="1", message_id="2", url="https://x", groups=frozenset({"public", "hr"}),
        created_at=datetime(2026, 12, 7, tzinfo=UTC),
    )
    doc = v.document()
    assert doc.id == "verified:abc" and doc.source == "verified" and doc.access == ("hr",)
    assert doc.sections[0].heading_path == ("Verified by @erin, 2026-12-07",)


# --- ranking: when a verified answer goes first ---------------------------------------------------
class _Vectors:
    """An Embedder with hand-set unit vectors, so the test controls every cosine."""

    name, dimension = "hand-set", 3

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def _unit(self, text: str) -> Any:
        import numpy as np

        v = np.asarray(self.table[text], dtype=np.float32)
        return v / np.linalg.norm(v)

    def embed_query(self, text: str) -> Any:
        return self._unit(text)

    def embed_documents(self, texts: Any) -> Any:
        import numpy as np

        return np.stack([self._unit(t) for t in texts])


@pytest.mark.parametrize(
    ("passage_cosine", "promoted"),
    [(0.40, True), (0.70, False)],  # the verified question's cosine to the query is 0.6 in both
)
def test_a_verified_answer_closer_than_every_passage_goes_first(
    tmp_path: Path, passage_cosine: float, promoted: bool
) -> None:
    import math

    from adapters.providers.local_index import LocalIndex
    from bot.types import Chunk, ScoredChunk
    from bot.verified import SOURCE, VerifiedRankConfig, VerifiedRanker

    question = "how do I rotate my API key"
    answer = VerifiedAnswer(
        "v1", "renewing an API token", "Open Settings > Tokens and press Rotate.", EXPERT, "erin", Platform.SLACK, "C1", "1.0",
        "1.5", "https://slack.example/x", frozenset({"public"}), datetime.now(UTC),
    )
    # cosines to the query [1, 0, 0]: the verified phrasing 0.6 (between accept 0.55 and min 0.75)
    table = {question: [1.0, 0.0, 0.0], answer.question: [0.6, math.sqrt(1 - 0.36), 0.0]}
    embedder = _Vectors(table)
    index = LocalIndex(tmp_path / "index.sqlite")
    verified_chunk = Chunk("v#0", answer.doc_id, 0, answer.text, "Verified", (), answer.url, SOURCE, "h")
    index.replace(answer.doc_id, [verified_chunk], embedder.embed_documents([answer.question]))
    ranker = VerifiedRanker(lambda: [answer], embedder, index, VerifiedRankConfig(min_similarity=0.75, accept_similarity=0.55))
    passage = Chunk("p#0", "p", 0, "Keys are listed in the console.", "Console", (), "https://docs/p", "kb", "h")
    hits = [ScoredChunk(passage, 1.0, {"dense": passage_cosine, "fused": 1.0})]

    ranked = ranker.adjust(embedder.embed_query(question), hits, SearchFilters())

    assert (ranked[0].chunk.doc_id == answer.doc_id) is promoted
    assert ("verified" in ranked[0].scores) is promoted
