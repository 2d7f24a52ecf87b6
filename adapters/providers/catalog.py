"""What the bot knows, document by document: the admin page's Knowledge tab reads it here.

Every ingest (the CLI, ``make run``, a worker's sync or upload) records each document's current
version with its chunks in the document store (``doc_versions``), whichever index holds the
vectors. The current, not deleted version of each document is therefore exactly what the bot can
cite; its chunks are the passages as they were indexed (and are shown as such).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from adapters.db import Database, SqlStore, doc_versions
from bot.types import Chunk, chunk_from_dict


@dataclass(frozen=True)
class DocumentSummary:
    """One document the bot can cite. ``last_ingest`` is when its current version was written."""

    doc_id: str
    title: str
    source: str
    access: tuple[str, ...]
    url: str
    updated_at: datetime | None
    chunks: int
    last_ingest: datetime | None
    version: int


def _aware(value: datetime | None) -> datetime | None:
    # SQLite gives naive datetimes back: they were written in UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class KnowledgeCatalog:
    """Lists current documents (cached until the store changes) and reads one document's chunks."""

    def __init__(self, db: str | Database) -> None:
        self.store = SqlStore(db)  # reads the document store's table directly
        self._lock = threading.Lock()
        self._cache: tuple[tuple[object, ...], list[DocumentSummary]] | None = None

    def _current(self) -> sa.Select[tuple[object, ...]]:
        latest = (
            sa.select(doc_versions.c.doc_id, sa.func.max(doc_versions.c.version).label("v"))
            .group_by(doc_versions.c.doc_id)
            .subquery()
        )
        return (
            sa.select(
                doc_versions.c.doc_id,
                doc_versions.c.source,
                doc_versions.c.version,
                doc_versions.c.chunks,
                doc_versions.c.created_at,
            )
            .join(latest, sa.and_(latest.c.doc_id == doc_versions.c.doc_id, latest.c.v == doc_versions.c.version))
            .where(doc_versions.c.deleted == sa.false())
        )

    def documents(self) -> list[DocumentSummary]:
        """Every current document, sorted by source then title."""
        with self.store.engine.connect() as conn:
            # Any write adds or removes a version row: this pair changes whenever the list can.
            stamp = tuple(
                conn.execute(sa.select(sa.func.count(), sa.func.max(doc_versions.c.created_at))).one()
            )
            with self._lock:
                if self._cache is not None and self._cache[0] == stamp:
                    return self._cache[1]
            rows = conn.execute(self._current()).all()
        out = []
        for row in rows:
            chunks = json.loads(row.chunks)
            first = chunks[0] if chunks else {}
            updated = first.get("updated_at")
            out.append(
                DocumentSummary(
                    doc_id=row.doc_id,
                    title=first.get("title") or row.doc_id,
                    source=row.source,
                    access=tuple(first.get("access") or ()),
                    url=first.get("url") or "",
                    updated_at=datetime.fromisoformat(updated) if updated else None,
                    chunks=len(chunks),
                    last_ingest=_aware(row.created_at),
                    version=row.version,
                )
            )
        out.sort(key=lambda d: (d.source, d.title.lower(), d.doc_id))
        with self._lock:
            self._cache = (stamp, out)
        return out

    def search(self, query: str = "", source: str = "") -> list[DocumentSummary]:
        """Documents whose title, id or URL contains every word of ``query`` (any case)."""
        words = query.lower().split()
        return [
            d
            for d in self.documents()
            if (not source or d.source == source)
            and all(w in f"{d.title}\n{d.doc_id}\n{d.url}".lower() for w in words)
        ]

    def chunks(self, doc_id: str) -> tuple[DocumentSummary, list[Chunk]] | None:
        """One current document and its chunks in order; None when it is not (or no longer) indexed."""
        with self.store.engine.connect() as conn:
            row = conn.execute(self._current().where(doc_versions.c.doc_id == doc_id)).first()
        if row is None:
            return None
        chunks = sorted((chunk_from_dict(c) for c in json.loads(row.chunks)), key=lambda c: c.ordinal)
        first = chunks[0] if chunks else None
        summary = DocumentSummary(
            doc_id=row.doc_id,
            title=(first.title if first else "") or row.doc_id,
            source=row.source,
            access=first.access if first else (),
            url=first.url if first else "",
            updated_at=first.updated_at if first else None,
            chunks=len(chunks),
            last_ingest=_aware(row.created_at),
            version=row.version,
        )
        return summary, chunks
