"""VerifiedStore on any SQLAlchemy database: verified answers, and the answer reads marking needs.

Usage counts are not written on the question path: ``list`` counts the stored answers whose
citations name a verified answer's document (one scan of the answers that cite any).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import sqlalchemy as sa

from adapters.db import SqlStore, answers, feedback, verified_answers
from bot.errors import ProviderUnavailable
from bot.serialize import answer_from_dict
from bot.types import Platform
from bot.verified import DOC_PREFIX, RatedExample, ThreadAnswer, VerifiedAnswer


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes for timezone-aware columns; they were stored as UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class SqlVerifiedStore(SqlStore):
    """VerifiedStore: verified answers in the ``verified_answers`` table (migration 0007)."""

    def save(self, v: VerifiedAnswer) -> None:
        values = dict(
            question=v.question,
            paraphrases=json.dumps(list(v.paraphrases)),
            text=v.text,
            author=v.author,
            author_name=v.author_name,
            platform=v.platform.value,
            conversation=v.conversation,
            thread=v.thread,
            message_id=v.message_id,
            url=v.url,
            groups=json.dumps(sorted(v.groups)),
            answer_id=v.answer_id,
            marked_by=v.marked_by,
            created_at=v.created_at,
            updated_at=v.updated_at,
            review_by=v.review_by,
            removed=v.removed,
        )
        try:
            with self.engine.begin() as conn:
                where = verified_answers.c.id == v.id
                if conn.execute(sa.select(verified_answers.c.id).where(where)).first():
                    conn.execute(sa.update(verified_answers).where(where).values(**values))
                else:
                    conn.execute(sa.insert(verified_answers).values(id=v.id, **values))
        except sa.exc.OperationalError as exc:
            raise ProviderUnavailable(f"database unavailable: {type(exc.orig).__name__}") from None

    def get(self, verified_id: str) -> VerifiedAnswer | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(verified_answers).where(verified_answers.c.id == verified_id)).first()
        return None if row is None else _verified(row)

    def records(self, include_removed: bool = False, *, with_uses: bool = True) -> list[VerifiedAnswer]:
        query = sa.select(verified_answers).order_by(verified_answers.c.created_at.desc())
        if not include_removed:
            query = query.where(verified_answers.c.removed == sa.false())
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        uses = self.usage() if rows and with_uses else Counter()
        return [_verified(r, uses.get(r.id, 0)) for r in rows]

    def usage(self) -> Counter[str]:
        """Verified answer id -> the number of answered questions that cited it."""
        query = sa.select(answers.c.payload).where(
            answers.c.decision == "answered", answers.c.payload.contains(DOC_PREFIX)
        )
        counts: Counter[str] = Counter()
        with self.engine.connect() as conn:
            for (payload,) in conn.execute(query):
                cited = {
                    str(c.get("doc_id", "")) for c in json.loads(payload).get("citations") or []
                }
                counts.update(d.removeprefix(DOC_PREFIX) for d in cited if d.startswith(DOC_PREFIX))
        return counts

    def thread_answers(self, platform: str, conversation: str, thread: str) -> list[ThreadAnswer]:
        downs = self._downs()
        query = (
            sa.select(answers.c.payload, downs.c.down)
            .outerjoin(downs, downs.c.answer_id == answers.c.id)
            .where(
                answers.c.platform == platform,
                answers.c.conversation == conversation,
                answers.c.thread == thread,
            )
            .order_by(answers.c.created_at.desc())
            .limit(50)
        )
        with self.engine.connect() as conn:
            return [ThreadAnswer(answer_from_dict(json.loads(p)), int(d or 0)) for p, d in conn.execute(query)]

    def answer_with_votes(self, answer_id: str) -> ThreadAnswer | None:
        downs = self._downs()
        query = (
            sa.select(answers.c.payload, downs.c.down)
            .outerjoin(downs, downs.c.answer_id == answers.c.id)
            .where(answers.c.id == answer_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else ThreadAnswer(answer_from_dict(json.loads(row[0])), int(row[1] or 0))

    def declined_questions(self, limit: int) -> list[tuple[str, str, datetime]]:
        query = (
            sa.select(answers.c.id, answers.c.question, answers.c.created_at)
            .where(answers.c.decision == "declined")
            .order_by(answers.c.created_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(r.id, r.question, _aware(r.created_at) or datetime.now(UTC)) for r in conn.execute(query)]

    def upvoted(self) -> list[RatedExample]:
        """Answered questions with more 👍 than 👎: question, cited passages (title, snippet), answer."""
        votes = (
            sa.select(
                feedback.c.answer_id,
                sa.func.sum(sa.case((feedback.c.vote == "up", 1), else_=0)).label("up"),
                sa.func.sum(sa.case((feedback.c.vote == "down", 1), else_=0)).label("down"),
            )
            .group_by(feedback.c.answer_id)
            .subquery()
        )
        query = (
            sa.select(answers.c.payload)
            .join(votes, votes.c.answer_id == answers.c.id)
            .where(answers.c.decision == "answered", votes.c.up > votes.c.down)
            .order_by(answers.c.created_at)
        )
        out: list[RatedExample] = []
        with self.engine.connect() as conn:
            for (payload,) in conn.execute(query):
                a = answer_from_dict(json.loads(payload))
                passages = tuple((c.title, c.snippet) for c in a.citations)
                out.append(RatedExample(a.question.text, passages, a.text, frozenset(a.question.groups)))
        return out

    @staticmethod
    def _downs() -> sa.Subquery:
        return (
            sa.select(
                feedback.c.answer_id,
                sa.func.sum(sa.case((feedback.c.vote == "down", 1), else_=0)).label("down"),
            )
            .group_by(feedback.c.answer_id)
            .subquery()
        )


def _verified(row: sa.Row, uses: int = 0) -> VerifiedAnswer:  # type: ignore[type-arg]
    created = _aware(row.created_at)
    assert created is not None
    return VerifiedAnswer(
        id=row.id,
        question=row.question,
        paraphrases=tuple(json.loads(row.paraphrases)),
        text=row.text,
        author=row.author,
        author_name=row.author_name,
        platform=Platform(row.platform),
        conversation=row.conversation,
        thread=row.thread,
        message_id=row.message_id,
        url=row.url,
        groups=frozenset(json.loads(row.groups)),
        answer_id=row.answer_id,
        marked_by=row.marked_by,
        created_at=created,
        updated_at=_aware(row.updated_at),
        review_by=_aware(row.review_by),
        removed=bool(row.removed),
        uses=uses,
    )
