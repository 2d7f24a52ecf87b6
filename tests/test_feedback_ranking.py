"""Votes change ranking: for similar questions only, bounded, decaying, within access scopes, switchable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.factory import Services
from adapters.settings import Settings
from bot.feedback import FeedbackConfig, FeedbackRanker, VoteRecord
from bot.types import Feedback, Platform, Question, SearchFilters, Vote
from knowledge.loaders import iter_documents

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def services(tmp_path: Path) -> Services:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Reset\n\nTo reset the router, hold the reset button for ten seconds.\n")
    (docs / "b.md").write_text("# Restart\n\nTo reset the router remotely, use the admin console restart page.\n")
    (docs / "c.md").write_text("# Billing\n\nInvoices are sent on the first day of every month.\n")
    # Other documents, two of them naming the router: scores are min-max normalised over the
    # candidates, so with only two keyword hits the second would get no keyword share at all.
    notes = ["The router in the lobby belongs to facilities.", "Parking permits are renewed each January.",
             "A guest router is in meeting room 4.", "Badges are printed at reception."]
    for i, note in enumerate(notes):
        (docs / f"z{i}.md").write_text(f"# Note {i}\n\n{note}\n")
    s = Services(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]
    s.ingestor.ingest(iter_documents([docs], source="d", max_bytes=1 << 20), source="d")
    return s


def _ranker(services: Services, votes: list[VoteRecord], **config: float) -> FeedbackRanker:
    return FeedbackRanker(lambda: votes, services.embedder, FeedbackConfig(**config), clock=lambda: NOW)  # type: ignore[arg-type]


def _ids(services: Services, ranker: FeedbackRanker | None, query: str, groups: frozenset[str] | None = None) -> list[str]:
    services.retriever.feedback = ranker
    filters = SearchFilters(groups=groups or frozenset({"public"}))
    return [p.chunk.doc_id.rsplit("/", 1)[-1] for p in services.retriever.search(query, 3, filters).passages]


def _chunk(services: Services, name: str) -> str:
    return next(p.chunk.id for p in services.retriever.search(name, 10, SearchFilters(groups=None)).passages
                if p.chunk.doc_id.endswith(name))


def test_downvotes_on_similar_questions_reorder_but_never_hide(services: Services) -> None:
    q = "how do I reset my router"
    before = _ids(services, None, q)
    top, second = before[0], before[1]
    vote = VoteRecord("how can I reset the router", (_chunk(services, top),), False, NOW, frozenset({"public"}))
    one = _ids(services, _ranker(services, [vote]), q)
    assert top in one  # one vote never hides a passage
    many = _ids(services, _ranker(services, [vote] * 10), q)
    assert many.index(second) < many.index(top)
    assert top in many


def test_unrelated_questions_are_not_affected(services: Services) -> None:
    votes = [VoteRecord("how do I reset my router", (_chunk(services, "b.md"),), True, NOW, frozenset({"public"}))] * 10
    assert _ids(services, _ranker(services, votes), "when are invoices sent") == _ids(services, None, "when are invoices sent")


def test_votes_from_a_private_scope_do_not_move_public_results(services: Services) -> None:
    q = "how do I reset my router"
    before = _ids(services, None, q)
    votes = [VoteRecord(q, (_chunk(services, before[1]),), True, NOW, frozenset({"public", "staff"}))] * 10
    assert _ids(services, _ranker(services, votes), q) == before
    assert _ids(services, _ranker(services, votes), q, frozenset({"public", "staff"}))[0] == before[1]


def test_votes_decay_and_can_be_switched_off(services: Services) -> None:
    q = "how do I reset my router"
    before = _ids(services, None, q)
    old = [VoteRecord(q, (_chunk(services, before[1]),), True, NOW - timedelta(days=3650), frozenset({"public"}))] * 10
    assert _ids(services, _ranker(services, old), q) == before
    fresh = [VoteRecord(q, (_chunk(services, before[1]),), True, NOW, frozenset({"public"}))] * 10
    assert _ids(services, _ranker(services, fresh, enabled=False), q) == before


def test_stored_votes_reach_the_ranking(services: Services) -> None:
    q = "how do I reset my router"
    cited: set[str] = set()
    for i in range(6):
        answer = services.answers.answer(Question(text=q, asker=f"u{i}", platform=Platform.SLACK))
        cited |= {c.chunk_id for c in answer.citations}
        services.answers.record_feedback(Feedback(answer.id, f"u{i}", Platform.SLACK, Vote.DOWN))
    services.feedback_ranker.refresh(force=True)
    boosts = services.feedback_ranker.boosts(services.embedder.embed_query(q), frozenset({"public"}))
    assert cited and all(boosts[c] < 0 for c in cited)
    assert min(boosts.values()) >= -services.feedback_ranker.config.max_boost
