"""SQLite's FTS5 tokenizer (``porter unicode61 remove_diacritics 2``), used for the keyword index.

Run on a private in-memory table at write time (each chunk's term counts are stored, so a
process loads 100k chunks without re-tokenising) and on the query at search time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence


class Tokenizer:
    """SQLite FTS5's ``porter unicode61`` tokenizer on a private in-memory table (one per thread)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False)
            conn.executescript(
                "CREATE VIRTUAL TABLE t USING fts5(c, b, tokenize = 'porter unicode61 remove_diacritics 2');"
                "CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance');"
            )
            self._local.conn = conn
        return conn

    def count(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[Counter[str], Counter[str]]]:
        """Per (context, body) pair: the term counts of the context and of the body."""
        conn = self._conn()
        out: list[tuple[Counter[str], Counter[str]]] = [(Counter(), Counter()) for _ in pairs]
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT INTO t (rowid, c, b) VALUES (?,?,?)", ((i, c, b) for i, (c, b) in enumerate(pairs))
            )
            for term, doc, col in conn.execute("SELECT term, doc, col FROM v"):
                out[doc][0 if col == "c" else 1][term] += 1
        finally:
            conn.execute("ROLLBACK")
        return out

    def terms(self, text: str) -> list[str]:
        """The distinct terms of ``text``, in order of first appearance."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            conn.execute("INSERT INTO t (rowid, c, b) VALUES (0, '', ?)", (text,))
            found = conn.execute("SELECT term FROM v ORDER BY offset").fetchall()
        finally:
            conn.execute("ROLLBACK")
        return list(dict.fromkeys(r[0] for r in found))


TOKENIZER = Tokenizer()
