"""Reviews of answers, and the read-only queries behind the admin page, on any SQLAlchemy database.

A reviewer looks at a declined question or a down-voted answer and marks either the passages
that should have been found or that the question is truly unanswerable (``Review``). The
reviewed questions export as a BEIR-format dataset (``beir_zip``), so ``supportbot eval
retrieval`` and ``supportbot eval answers`` run on the company's own golden set.

The answers and votes themselves are written by ``SqlAnswerStore``; this module only reads them.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from adapters.db import SqlStore, answers, feedback, reviews, vote_confirmations
from bot.errors import ProviderRejected, ProviderUnavailable
from bot.feedback import WEB, WEB_ADMIN_VOTER
from bot.serialize import answer_from_dict
from bot.types import Answer

PASSAGES = "passages"
UNANSWERABLE = "unanswerable"
VERDICTS = (PASSAGES, UNANSWERABLE)


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they were stored as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True)
class ReviewedPassage:
    """A passage the reviewer marked as one that should have been found (text kept as it was)."""

    chunk_id: str
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Review:
    """A reviewer's verdict on one answer: ``passages`` (with at least one) or ``unanswerable``."""

    answer_id: str
    verdict: str
    passages: tuple[ReviewedPassage, ...] = ()
    reviewer: str = "admin"
    reviewed_at: datetime | None = None


@dataclass(frozen=True)
class DayCounts:
    """What happened on one UTC day."""

    day: date
    answered: int = 0
    declined: int = 0
    up: int = 0
    down: int = 0


@dataclass(frozen=True)
class RatedAnswer:
    """A stored answer with its vote counts and, when reviewed, its review."""

    answer: Answer
    up: int
    down: int
    review: Review | None = None
    web_votes: int = 0  # votes of anonymous web visitors (they count beyond the web once confirmed)
    votes_confirmed: bool = False


def _review(row: Any) -> Review:
    return Review(
        answer_id=row.answer_id,
        verdict=row.verdict,
        passages=tuple(ReviewedPassage(**p) for p in json.loads(row.passages)),
        reviewer=row.reviewer,
        reviewed_at=_aware(row.reviewed_at),
    )


class SqlReviewStore(SqlStore):
    """Reviews (table ``reviews``) and read-only admin queries over answers and feedback."""

    def ping(self) -> None:
        """Raise ProviderUnavailable unless the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.select(1))
        except sa.exc.OperationalError as exc:
            raise ProviderUnavailable(f"database unavailable: {type(exc.orig).__name__}") from None

    # --- reviews ---------------------------------------------------------------------------------
    def save_review(self, review: Review) -> None:
        """Store ``review``, replacing an earlier one of the same answer.

        Raises ValueError for an unknown verdict or a ``passages`` verdict without passages,
        ProviderRejected when no answer ``review.answer_id`` is stored.
        """
        if review.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {review.verdict!r}")
        if review.verdict == PASSAGES and not review.passages:
            raise ValueError("mark at least one passage, or mark the question unanswerable")
        values = dict(
            verdict=review.verdict,
            passages=json.dumps([p.__dict__ for p in review.passages]),
            reviewer=review.reviewer,
            reviewed_at=review.reviewed_at or datetime.now(UTC),
        )
        with self.engine.begin() as conn:
            if conn.execute(sa.select(answers.c.id).where(answers.c.id == review.answer_id)).first() is None:
                raise ProviderRejected(f"no stored answer {review.answer_id!r} to review")
            where = reviews.c.answer_id == review.answer_id
            if conn.execute(sa.select(reviews.c.answer_id).where(where)).first():
                conn.execute(sa.update(reviews).where(where).values(**values))
            else:
                conn.execute(sa.insert(reviews).values(answer_id=review.answer_id, **values))

    def get_review(self, answer_id: str) -> Review | None:
        """The review of one answer, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(reviews).where(reviews.c.answer_id == answer_id)).first()
        return None if row is None else _review(row)

    def delete_review(self, answer_id: str) -> None:
        """Forget the review of one answer (back into the queue); unknown ids are ignored."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(reviews).where(reviews.c.answer_id == answer_id))

    def golden_set(self) -> list[tuple[Answer, Review]]:
        """Every reviewed answer with its review, oldest review first."""
        query = (
            sa.select(answers.c.payload, reviews)
            .join(reviews, reviews.c.answer_id == answers.c.id)
            .order_by(reviews.c.reviewed_at, reviews.c.answer_id)
        )
        with self.engine.connect() as conn:
            return [(answer_from_dict(json.loads(r.payload)), _review(r)) for r in conn.execute(query)]

    # --- confirmations of web votes ----------------------------------------------------------------
    def confirm_votes(self, answer_id: str, by: str = "admin") -> None:
        """Confirm the anonymous web votes on one answer: from now on they count on every platform.

        Idempotent. Raises ProviderRejected when no answer ``answer_id`` is stored.
        """
        with self.engine.begin() as conn:
            if conn.execute(sa.select(answers.c.id).where(answers.c.id == answer_id)).first() is None:
                raise ProviderRejected(f"no stored answer {answer_id!r} to confirm votes of")
            where = vote_confirmations.c.answer_id == answer_id
            if conn.execute(sa.select(vote_confirmations.c.answer_id).where(where)).first() is None:
                conn.execute(
                    sa.insert(vote_confirmations).values(
                        answer_id=answer_id, confirmed_by=by, confirmed_at=datetime.now(UTC)
                    )
                )

    def unconfirm_votes(self, answer_id: str) -> None:
        """Withdraw a confirmation (the web votes count for the web chat only again)."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(vote_confirmations).where(vote_confirmations.c.answer_id == answer_id))

    def votes_confirmed(self, answer_id: str) -> bool:
        """Whether the web votes on ``answer_id`` are confirmed."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(vote_confirmations.c.answer_id).where(vote_confirmations.c.answer_id == answer_id)
            ).first()
        return row is not None

    # --- read-only queries for the admin page ----------------------------------------------------
    def daily_counts(self, days: int = 30, now: datetime | None = None) -> list[DayCounts]:
        """Answered, declined, 👍 and 👎 per UTC day for the last ``days`` days (oldest first, every day)."""
        now = now or datetime.now(UTC)
        first = (now - timedelta(days=days - 1)).date()
        since = datetime(first.year, first.month, first.day, tzinfo=UTC)
        counts: dict[date, dict[str, int]] = {
            first + timedelta(days=i): {"answered": 0, "declined": 0, "up": 0, "down": 0} for i in range(days)
        }
        with self.engine.connect() as conn:
            for created_at, decision in conn.execute(
                sa.select(answers.c.created_at, answers.c.decision).where(answers.c.created_at >= since)
            ):
                day = counts.get(_aware(created_at).date())
                if day is not None and decision in day:
                    day[decision] += 1
            for created_at, vote in conn.execute(
                sa.select(feedback.c.created_at, feedback.c.vote).where(feedback.c.created_at >= since)
            ):
                day = counts.get(_aware(created_at).date())
                if day is not None and vote in day:
                    day[vote] += 1
        return [DayCounts(d, **c) for d, c in sorted(counts.items())]

    def declined_questions(self, limit: int = 500) -> list[tuple[str, str, datetime]]:
        """The most recent declined questions as (answer id, question, asked at), newest first."""
        query = (
            sa.select(answers.c.id, answers.c.question, answers.c.created_at)
            .where(answers.c.decision == "declined")
            .order_by(answers.c.created_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(r.id, r.question, _aware(r.created_at)) for r in conn.execute(query)]

    def _votes(self) -> sa.Subquery:
        return (
            sa.select(
                feedback.c.answer_id,
                sa.func.sum(sa.case((feedback.c.vote == "up", 1), else_=0)).label("up"),
                sa.func.sum(sa.case((feedback.c.vote == "down", 1), else_=0)).label("down"),
                sa.func.sum(
                    sa.case(
                        (sa.and_(feedback.c.platform == WEB, feedback.c.user != WEB_ADMIN_VOTER), 1), else_=0
                    )
                ).label("web"),
            )
            .group_by(feedback.c.answer_id)
            .subquery()
        )

    def worst_rated(self, limit: int = 20) -> list[RatedAnswer]:
        """Answers with at least one 👎, most net 👎 first (then most 👎, then newest)."""
        votes = self._votes()
        query = (
            sa.select(answers.c.payload, votes.c.up, votes.c.down, votes.c.web, reviews)
            .join(votes, votes.c.answer_id == answers.c.id)
            .outerjoin(reviews, reviews.c.answer_id == answers.c.id)
            .where(votes.c.down > 0)
            .order_by((votes.c.down - votes.c.up).desc(), votes.c.down.desc(), answers.c.created_at.desc())
            .limit(limit)
        )
        return self._rated(query)

    def review_queue(self, limit: int = 100, *, reviewed: bool = False) -> list[RatedAnswer]:
        """Declined and 👎 answers, newest first: those not yet reviewed (or, ``reviewed``, those reviewed)."""
        votes = self._votes()
        query = (
            sa.select(
                answers.c.payload,
                sa.func.coalesce(votes.c.up, 0).label("up"),
                sa.func.coalesce(votes.c.down, 0).label("down"),
                sa.func.coalesce(votes.c.web, 0).label("web"),
                reviews,
            )
            .outerjoin(votes, votes.c.answer_id == answers.c.id)
            .outerjoin(reviews, reviews.c.answer_id == answers.c.id)
            .where(sa.or_(answers.c.decision == "declined", votes.c.down > 0))
            .where(reviews.c.answer_id.is_not(None) if reviewed else reviews.c.answer_id.is_(None))
            .order_by(answers.c.created_at.desc())
            .limit(limit)
        )
        return self._rated(query)

    def _rated(self, query: sa.Select[Any]) -> list[RatedAnswer]:
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            confirmed = {
                a
                for (a,) in conn.execute(
                    sa.select(vote_confirmations.c.answer_id).where(
                        vote_confirmations.c.answer_id.in_([json.loads(r.payload)["id"] for r in rows])
                    )
                )
            } if rows else set()
        out = []
        for r in rows:
            answer = answer_from_dict(json.loads(r.payload))
            out.append(
                RatedAnswer(
                    answer,
                    int(r.up or 0),
                    int(r.down or 0),
                    None if r.answer_id is None else _review(r),
                    web_votes=int(r.web or 0),
                    votes_confirmed=answer.id in confirmed,
                )
            )
        return out


def beir_zip(items: Sequence[tuple[Answer, Review]]) -> bytes:
    """A BEIR-format dataset of reviewed questions, zipped: ``corpus.jsonl`` (the marked passages,
    ``_id`` = chunk id), ``queries.jsonl`` (``_id`` = answer id, with ``history`` and
    ``answerability``) and ``qrels/test.tsv``. Unanswerable questions have no qrels row, which is
    how ``supportbot eval answers`` tells them apart."""
    corpus: dict[str, dict[str, str]] = {}
    queries: list[dict[str, Any]] = []
    qrels: list[tuple[str, str]] = []
    for answer, review in items:
        q = answer.question
        queries.append(
            {
                "_id": answer.id,
                "text": q.text,
                "history": [{"speaker": t.speaker, "text": t.text} for t in q.history],
                "answerability": "unanswerable" if review.verdict == UNANSWERABLE else "answerable",
            }
        )
        if review.verdict == PASSAGES:
            for p in review.passages:
                corpus.setdefault(p.chunk_id, {"_id": p.chunk_id, "title": p.title, "text": p.text})
                qrels.append((answer.id, p.chunk_id))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "corpus.jsonl", "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in corpus.values())
        )
        zf.writestr("queries.jsonl", "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries))
        zf.writestr(
            "qrels/test.tsv", "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{c}\t1\n" for q, c in qrels)
        )
    return buf.getvalue()
