"""Document identity = (source, full location): rename the ids written by the old scheme.

The old ids were ``"{source}:{path relative to the folder given}"`` for files (two folders
with an ``index.md`` shared one id, and the second ingest replaced the first) and the bare
``_id`` for JSONL rows. The new id is ``bot.identity.document_id(source, url)``; every
stored version keeps the document's url in its chunks, so the new id is known for every
document that was ever indexed. A document whose url is unknown (only deletions stored)
keeps its old id, which goes on working.

Renamed: the version history (ids, and the chunk and document ids inside the stored
chunks, so a rollback restores them under the new id), the sync state of the sources, and
the chunk ids cited by stored answers and reviews (votes keep counting for their passages).
The index (SQLite or Pinecone) is renamed by the Ingestor from ``doc_id_renames`` before its
next ingest or rollback, from the stored vectors (nothing is embedded again).

Two old ids of the same file (the same folder ingested once as ``docs`` and once as ``.``)
become one document: its newest history is kept, and both old ids leave the index.

Revision ID: 0006
Revises: 0005
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from bot.identity import document_id

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("doc_versions", sa.Column("url", sa.Text, nullable=False, server_default=""))
    op.create_table(
        "doc_id_renames",
        sa.Column("old_id", sa.String(1024), primary_key=True),
        sa.Column("new_id", sa.String(1024), nullable=False),
        sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    conn = op.get_bind()
    versions = sa.table(
        "doc_versions",
        sa.column("doc_id", sa.String),
        sa.column("version", sa.Integer),
        sa.column("source", sa.String),
        sa.column("chunks", sa.Text),
        sa.column("url", sa.Text),
        sa.column("created_at", sa.DateTime),
    )
    # Per old id: its source, url (from any stored chunk) and newest version time.
    docs: dict[str, dict[str, Any]] = {}
    for doc_id, source, chunks, created_at in conn.execute(
        sa.select(versions.c.doc_id, versions.c.source, versions.c.chunks, versions.c.created_at)
    ):
        info = docs.setdefault(doc_id, {"source": source, "url": "", "at": created_at})
        info["at"] = max(info["at"], created_at)
        if not info["url"]:
            stored = json.loads(chunks or "[]")
            info["url"] = next((c.get("url", "") for c in stored if c.get("url")), "")
    renames: dict[str, str] = {}
    for doc_id, info in docs.items():
        new_id = document_id(info["source"], info["url"]) if info["url"] else doc_id
        if new_id != doc_id:
            renames[doc_id] = new_id

    # One new id may come from several old ones (the same file under two roots): the newest wins.
    winners: dict[str, str] = {}
    for old_id, new_id in renames.items():
        if new_id in docs and new_id not in renames:
            continue  # already stored under the new id: that history stays, the old ids go
        current = winners.get(new_id)
        if current is None or docs[old_id]["at"] > docs[current]["at"]:
            winners[new_id] = old_id
    for old_id, new_id in renames.items():
        url = docs[old_id]["url"]
        if winners.get(new_id) != old_id:  # a losing duplicate: its history goes, its chunks leave the index
            conn.execute(sa.delete(versions).where(versions.c.doc_id == old_id))
            continue
        rows = conn.execute(
            sa.select(versions.c.version, versions.c.chunks).where(versions.c.doc_id == old_id)
        ).all()
        for version, chunks in rows:
            stored = json.loads(chunks or "[]")
            for c in stored:
                c["doc_id"] = new_id
                c["id"] = f"{new_id}#{c.get('ordinal', 0)}"
            conn.execute(
                sa.update(versions)
                .where(versions.c.doc_id == old_id, versions.c.version == version)
                .values(doc_id=new_id, chunks=json.dumps(stored), url=url)
            )
    # Unrenamed documents get their url too (it decides what a scoped --sync may remove).
    for doc_id, info in docs.items():
        if doc_id not in renames and info["url"]:
            conn.execute(sa.update(versions).where(versions.c.doc_id == doc_id).values(url=info["url"]))
    if not renames:
        return
    conn.execute(
        sa.table("doc_id_renames", sa.column("old_id"), sa.column("new_id"), sa.column("done")).insert(),
        [{"old_id": o, "new_id": n, "done": False} for o, n in renames.items()],
    )

    # The sources' sync state: the document ids each item produced.
    state = sa.table("source_documents", sa.column("source_id"), sa.column("external_id"), sa.column("doc_ids"))
    for source_id, external_id, doc_ids in conn.execute(
        sa.select(state.c.source_id, state.c.external_id, state.c.doc_ids)
    ).all():
        old = json.loads(doc_ids)
        new = list(dict.fromkeys(renames.get(d, d) for d in old))
        if new != old:
            conn.execute(
                sa.update(state)
                .where(state.c.source_id == source_id, state.c.external_id == external_id)
                .values(doc_ids=json.dumps(new))
            )

    # Chunk and document ids inside stored answers (citations, trace) and reviews.
    for name, key, column in (("answers", "id", "payload"), ("reviews", "answer_id", "passages")):
        table = sa.table(name, sa.column(key), sa.column(column))
        for row_key, text in conn.execute(sa.select(table.c[key], table.c[column])).all():
            data = json.loads(text)
            if _rename(data, renames):
                conn.execute(sa.update(table).where(table.c[key] == row_key).values({column: json.dumps(data)}))


def _rename(node: Any, renames: dict[str, str]) -> bool:
    """Rename ``doc_id``/``chunk_id`` values in a JSON tree in place; True if anything changed."""
    changed = False
    if isinstance(node, list):
        for item in node:
            changed |= _rename(item, renames)
    elif isinstance(node, dict):
        doc_id = node.get("doc_id")
        if isinstance(doc_id, str) and doc_id in renames:
            new_id = renames[doc_id]
            node["doc_id"] = new_id
            chunk_id = node.get("chunk_id")
            if isinstance(chunk_id, str) and chunk_id.startswith(doc_id + "#"):
                node["chunk_id"] = new_id + chunk_id[len(doc_id) :]
            changed = True
        for value in node.values():
            if isinstance(value, dict | list):
                changed |= _rename(value, renames)
    return changed


def downgrade() -> None:
    op.drop_table("doc_id_renames")
    op.drop_column("doc_versions", "url")
