"""The SQLite file: schema and migration, rows as chunks, the term vocabulary, deletions.

Everything lives in one SQLite file in the data directory: chunks with their vector and their
term counts (a blob), a term vocabulary and a change log that every process catches up from.
An index written by the FTS5 version (schema 1) is migrated on first open: the term counts
are computed once and the FTS5 table dropped.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from adapters.providers.local_index.postings import encode_terms
from adapters.providers.local_index.tokenizer import TOKENIZER
from bot.types import Chunk

SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    row INTEGER PRIMARY KEY,
    id TEXT UNIQUE NOT NULL,
    doc_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    title TEXT NOT NULL,
    heading_path TEXT NOT NULL,
    url TEXT NOT NULL,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    updated_at REAL,
    access TEXT NOT NULL,
    vector BLOB NOT NULL,
    terms BLOB,
    fingerprint TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS vocab (id INTEGER PRIMARY KEY, term TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, row INTEGER NOT NULL, op TEXT NOT NULL);
"""
SCHEMA_VERSION = 3  # 1: FTS5 keywords; 2: stored term counts + in-memory BM25; 3: document fingerprints


def row_to_chunk(r: sqlite3.Row) -> Chunk:
    return Chunk(
        id=r["id"],
        doc_id=r["doc_id"],
        ordinal=r["ordinal"],
        text=r["text"],
        title=r["title"],
        heading_path=tuple(json.loads(r["heading_path"])),
        url=r["url"],
        source=r["source"],
        content_hash=r["content_hash"],
        updated_at=None if r["updated_at"] is None else datetime.fromtimestamp(r["updated_at"], UTC),
        access=tuple(json.loads(r["access"])),
        fingerprint=r["fingerprint"] or "",
    )


def context(title: str, heading_path: tuple[str, ...]) -> str:
    """:attr:`Chunk.context` from stored columns (for migrating old rows)."""
    parts = [title] + [h for h in heading_path if h and h != title]
    return " > ".join(p for p in parts if p)


COLUMNS = "SELECT row, source, updated_at, access, vector, terms FROM chunks"
"""What a process loads of each chunk into memory (the rest is read when a chunk is returned)."""


def connect(path: Path, vocabulary: Vocabulary) -> sqlite3.Connection:
    """A connection to the index file (created, and migrated to SCHEMA_VERSION, when needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        migrate(conn, vocabulary)
    return conn


def migrate(conn: sqlite3.Connection, vocabulary: Vocabulary) -> None:
    """Bring an index written by an older version up to SCHEMA_VERSION (idempotent)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(chunks)")}
            if "terms" not in columns:
                conn.execute("ALTER TABLE chunks ADD COLUMN terms BLOB")
            if "fingerprint" not in columns:
                # Chunks written before fingerprints have none: they are never taken as duplicates.
                conn.execute("ALTER TABLE chunks ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''")
            todo = conn.execute(
                "SELECT row, title, heading_path, text FROM chunks WHERE terms IS NULL"
            ).fetchall()
            for start in range(0, len(todo), 512):
                batch = todo[start : start + 512]
                contexts = [context(r["title"], tuple(json.loads(r["heading_path"]))) for r in batch]
                blobs = vocabulary.blobs(
                    conn, list(zip(contexts, [r["text"] for r in batch], strict=True))
                )
                conn.executemany(
                    "UPDATE chunks SET terms = ? WHERE row = ?",
                    [(blob, r["row"]) for blob, r in zip(blobs, batch, strict=True)],
                )
            conn.execute("DROP TABLE IF EXISTS chunks_fts")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")



class Vocabulary:
    """Term ids of the ``vocab`` table, cached in memory (ids never change once given)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def ids(self, conn: sqlite3.Connection, terms: Sequence[str], *, create: bool) -> dict[str, int]:
        """Vocabulary ids of ``terms`` (new ones added when ``create``; inside a write transaction)."""
        missing = [t for t in dict.fromkeys(terms) if t not in self._ids]
        for start in range(0, len(missing), 500):
            part = missing[start : start + 500]
            marks = ",".join("?" * len(part))
            for tid, term in conn.execute(f"SELECT id, term FROM vocab WHERE term IN ({marks})", part):
                self._ids[term] = tid
        if create:
            new = [t for t in missing if t not in self._ids]
            for term in new:
                tid = conn.execute("INSERT INTO vocab (term) VALUES (?)", (term,)).lastrowid
                assert tid is not None
                self._ids[term] = tid
        return {t: self._ids[t] for t in terms if t in self._ids}

    def blobs(self, conn: sqlite3.Connection, pairs: Sequence[tuple[str, str]]) -> list[bytes]:
        counted = TOKENIZER.count(pairs)
        ids = self.ids(conn, [t for c, b in counted for t in (*c, *b)], create=True)
        blobs = []
        for ctx, body in counted:
            terms = list(dict.fromkeys([*ctx, *body]))
            blobs.append(
                encode_terms(
                    [ids[t] for t in terms], [ctx.get(t, 0) for t in terms], [body.get(t, 0) for t in terms]
                )
            )
        return blobs


def delete_rows(conn: sqlite3.Connection, doc_ids: Sequence[str]) -> None:
    for doc_id in doc_ids:
        rows = [r[0] for r in conn.execute("SELECT row FROM chunks WHERE doc_id = ?", (doc_id,))]
        conn.executemany("INSERT INTO changes (row, op) VALUES (?, 'del')", [(row,) for row in rows])
        conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))

