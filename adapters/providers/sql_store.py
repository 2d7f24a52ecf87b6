"""SQLAlchemy stores: document versions (DocumentStore) and answers with feedback (AnswerStore)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from adapters.db import (
    SqlStore,
    answers,
    doc_id_renames,
    doc_versions,
    feedback,
    ingest_runs,
    vote_confirmations,
)
from bot.errors import ProviderRejected, ProviderUnavailable
from bot.ports import DocumentState, StoredVersion
from bot.serialize import answer_from_dict, answer_to_dict
from bot.types import Answer, Chunk, Feedback, Platform, Vote, chunk_from_dict, chunk_to_dict

if TYPE_CHECKING:
    from bot.feedback import VoteRecord
    from bot.ports import Matrix

# numpy and bot.feedback are imported where they are used: an unchanged re-ingest loads neither.

KEEP_VERSIONS = 2  # the current one and the one before it


class SqlDocumentStore(SqlStore):
    """DocumentStore on any SQLAlchemy database (SQLite by default)."""

    def states(self, source: str | None = None) -> dict[str, DocumentState]:
        latest = (
            sa.select(doc_versions.c.doc_id, sa.func.max(doc_versions.c.version).label("v"))
            .group_by(doc_versions.c.doc_id)
            .subquery()
        )
        query = sa.select(
            doc_versions.c.doc_id,
            doc_versions.c.source,
            doc_versions.c.content_hash,
            doc_versions.c.embedder,
            doc_versions.c.version,
            doc_versions.c.deleted,
            doc_versions.c.url,
        ).join(
            latest, sa.and_(latest.c.doc_id == doc_versions.c.doc_id, latest.c.v == doc_versions.c.version)
        )
        if source is not None:
            query = query.where(doc_versions.c.source == source)
        with self.engine.connect() as conn:
            return {r.doc_id: DocumentState(*r) for r in conn.execute(query)}

    def record(self, state: DocumentState, chunks: Sequence[Chunk], vectors: Matrix, run_id: str) -> None:
        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(doc_versions).where(
                    doc_versions.c.doc_id == state.doc_id, doc_versions.c.version >= state.version
                )
            )
            conn.execute(
                sa.insert(doc_versions).values(
                    doc_id=state.doc_id,
                    version=state.version,
                    source=state.source,
                    run_id=run_id,
                    content_hash=state.content_hash,
                    embedder=state.embedder,
                    deleted=state.deleted,
                    url=state.url,
                    chunks=json.dumps([chunk_to_dict(c) for c in chunks]),
                    vectors=vectors.tobytes(),
                    dimension=int(vectors.shape[1]) if vectors.ndim == 2 else 0,
                    created_at=datetime.now(UTC),
                )
            )
            conn.execute(
                sa.delete(doc_versions).where(
                    doc_versions.c.doc_id == state.doc_id,
                    doc_versions.c.version <= state.version - KEEP_VERSIONS,
                )
            )

    def start_run(self, run_id: str, source: str) -> None:
        """Record a run; a run that already exists (a sync resumed after a crash) is kept as is."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(ingest_runs.c.id).where(ingest_runs.c.id == run_id)).first() is None:
                conn.execute(sa.insert(ingest_runs).values(id=run_id, source=source, started_at=datetime.now(UTC)))

    def finish_run(self, run_id: str, summary: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(ingest_runs)
                .where(ingest_runs.c.id == run_id)
                .values(finished_at=datetime.now(UTC), summary=summary)
            )

    def last_run(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(ingest_runs.c.id)
                .where(ingest_runs.c.rolled_back == sa.false())
                .order_by(ingest_runs.c.started_at.desc())
                .limit(1)
            ).scalar()

    def rollback_run(self, run_id: str) -> list[tuple[str, StoredVersion | None]]:
        restored: list[tuple[str, StoredVersion | None]] = []
        with self.engine.begin() as conn:
            touched = conn.execute(
                sa.select(doc_versions.c.doc_id, doc_versions.c.version).where(
                    doc_versions.c.run_id == run_id
                )
            ).all()
            for doc_id, version in touched:
                conn.execute(
                    sa.delete(doc_versions).where(
                        doc_versions.c.doc_id == doc_id, doc_versions.c.version >= version
                    )
                )
                prev = conn.execute(
                    sa.select(doc_versions)
                    .where(doc_versions.c.doc_id == doc_id)
                    .order_by(doc_versions.c.version.desc())
                    .limit(1)
                ).first()
                restored.append((doc_id, None if prev is None else _stored(prev)))
            conn.execute(sa.update(ingest_runs).where(ingest_runs.c.id == run_id).values(rolled_back=True))
        return restored

    def pending_renames(self, limit: int) -> list[tuple[str, StoredVersion | None]]:
        out: list[tuple[str, StoredVersion | None]] = []
        with self.engine.connect() as conn:
            pending = conn.execute(
                sa.select(doc_id_renames.c.old_id, doc_id_renames.c.new_id)
                .where(doc_id_renames.c.done == sa.false())
                .order_by(doc_id_renames.c.old_id)
                .limit(limit)
            ).all()
            for old_id, new_id in pending:
                row = conn.execute(
                    sa.select(doc_versions)
                    .where(doc_versions.c.doc_id == new_id)
                    .order_by(doc_versions.c.version.desc())
                    .limit(1)
                ).first()
                out.append((old_id, None if row is None else _stored(row)))
        return out

    def finish_renames(self, old_ids: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(doc_id_renames).where(doc_id_renames.c.old_id.in_(list(old_ids))).values(done=True)
            )


def _stored(row: sa.Row) -> StoredVersion:  # type: ignore[type-arg]
    import numpy as np

    state = DocumentState(row.doc_id, row.source, row.content_hash, row.embedder, row.version, row.deleted, row.url)
    chunks = tuple(chunk_from_dict(c) for c in json.loads(row.chunks))
    dim = row.dimension or 0
    vectors = (
        np.frombuffer(row.vectors, dtype=np.float32).reshape(-1, dim) if dim else np.zeros((0, 0), np.float32)
    )
    return StoredVersion(state, chunks, vectors)


class SqlAnswerStore(SqlStore):
    """AnswerStore on any SQLAlchemy database: answers with traces, and one vote per user per answer."""

    def save_answer(self, answer: Answer) -> None:
        payload = json.dumps(answer_to_dict(answer))
        q = answer.question
        values = dict(
            created_at=answer.created_at or datetime.now(UTC),
            question=q.text,
            asker=q.asker,
            platform=q.platform.value,
            conversation=q.conversation,
            thread=q.thread,
            decision=answer.decision.value,
            confidence=answer.confidence,
            text=answer.text,
            payload=payload,
        )
        try:
            with self.engine.begin() as conn:
                exists = conn.execute(sa.select(answers.c.id).where(answers.c.id == answer.id)).first()
                if exists:
                    conn.execute(sa.update(answers).where(answers.c.id == answer.id).values(**values))
                else:
                    conn.execute(sa.insert(answers).values(id=answer.id, **values))
        except sa.exc.OperationalError as exc:
            raise ProviderUnavailable(f"database unavailable: {type(exc.orig).__name__}") from None

    def get_answer(self, answer_id: str) -> Answer | None:
        with self.engine.connect() as conn:
            payload = conn.execute(sa.select(answers.c.payload).where(answers.c.id == answer_id)).scalar()
        return None if payload is None else answer_from_dict(json.loads(payload))

    def save_feedback(self, fb: Feedback) -> None:
        values = dict(
            platform=fb.platform.value,
            vote=fb.vote.value,
            comment=fb.comment,
            created_at=fb.created_at or datetime.now(UTC),
        )
        try:
            with self.engine.begin() as conn:
                where = sa.and_(feedback.c.answer_id == fb.answer_id, feedback.c.user == fb.user)
                if conn.execute(sa.select(feedback.c.user).where(where)).first():
                    conn.execute(sa.update(feedback).where(where).values(**values))
                else:
                    conn.execute(sa.insert(feedback).values(answer_id=fb.answer_id, user=fb.user, **values))
        except sa.exc.IntegrityError:
            raise ProviderRejected(f"no stored answer {fb.answer_id!r} to attach the vote to") from None
        except sa.exc.OperationalError as exc:
            raise ProviderUnavailable(f"database unavailable: {type(exc.orig).__name__}") from None

    def feedback_for(self, answer_id: str) -> list[Feedback]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(feedback).where(feedback.c.answer_id == answer_id)).all()
        return [
            Feedback(r.answer_id, r.user, Platform(r.platform), Vote(r.vote), r.comment, r.created_at) for r in rows
        ]

    def vote_records(self) -> list[VoteRecord]:
        from bot.feedback import VoteRecord

        query = (
            sa.select(
                feedback.c.vote,
                feedback.c.created_at,
                answers.c.payload,
                feedback.c.user,
                feedback.c.platform,
                vote_confirmations.c.answer_id.is_not(None).label("confirmed"),
            )
            .join(answers, answers.c.id == feedback.c.answer_id)
            .outerjoin(vote_confirmations, vote_confirmations.c.answer_id == feedback.c.answer_id)
            .where(answers.c.decision == "answered")
        )
        out: list[VoteRecord] = []
        with self.engine.connect() as conn:
            for vote, created_at, payload, user, platform, confirmed in conn.execute(query):
                data = json.loads(payload)
                trace = data.get("trace") or {}
                at = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
                out.append(
                    VoteRecord(
                        query=trace.get("query") or data["question"]["text"],
                        chunk_ids=tuple(c["chunk_id"] for c in data["citations"]),
                        up=vote == Vote.UP.value,
                        at=at,
                        groups=frozenset(data["question"].get("groups", ["public"])),
                        voter=user,
                        platform=platform,
                        confirmed=bool(confirmed),
                    )
                )
        return out
