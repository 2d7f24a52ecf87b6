"""The feedback store and the review store behind the web pages, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.db import make_engine
from adapters.providers.review_store import Review, ReviewedPassage, SqlReviewStore, beir_zip
from adapters.providers.sql_store import SqlAnswerStore
from bot.errors import ProviderRejected
from bot.types import Answer, Citation, Decision, Feedback, Platform, Question, Trace, Turn, Vote


@pytest.fixture
def stores(db_url: str) -> Iterator[tuple[SqlAnswerStore, SqlReviewStore]]:
    """The answer store and the review store on ``db_url``; their connections are closed after."""
    answers, reviews = SqlAnswerStore(db_url), SqlReviewStore(db_url)
    yield answers, reviews
    answers.engine.dispose()
    reviews.engine.dispose()


def _answer(text: str, decision: Decision = Decision.ANSWERED, *, at: datetime | None = None) -> Answer:
    return Answer(
        id=uuid.uuid4().hex,
        question=Question(text=text, asker="web:v1", platform=Platform.WEB, history=(Turn("user", "hi"),)),
        text="Press Back and Play [1]." if decision == Decision.ANSWERED else "I couldn't find this.",
        decision=decision,
        confidence=0.7,
        citations=(
            Citation(1, "docs:remote.md#0", "docs:remote.md", "Remote", ("Remote", "Pairing"), "", None),
        )
        if decision == Decision.ANSWERED
        else (),
        trace=Trace(query=text, timings_ms={"total": 12.0}),
        created_at=at or datetime.now(UTC),
    )


def test_one_vote_per_user_per_answer_and_a_changed_vote_replaces_it(
    stores: tuple[SqlAnswerStore, SqlReviewStore],
) -> None:
    store = stores[0]
    answer = _answer("How do I pair the remote?")
    other = _answer("How do I reset it?")
    store.save_answer(answer)
    store.save_answer(other)
    store.save_feedback(Feedback(answer.id, "web:v1", Platform.WEB, Vote.UP))
    store.save_feedback(Feedback(answer.id, "web:v1", Platform.WEB, Vote.DOWN, "wrong remote"))
    store.save_feedback(Feedback(answer.id, "web:v2", Platform.WEB, Vote.UP))
    store.save_feedback(Feedback(other.id, "web:v1", Platform.WEB, Vote.UP))

    votes = {f.user: f for f in store.feedback_for(answer.id)}
    assert set(votes) == {"web:v1", "web:v2"}
    assert votes["web:v1"].vote == Vote.DOWN and votes["web:v1"].comment == "wrong remote"
    assert votes["web:v2"].vote == Vote.UP
    assert [f.vote for f in store.feedback_for(other.id)] == [Vote.UP]
    assert store.feedback_for("no-such-answer") == []


def test_a_vote_on_an_unknown_answer_is_rejected(stores: tuple[SqlAnswerStore, SqlReviewStore]) -> None:
    store = stores[0]
    with pytest.raises(ProviderRejected):
        store.save_feedback(Feedback("no-such-answer", "web:v1", Platform.WEB, Vote.UP))


def test_review_queue_worst_rated_counts_and_golden_set(
    stores: tuple[SqlAnswerStore, SqlReviewStore],
) -> None:
    answers, reviews = stores
    good = _answer("How do I pair the remote?")
    bad = _answer("How do I pair the soundbar?")
    declined = _answer("Do you ship to Mars?", Decision.DECLINED)
    old = _answer("An old question", Decision.DECLINED, at=datetime.now(UTC) - timedelta(days=40))
    for a in (good, bad, declined, old):
        answers.save_answer(a)
    answers.save_feedback(Feedback(good.id, "u1", Platform.WEB, Vote.UP))
    answers.save_feedback(Feedback(bad.id, "u1", Platform.SLACK, Vote.DOWN))
    answers.save_feedback(Feedback(bad.id, "u2", Platform.WEB, Vote.DOWN))
    answers.save_feedback(Feedback(good.id, "u2", Platform.WEB, Vote.DOWN))

    worst = reviews.worst_rated()
    assert [(w.answer.id, w.up, w.down) for w in worst] == [(bad.id, 0, 2), (good.id, 1, 1)]
    assert worst[0].answer.trace is not None and worst[0].answer.trace.query == bad.question.text

    queue = {item.answer.id for item in reviews.review_queue()}
    assert queue == {good.id, bad.id, declined.id, old.id}

    days = reviews.daily_counts(30)
    assert len(days) == 30 and days[-1].day == datetime.now(UTC).date()
    assert sum(d.answered for d in days) == 2 and sum(d.declined for d in days) == 1  # "old" is 40 days back
    assert sum(d.up for d in days) == 1 and sum(d.down for d in days) == 3

    declined_rows = reviews.declined_questions()
    assert [q for _, q, _ in declined_rows] == ["Do you ship to Mars?", "An old question"]

    with pytest.raises(ValueError):
        reviews.save_review(Review(bad.id, "passages"))  # no passage marked
    with pytest.raises(ProviderRejected):
        reviews.save_review(Review("no-such-answer", "unanswerable"))
    passage = ReviewedPassage("docs:soundbar.md#0", "docs:soundbar.md", "Soundbar", "Hold Pair for 5 s.")
    reviews.save_review(Review(bad.id, "unanswerable"))
    reviews.save_review(Review(bad.id, "passages", (passage,)))  # a second review replaces the first
    reviews.save_review(Review(declined.id, "unanswerable"))

    assert {i.answer.id for i in reviews.review_queue()} == {good.id, old.id}
    done = {i.answer.id: i.review for i in reviews.review_queue(reviewed=True)}
    assert set(done) == {bad.id, declined.id}
    assert done[bad.id] is not None and done[bad.id].passages == (passage,)

    golden = reviews.golden_set()
    assert [(a.id, r.verdict) for a, r in golden] == [(bad.id, "passages"), (declined.id, "unanswerable")]
    reviews.delete_review(declined.id)
    assert reviews.get_review(declined.id) is None
    assert declined.id in {i.answer.id for i in reviews.review_queue()}


def test_beir_export_has_corpus_queries_and_qrels() -> None:
    bad, declined = _answer("How do I pair the soundbar?"), _answer("Do you ship to Mars?", Decision.DECLINED)
    p1 = ReviewedPassage("c1", "d1", "Soundbar", "Hold Pair for 5 s.")
    p2 = ReviewedPassage("c2", "d2", "Soundbar > Reset", "Unplug it.")
    data = beir_zip(
        [(bad, Review(bad.id, "passages", (p1, p2))), (declined, Review(declined.id, "unanswerable"))]
    )
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["corpus.jsonl", "qrels/test.tsv", "queries.jsonl"]
        corpus = [json.loads(line) for line in zf.read("corpus.jsonl").decode().splitlines()]
        queries = [json.loads(line) for line in zf.read("queries.jsonl").decode().splitlines()]
        qrels = zf.read("qrels/test.tsv").decode().splitlines()
    assert corpus == [
        {"_id": "c1", "title": "Soundbar", "text": "Hold Pair for 5 s."},
        {"_id": "c2", "title": "Soundbar > Reset", "text": "Unplug it."},
    ]
    assert [(q["_id"], q["answerability"]) for q in queries] == [
        (bad.id, "answerable"),
        (declined.id, "unanswerable"),
    ]
    assert queries[0]["history"] == [{"speaker": "user", "text": "hi"}]
    assert qrels == ["query-id\tcorpus-id\tscore", f"{bad.id}\tc1\t1", f"{bad.id}\tc2\t1"]


def test_migration_0004_downgrades_and_upgrades(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from adapters.db import MIGRATIONS

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        assert "reviews" in sa.inspect(conn).get_table_names()
        command.downgrade(config, "0003")
        assert "reviews" not in sa.inspect(conn).get_table_names()
        command.upgrade(config, "head")
        assert "reviews" in sa.inspect(conn).get_table_names()
    engine.dispose()


def test_migrations_are_quiet_and_skipped_when_the_database_is_at_head(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from adapters import db

    caplog.set_level(logging.INFO)
    engine = db.make_engine(f"sqlite:///{tmp_path}/quiet.db")
    assert not db._at_head(engine)  # a new database
    db.migrate(engine)
    assert not [r for r in caplog.records if r.name.startswith("alembic") and r.levelno < logging.WARNING]
    assert db.head_revision() is not None and db._at_head(engine)
    with engine.begin() as conn:  # an older schema is not taken for the newest
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    assert not db._at_head(engine)
