"""The offline default index: exact vector search over a float32 matrix plus SQLite FTS5 keywords.

Everything lives in one SQLite file in the data directory (chunks, their vectors, the FTS5
table and a change log). Each process keeps the matrix in memory and catches up from the
change log before every search, so a worker writing and a web process reading stay
consistent. A document's chunks are replaced in one SQLite transaction and applied to the
in-memory matrix under one lock: a query sees all old chunks or all new ones.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from bot.ports import Matrix, Vector
from bot.types import Chunk, ScoredChunk, SearchFilters
from knowledge.text import content_words

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
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    context, body, acl, src, tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, row INTEGER NOT NULL, op TEXT NOT NULL);
"""

# BM25 column weights: title and heading path count more than body text.
CONTEXT_WEIGHT = 3.0
BODY_WEIGHT = 1.0


def _row_to_chunk(r: sqlite3.Row) -> Chunk:
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
    )


class LocalIndex:
    """Embedded index in ``<data_dir>/index.sqlite`` (ChunkIndex protocol)."""

    name = "local"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.RLock()
        self._local = threading.local()
        self._loaded = False
        self._seq = 0
        self._capacity = 0
        self._n = 0
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._rows = np.zeros(0, dtype=np.int64)  # sqlite row per matrix position (-1 = deleted)
        self._sig = np.zeros(0, dtype=np.int32)  # access signature id per position
        self._src = np.zeros(0, dtype=np.int32)  # source id per position
        self._time = np.zeros(0, dtype=np.float64)  # updated_at epoch (nan = unknown)
        self._pos: dict[int, int] = {}
        self._sigs: dict[tuple[str, ...], int] = {}
        self._sources: dict[str, int] = {}
        self._chunk_cache: dict[int, Chunk] = {}

    # -- connections -----------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            self._local.conn = conn
        return conn

    # -- writes ----------------------------------------------------------------------------------
    def replace(self, doc_id: str, chunks: Sequence[Chunk], vectors: Matrix) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        conn = self._conn()
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._delete_rows(conn, [doc_id])
                for chunk, vector in zip(chunks, vectors, strict=True):
                    cur = conn.execute(
                        "INSERT INTO chunks (id, doc_id, ordinal, text, title, heading_path, url, source,"
                        " content_hash, updated_at, access, vector) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            chunk.id,
                            chunk.doc_id,
                            chunk.ordinal,
                            chunk.text,
                            chunk.title,
                            json.dumps(list(chunk.heading_path)),
                            chunk.url,
                            chunk.source,
                            chunk.content_hash,
                            None if chunk.updated_at is None else chunk.updated_at.timestamp(),
                            json.dumps(sorted(chunk.access)),
                            np.asarray(vector, dtype=np.float32).tobytes(),
                        ),
                    )
                    row = cur.lastrowid
                    conn.execute(
                        "INSERT INTO chunks_fts (rowid, context, body, acl, src) VALUES (?,?,?,?,?)",
                        (
                            row,
                            chunk.context,
                            chunk.text,
                            " ".join(_token("acl", g) for g in chunk.access),
                            _token("src", chunk.source),
                        ),
                    )
                    conn.execute("INSERT INTO changes (row, op) VALUES (?, 'add')", (row,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._catch_up(conn)

    def delete(self, doc_ids: Sequence[str]) -> None:
        conn = self._conn()
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._delete_rows(conn, doc_ids)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._catch_up(conn)

    @staticmethod
    def _delete_rows(conn: sqlite3.Connection, doc_ids: Sequence[str]) -> None:
        for doc_id in doc_ids:
            rows = [r[0] for r in conn.execute("SELECT row FROM chunks WHERE doc_id = ?", (doc_id,))]
            for row in rows:
                conn.execute("DELETE FROM chunks_fts WHERE rowid = ?", (row,))
                conn.execute("INSERT INTO changes (row, op) VALUES (?, 'del')", (row,))
            conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))

    # -- the in-memory matrix ------------------------------------------------------------------
    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Apply the change log since the last one this process saw (under self._lock)."""
        if not self._loaded:
            self._loaded = True
            self._seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
            self._append(
                conn.execute("SELECT row, source, updated_at, access, vector FROM chunks").fetchall()
            )
            return
        changes = conn.execute(
            "SELECT seq, row, op FROM changes WHERE seq > ? ORDER BY seq", (self._seq,)
        ).fetchall()
        if not changes:
            return
        self._seq = changes[-1][0]
        added: list[int] = []
        for _, row, op in changes:
            if op == "del":
                pos = self._pos.pop(row, None)
                if pos is not None:
                    self._rows[pos] = -1
                self._chunk_cache.pop(row, None)
            else:
                added.append(row)
        live = [r for r in added if r not in self._pos]
        if live:
            marks = ",".join("?" * len(live))
            fetched = conn.execute(
                f"SELECT row, source, updated_at, access, vector FROM chunks WHERE row IN ({marks})", live
            ).fetchall()
            self._append(fetched)
        if self._n and np.count_nonzero(self._rows[: self._n] < 0) > max(1000, self._n // 3):
            self._compact()

    def _append(self, records: Sequence[sqlite3.Row]) -> None:
        if not records:
            return
        vectors = np.stack([np.frombuffer(r["vector"], dtype=np.float32) for r in records])
        need = self._n + len(records)
        if self._matrix.shape[1] != vectors.shape[1] and self._n == 0:
            self._matrix = np.zeros((0, vectors.shape[1]), dtype=np.float32)
            self._capacity = 0
        if need > self._capacity:
            capacity = max(need, self._capacity * 2, 1024)
            self._matrix = _grow(self._matrix, capacity)
            self._rows = _grow(self._rows, capacity, fill=-1)
            self._sig = _grow(self._sig, capacity)
            self._src = _grow(self._src, capacity)
            self._time = _grow(self._time, capacity)
            self._capacity = capacity
        start = self._n
        self._matrix[start:need] = vectors
        for i, r in enumerate(records):
            pos = start + i
            self._rows[pos] = r["row"]
            self._pos[r["row"]] = pos
            self._sig[pos] = self._sigs.setdefault(tuple(json.loads(r["access"])), len(self._sigs))
            self._src[pos] = self._sources.setdefault(r["source"], len(self._sources))
            self._time[pos] = np.nan if r["updated_at"] is None else r["updated_at"]
        self._n = need

    def _compact(self) -> None:
        keep = np.flatnonzero(self._rows[: self._n] >= 0)
        self._matrix = self._matrix[keep].copy()
        self._rows, self._sig = self._rows[keep].copy(), self._sig[keep].copy()
        self._src, self._time = self._src[keep].copy(), self._time[keep].copy()
        self._n = self._capacity = len(keep)
        self._pos = {int(r): i for i, r in enumerate(self._rows)}

    def _mask(self, filters: SearchFilters) -> np.ndarray:
        n = self._n
        mask = self._rows[:n] >= 0
        if filters.groups is not None:
            allowed = [sid for sig, sid in self._sigs.items() if filters.groups.intersection(sig)]
            mask &= np.isin(self._sig[:n], allowed)
        if filters.sources is not None:
            allowed = [sid for src, sid in self._sources.items() if src in filters.sources]
            mask &= np.isin(self._src[:n], allowed)
        with np.errstate(invalid="ignore"):
            if filters.updated_after is not None:
                mask &= self._time[:n] >= filters.updated_after.timestamp()
            if filters.updated_before is not None:
                mask &= self._time[:n] <= filters.updated_before.timestamp()
        return mask

    def _chunks(self, conn: sqlite3.Connection, rows: Sequence[int]) -> dict[int, Chunk]:
        missing = [r for r in rows if r not in self._chunk_cache]
        if missing:
            marks = ",".join("?" * len(missing))
            for rec in conn.execute(
                "SELECT row, id, doc_id, ordinal, text, title, heading_path, url, source, content_hash,"
                f" updated_at, access FROM chunks WHERE row IN ({marks})",
                missing,
            ):
                if len(self._chunk_cache) > 200_000:
                    self._chunk_cache.clear()
                self._chunk_cache[rec["row"]] = _row_to_chunk(rec)
        return {r: self._chunk_cache[r] for r in rows if r in self._chunk_cache}

    # -- searches --------------------------------------------------------------------------------
    def dense_search(self, vector: Vector, k: int, filters: SearchFilters) -> list[ScoredChunk]:
        conn = self._conn()
        with self._lock:
            self._catch_up(conn)
            if self._n == 0 or k <= 0:
                return []
            mask = self._mask(filters)
            with _blas_single_thread():
                scores = self._matrix[: self._n] @ np.asarray(vector, dtype=np.float32)
            scores = np.where(mask, scores, -np.inf)
            valid = int(np.count_nonzero(mask))
            if valid == 0:
                return []
            k = min(k, valid)
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.argsort(-scores[top], kind="stable")]
            rows = [int(self._rows[p]) for p in top]
            chunks = self._chunks(conn, rows)
        return [
            ScoredChunk(chunks[r], float(scores[p]), {"dense": float(scores[p])})
            for r, p in zip(rows, top, strict=True)
            if r in chunks
        ]

    def keyword_search(self, query: str, k: int, filters: SearchFilters) -> list[ScoredChunk]:
        terms = list(dict.fromkeys(content_words(query)))
        if not terms or k <= 0:
            return []
        match = "(" + " OR ".join('"' + t.replace('"', '""') + '"' for t in terms[:32]) + ")"
        # Access groups and sources are tokens in their own FTS columns, so the filter is part
        # of the MATCH and applies before ranking; their weight 0 keeps them out of the score.
        if filters.groups is not None:
            if not filters.groups:
                return []
            match += " AND acl:(" + " OR ".join(_token("acl", g) for g in sorted(filters.groups)) + ")"
        if filters.sources is not None:
            if not filters.sources:
                return []
            match += " AND src:(" + " OR ".join(_token("src", s) for s in sorted(filters.sources)) + ")"
        timed = filters.updated_after is not None or filters.updated_before is not None
        conn = self._conn()
        with self._lock:
            self._catch_up(conn)
            sql = "SELECT rowid, bm25(chunks_fts, ?, ?, 0, 0) AS s FROM chunks_fts WHERE chunks_fts MATCH ?"
            params: tuple[object, ...] = (CONTEXT_WEIGHT, BODY_WEIGHT, match)
            if timed:
                mask = self._mask(filters)
                sql += " AND rowid IN (SELECT value FROM json_each(?))"
                params += (json.dumps(self._rows[: self._n][mask].tolist()),)
            hits = conn.execute(sql + " ORDER BY s LIMIT ?", params + (k,)).fetchall()
            rows = [int(h[0]) for h in hits]
            chunks = self._chunks(conn, rows)
        # bm25() is lower-is-better: negate so higher is better like every other score.
        return [
            ScoredChunk(chunks[int(row)], -float(s), {"keyword": -float(s)})
            for row, s in hits
            if int(row) in chunks
        ]

    def count(self) -> int:
        conn = self._conn()
        with self._lock:
            self._catch_up(conn)
            return int(np.count_nonzero(self._rows[: self._n] >= 0))

    def doc_chunk_ids(self, doc_id: str) -> list[str]:
        return [
            r[0]
            for r in self._conn().execute(
                "SELECT id FROM chunks WHERE doc_id = ? ORDER BY ordinal", (doc_id,)
            )
        ]


_controller: ThreadpoolController | None = None


def _blas_single_thread() -> Any:
    """One BLAS thread for the matrix-vector product: it is memory-bound, and idle BLAS threads
    spinning against the embedder's threads on a small machine cost more than they give."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def _token(kind: str, value: str) -> str:
    """A filter token FTS5 keeps as one word: digits only, so neither the tokenizer nor the
    Porter stemmer alters it."""
    digest = int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big")
    return f"{kind}{digest:020d}"


def _grow(array: np.ndarray, capacity: int, fill: float = 0) -> np.ndarray:
    shape = (capacity,) + array.shape[1:]
    out = np.full(shape, fill, dtype=array.dtype)
    out[: len(array)] = array
    return out
