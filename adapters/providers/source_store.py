"""SQLAlchemy store of registered sources and their per-document sync state (SyncStateStore)."""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from adapters.db import SqlStore, source_documents, sources
from bot.errors import ConfigError, ProviderUnavailable
from bot.ports import SourceDocument
from knowledge.sources import Source


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes for timezone-aware columns; they were stored as UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class SqlSourceStore(SqlStore):
    """Sources and their sync state (SyncStateStore) on any SQLAlchemy database."""

    # --- registry --------------------------------------------------------------------------------
    def add(
        self,
        name: str,
        kind: str,
        options: Mapping[str, str],
        *,
        access: Sequence[str] = ("public",),
        interval_s: int | None = None,
    ) -> Source:
        """Register a source; a name already taken is a ConfigError."""
        now = datetime.now(UTC)
        source_id = uuid.uuid4().hex
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(sources).values(
                        id=source_id,
                        name=name,
                        kind=kind,
                        options=json.dumps(dict(options), sort_keys=True),
                        access=",".join(access),
                        interval_s=interval_s,
                        status="idle",
                        next_due_at=now if interval_s else None,
                        last_error="",
                        last_summary="",
                        created_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            raise ConfigError(f"a source named {name!r} already exists") from None
        found = self.get(source_id)
        assert found is not None
        return found

    def list(self) -> list[Source]:
        """Every source, by name, with its document count."""
        counts = (
            sa.select(source_documents.c.source_id, sa.func.count().label("n"))
            .group_by(source_documents.c.source_id)
            .subquery()
        )
        query = (
            sa.select(sources, sa.func.coalesce(counts.c.n, 0).label("n"))
            .outerjoin(counts, counts.c.source_id == sources.c.id)
            .order_by(sources.c.name)
        )
        with self.engine.connect() as conn:
            return [self._source(row) for row in conn.execute(query)]

    def get(self, name_or_id: str) -> Source | None:
        """A source by name or id."""
        return next((s for s in self.list() if name_or_id in (s.name, s.id)), None)

    def remove(self, source_id: str) -> None:
        """Forget a source and its sync state (its documents are removed from the index by the caller)."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(source_documents).where(source_documents.c.source_id == source_id))
            conn.execute(sa.delete(sources).where(sources.c.id == source_id))

    def set_status(self, source_id: str, status: str, error: str = "") -> None:
        """Record ``status`` (queued | running | failed ...), with the failure reason when failed."""
        values: dict[str, object] = {"status": status}
        if status == "failed":
            values.update(last_error=error[:2000], last_sync_at=datetime.now(UTC))
        self._update(source_id, values)

    def claim_due(self, now: datetime | None = None) -> builtins.list[Source]:
        """The sources due for a sync, their next due time moved on by their interval.

        Moving it in the same transaction means two beat ticks (or two schedulers) never
        enqueue one source twice for one interval.
        """
        now = now or datetime.now(UTC)
        claimed: builtins.list[Source] = []
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(sources).where(sources.c.interval_s.is_not(None), sources.c.next_due_at <= now)
            ).all()
            for row in rows:
                result = conn.execute(
                    sa.update(sources)
                    .where(sources.c.id == row.id, sources.c.next_due_at == row.next_due_at)
                    .values(next_due_at=now + timedelta(seconds=row.interval_s), status="queued")
                )
                if result.rowcount:
                    claimed.append(self._source(row))
        return claimed

    # --- SyncStateStore --------------------------------------------------------------------------
    def begin_sync(self, source_id: str, new_run_id: str) -> tuple[str, bool]:
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(sources.c.run_id).where(sources.c.id == source_id)).scalar()
            run_id = current or new_run_id
            conn.execute(
                sa.update(sources).where(sources.c.id == source_id).values(run_id=run_id, status="running")
            )
        return str(run_id), current is not None

    def finish_sync(self, source_id: str, run_id: str, summary: str) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(sources.c.interval_s).where(sources.c.id == source_id)).first()
            values: dict[str, object] = dict(
                run_id=None, status="done", last_sync_at=now, last_summary=summary, last_error=""
            )
            if row is not None and row.interval_s:
                values["next_due_at"] = now + timedelta(seconds=row.interval_s)
            conn.execute(sa.update(sources).where(sources.c.id == source_id).values(**values))

    def documents(self, source_id: str) -> dict[str, SourceDocument]:
        query = sa.select(source_documents).where(source_documents.c.source_id == source_id)
        with self.engine.connect() as conn:
            return {
                r.external_id: SourceDocument(
                    r.external_id, tuple(json.loads(r.doc_ids)), r.marker, r.embedder, r.run_id
                )
                for r in conn.execute(query)
            }

    def save_documents(self, source_id: str, docs: Sequence[SourceDocument]) -> None:
        if not docs:
            return
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.delete(source_documents).where(
                        source_documents.c.source_id == source_id,
                        source_documents.c.external_id.in_([d.external_id for d in docs]),
                    )
                )
                conn.execute(
                    sa.insert(source_documents),
                    [
                        dict(
                            source_id=source_id,
                            external_id=d.external_id,
                            doc_ids=json.dumps(list(d.doc_ids)),
                            marker=d.marker,
                            embedder=d.embedder,
                            run_id=d.run_id,
                            updated_at=now,
                        )
                        for d in docs
                    ],
                )
        except sa.exc.OperationalError as exc:
            raise ProviderUnavailable(f"database unavailable: {type(exc.orig).__name__}") from None

    def delete_documents(self, source_id: str, external_ids: Sequence[str]) -> None:
        ids = list(external_ids)
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
                conn.execute(
                    sa.delete(source_documents).where(
                        source_documents.c.source_id == source_id,
                        source_documents.c.external_id.in_(ids[start : start + 500]),
                    )
                )

    # --- plumbing --------------------------------------------------------------------------------
    def _update(self, source_id: str, values: Mapping[str, object]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(sources).where(sources.c.id == source_id).values(**values))

    @staticmethod
    def _source(row: sa.Row) -> Source:  # type: ignore[type-arg]
        mapping = row._mapping
        return Source(
            id=row.id,
            name=row.name,
            kind=row.kind,
            options=json.loads(row.options),
            access=tuple(a for a in row.access.split(",") if a),
            interval_s=row.interval_s,
            status=row.status,
            last_sync_at=_aware(row.last_sync_at),
            next_due_at=_aware(row.next_due_at),
            last_error=row.last_error or "",
            last_summary=row.last_summary or "",
            documents=int(mapping["n"]) if "n" in mapping else 0,
        )
