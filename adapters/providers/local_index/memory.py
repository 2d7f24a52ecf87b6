"""The loaded index: SQLite connections and the in-memory matrix and postings (built by the
:class:`~adapters.providers.local_index.index.LocalIndex` façade on its first call).

Each process keeps the matrix and an inverted index in memory and catches up from the
file's change log before every search, so a worker writing and a web process reading stay
consistent. A document's chunks are replaced in one SQLite transaction and applied to the
in-memory state under one lock: a query sees all old chunks or all new ones.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adapters.providers.local_index.dense import (
    blas_single_thread,
    grow,
    lookup,
    prefilter,
    sign_words,
    words,
)
from adapters.providers.local_index.postings import Postings, bm25_scores
from adapters.providers.local_index.store import COLUMNS, Vocabulary, connect, delete_rows, row_to_chunk
from adapters.providers.local_index.tokenizer import TOKENIZER
from bot.ports import Matrix, Vector
from bot.text import content_words
from bot.types import Chunk, ScoredChunk, SearchFilters


class LoadedIndex:
    """The index in the SQLite file ``path``, loaded into memory (see LocalIndex for the options)."""

    def __init__(self, path: Path, *, approx_min_rows: int, rescore: int, rescore_per_k: int) -> None:
        self._path = path
        self._approx_min_rows = approx_min_rows
        self._rescore = rescore
        self._rescore_per_k = rescore_per_k
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
        self._length = np.zeros(0, dtype=np.float32)  # terms (context + body) per position
        # Sign bits of the matrix rows, one row of uint64 words per 64 dimensions (word-major:
        # each word is one contiguous array over positions, which makes the popcounts ~3x
        # faster than row-major). Valid for positions < _bits_n; kept only from
        # approx_min_rows positions on (_sync_bits).
        self._bits = np.zeros((0, 0), dtype=np.uint64)
        self._bits_n = 0
        self._postings = Postings()
        self._vocabulary = Vocabulary()
        self._pos: dict[int, int] = {}
        self._sigs: dict[tuple[str, ...], int] = {}
        self._sources: dict[str, int] = {}
        self._chunk_cache: dict[int, Chunk] = {}
        self._last_bm25: tuple[tuple[str, int, int], np.ndarray | None] | None = None
        self._row_of: dict[str, int] = {}  # chunk id -> sqlite row (a replaced chunk gets a new row)

    # -- connections -----------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._path, self._vocabulary)
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
                delete_rows(conn, [doc_id])
                blobs = self._vocabulary.blobs(conn, [(c.context, c.text) for c in chunks])
                for chunk, vector, blob in zip(chunks, vectors, blobs, strict=True):
                    cur = conn.execute(
                        "INSERT INTO chunks (id, doc_id, ordinal, text, title, heading_path, url, source,"
                        " content_hash, updated_at, access, vector, terms, fingerprint)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                            blob,
                            chunk.fingerprint,
                        ),
                    )
                    conn.execute("INSERT INTO changes (row, op) VALUES (?, 'add')", (cur.lastrowid,))
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
                delete_rows(conn, doc_ids)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._catch_up(conn)

    # -- the in-memory matrix and postings -----------------------------------------------------
    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Apply the change log since the last one this process saw (under self._lock)."""
        if not self._loaded:
            self._loaded = True
            self._seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
            self._append(conn.execute(COLUMNS).fetchall(), merge=False)
            self._postings.rebuild()
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
            self._append(conn.execute(f"{COLUMNS} WHERE row IN ({marks})", live).fetchall())
        if self._n and np.count_nonzero(self._rows[: self._n] < 0) > max(1000, self._n // 3):
            self._compact()

    def _append(self, records: Sequence[sqlite3.Row], *, merge: bool = True) -> None:
        if not records:
            return
        vectors = np.frombuffer(b"".join(r["vector"] for r in records), dtype=np.float32).reshape(
            len(records), -1
        )
        need = self._n + len(records)
        if self._matrix.shape[1] != vectors.shape[1] and self._n == 0:
            self._matrix = np.zeros((0, vectors.shape[1]), dtype=np.float32)
            self._capacity = 0
            self._bits, self._bits_n = np.zeros((0, 0), dtype=np.uint64), 0
        if need > self._capacity:
            capacity = max(need, self._capacity * 2, 1024)
            self._matrix = grow(self._matrix, capacity)
            self._rows = grow(self._rows, capacity, fill=-1)
            self._sig = grow(self._sig, capacity)
            self._src = grow(self._src, capacity)
            self._time = grow(self._time, capacity)
            self._length = grow(self._length, capacity)
            self._capacity = capacity
        start = self._n
        self._matrix[start:need] = vectors
        rows = np.fromiter((r["row"] for r in records), dtype=np.int64, count=len(records))
        self._rows[start:need] = rows
        self._pos.update(zip(rows.tolist(), range(start, need), strict=True))
        sig_of: dict[str, int] = {}  # raw JSON -> id, so each distinct access list is parsed once
        for i, r in enumerate(records):
            raw = r["access"]
            if raw not in sig_of:
                sig_of[raw] = self._sigs.setdefault(tuple(json.loads(raw)), len(self._sigs))
            self._sig[start + i] = sig_of[raw]
        self._src[start:need] = [self._sources.setdefault(r["source"], len(self._sources)) for r in records]
        self._time[start:need] = [np.nan if r["updated_at"] is None else r["updated_at"] for r in records]
        # Term blobs, parsed for all records at once: [context len, body len, ids, ctx counts, body counts].
        blobs = [r["terms"] or bytes(8) for r in records]
        flat = np.frombuffer(b"".join(blobs), dtype=np.int32)
        sizes = np.fromiter((len(b) // 4 for b in blobs), dtype=np.int64, count=len(blobs))
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._length[start:need] = flat[offsets] + flat[offsets + 1]
        widths = (sizes - 2) // 3
        first = np.repeat(offsets + 2 - np.concatenate([[0], np.cumsum(widths)[:-1]]), widths)
        at = first + np.arange(int(widths.sum()))
        width = np.repeat(widths, widths)
        self._postings.add(
            flat[at],
            np.repeat(np.arange(start, need, dtype=np.int32), widths),
            flat[at + width].astype(np.float32),
            flat[at + 2 * width].astype(np.float32),
            merge=merge,
        )
        self._n = need
        self._sync_bits()

    def _sync_bits(self) -> None:
        """Compute the sign bits of positions ``_bits_n .. _n`` (once there are enough rows)."""
        n = self._n
        if n < self._approx_min_rows or self._bits_n >= n:
            return
        if self._bits.shape[1] < n or self._bits.shape[0] != words(self._matrix.shape[1]):
            bits = np.zeros((words(self._matrix.shape[1]), max(n, self._capacity)), dtype=np.uint64)
            if self._bits.shape[0] == bits.shape[0]:
                bits[:, : self._bits_n] = self._bits[:, : self._bits_n]
            else:
                self._bits_n = 0
            self._bits = bits
        for start in range(self._bits_n, n, 8192):  # blocks: the boolean temporary stays small
            end = min(n, start + 8192)
            self._bits[:, start:end] = sign_words(self._matrix[start:end]).T
        self._bits_n = n

    def _compact(self) -> None:
        keep = np.flatnonzero(self._rows[: self._n] >= 0)
        remap = np.full(self._n, -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        self._matrix = self._matrix[keep].copy()
        self._rows, self._sig = self._rows[keep].copy(), self._sig[keep].copy()
        self._src, self._time = self._src[keep].copy(), self._time[keep].copy()
        self._length = self._length[keep].copy()
        if self._bits_n >= self._n:
            self._bits, self._bits_n = np.ascontiguousarray(self._bits[:, keep]), len(keep)
        else:
            self._bits, self._bits_n = np.zeros((0, 0), dtype=np.uint64), 0
        self._postings.rebuild(remap)
        self._n = self._capacity = len(keep)
        self._pos = {int(r): i for i, r in enumerate(self._rows)}
        self._sync_bits()

    def _mask(self, filters: SearchFilters) -> np.ndarray:
        n = self._n
        mask = self._rows[:n] >= 0
        if filters.groups is not None:
            allowed = [sid for sig, sid in self._sigs.items() if filters.groups.intersection(sig)]
            mask &= lookup(allowed, self._sig[:n])
        if filters.sources is not None:
            allowed = [sid for src, sid in self._sources.items() if src in filters.sources]
            mask &= lookup(allowed, self._src[:n])
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
                f" updated_at, access, fingerprint FROM chunks WHERE row IN ({marks})",
                missing,
            ):
                if len(self._chunk_cache) > 200_000:
                    self._chunk_cache.clear()
                    self._row_of.clear()
                self._chunk_cache[rec["row"]] = chunk = row_to_chunk(rec)
                self._row_of[chunk.id] = rec["row"]
        return {r: self._chunk_cache[r] for r in rows if r in self._chunk_cache}

    def _top(
        self,
        conn: sqlite3.Connection,
        scores: np.ndarray,
        k: int,
        key: str,
        positions: np.ndarray | None = None,
    ) -> list[ScoredChunk]:
        """The ``k`` best of ``scores`` (``-inf`` = excluded) as scored chunks; ``scores[i]`` is
        of position ``positions[i]`` (default: of position ``i``)."""
        valid = int(np.count_nonzero(scores > -np.inf))
        if valid == 0:
            return []
        k = min(k, valid)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        scores = scores[top]
        if positions is not None:
            top = positions[top]
        rows = [int(self._rows[p]) for p in top]
        chunks = self._chunks(conn, rows)
        return [
            ScoredChunk(chunks[r], float(s), {key: float(s)})
            for r, s in zip(rows, scores.tolist(), strict=True)
            if r in chunks
        ]

    # -- searches --------------------------------------------------------------------------------
    def dense_search(self, vector: Vector, k: int, filters: SearchFilters) -> list[ScoredChunk]:
        conn = self._conn()
        with self._lock:
            self._catch_up(conn)
            if self._n == 0 or k <= 0:
                return []
            mask = self._mask(filters)
            query = np.asarray(vector, dtype=np.float32)
            if self._n >= self._approx_min_rows and self._bits_n == self._n:
                wanted = max(self._rescore, self._rescore_per_k * k)
                if np.count_nonzero(mask) <= wanted:
                    positions = np.flatnonzero(mask)  # few rows allowed: all of them, exactly
                else:
                    # Ascending positions: the gather below then reads the matrix front to back.
                    positions = np.sort(self._prefilter(query, mask, wanted))
                with blas_single_thread():
                    scores = np.take(self._matrix, positions, axis=0) @ query
                return self._top(conn, scores, k, "dense", positions)
            with blas_single_thread():
                scores = self._matrix[: self._n] @ query
            return self._top(conn, np.where(mask, scores, -np.inf), k, "dense")

    def _prefilter(self, query: np.ndarray, mask: np.ndarray, count: int) -> np.ndarray:
        """The ``count`` allowed positions whose sign bits score best against ``query``."""
        return prefilter(self._bits, self._n, query, mask, count)

    def _bm25(self, conn: sqlite3.Connection, query: str) -> np.ndarray | None:
        """BM25 of every position for ``query`` (0 = no term), or None when nothing can match.

        The last result is kept (per index state): the retriever asks ``keyword_search`` and then
        ``keyword_scores`` for the same query.
        """
        key = (query, self._seq, self._n)
        if self._last_bm25 is not None and self._last_bm25[0] == key:
            return self._last_bm25[1]
        scores = self._bm25_scores(conn, query)
        self._last_bm25 = (key, scores)
        return scores

    def _bm25_scores(self, conn: sqlite3.Connection, query: str) -> np.ndarray | None:
        content = content_words(query)
        n = self._n
        if not content or n == 0:
            return None
        terms = TOKENIZER.terms(" ".join(content))[:32]
        ids = self._vocabulary.ids(conn, terms, create=False)
        if not ids:
            return None
        term_ids = [ids[t] for t in terms if t in ids]
        return bm25_scores(self._postings, term_ids, self._rows[:n] >= 0, self._length[:n])

    def _positions(self, conn: sqlite3.Connection, chunk_ids: Sequence[str]) -> list[int | None]:
        missing = [c for c in dict.fromkeys(chunk_ids) if self._row_of.get(c, -1) not in self._pos]
        for start in range(0, len(missing), 500):
            part = missing[start : start + 500]
            marks = ",".join("?" * len(part))
            for cid, row in conn.execute(f"SELECT id, row FROM chunks WHERE id IN ({marks})", part):
                self._row_of[cid] = row
        return [self._pos.get(self._row_of.get(cid, -1)) for cid in chunk_ids]

    def keyword_search(self, query: str, k: int, filters: SearchFilters) -> list[ScoredChunk]:
        """BM25 over the chunks ``filters`` allow (statistics over all live chunks), best first."""
        if k <= 0:
            return []
        conn = self._conn()
        with self._lock:
            self._catch_up(conn)
            scores = self._bm25(conn, query)
            if scores is None:
                return []
            scores = np.where(self._mask(filters) & (scores > 0), scores, -np.inf)
            return self._top(conn, scores, k, "keyword")

    def keyword_scores(self, query: str, chunk_ids: Sequence[str]) -> list[float]:
        """The BM25 score of each of ``chunk_ids`` for ``query`` (0 for no match or an unknown id)."""
        conn = self._conn()
        with self._lock:
            self._catch_up(conn)
            scores = self._bm25(conn, query)
            if scores is None:
                return [0.0] * len(chunk_ids)
            return [0.0 if p is None else float(scores[p]) for p in self._positions(conn, chunk_ids)]

    def vectors(self, chunk_ids: Sequence[str]) -> Matrix:
        """The stored vectors of ``chunk_ids`` (one row each, in order; zeros for an unknown id)."""
        conn = self._conn()
        with self._lock:
            self._catch_up(conn)
            out = np.zeros((len(chunk_ids), self._matrix.shape[1]), dtype=np.float32)
            for i, pos in enumerate(self._positions(conn, chunk_ids)):
                if pos is not None:
                    out[i] = self._matrix[pos]
            return out

    def count(self) -> int:
        conn = self._conn()
        with self._lock:
            self._catch_up(conn)
            return int(np.count_nonzero(self._rows[: self._n] >= 0))

    def chunks(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        """ChunkLookup: the stored chunks among ``chunk_ids``, in the order given (unknown ids skipped)."""
        conn = self._conn()
        with self._lock:
            self._catch_up(conn)
            live = [c for c, pos in zip(chunk_ids, self._positions(conn, chunk_ids), strict=True) if pos is not None]
            rows = [self._row_of[c] for c in live]
            found = self._chunks(conn, rows)
            return [found[r] for r in rows if r in found]

    def doc_chunk_ids(self, doc_id: str) -> list[str]:
        return [
            r[0]
            for r in self._conn().execute(
                "SELECT id FROM chunks WHERE doc_id = ? ORDER BY ordinal", (doc_id,)
            )
        ]
