"""The SQL schema (SQLAlchemy Core) and its Alembic migrations, shared by every SQL store.

SQLite in the data directory by default; PostgreSQL (or any SQLAlchemy URL) through
``SUPPORTBOT_DATABASE_URL``. ``migrate(engine)`` brings a database to the newest schema.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from bot.errors import ProviderUnavailable

metadata = sa.MetaData()

ingest_runs = sa.Table(
    "ingest_runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(512), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("summary", sa.Text),
    sa.Column("rolled_back", sa.Boolean, nullable=False, default=False),
)

doc_versions = sa.Table(
    "doc_versions",
    metadata,
    sa.Column("doc_id", sa.String(1024), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(512), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("embedder", sa.String(256), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("chunks", sa.Text, nullable=False),  # JSON list of chunks
    sa.Column("vectors", sa.LargeBinary, nullable=False),  # float32, row-major
    sa.Column("dimension", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("url", sa.Text, nullable=False, server_default=""),  # where it came from (migration 0006)
)

# Ids renamed by migration 0006 (document identity = source + full location) whose index
# entries still carry the old id; the Ingestor renames them in the index, then marks them done.
doc_id_renames = sa.Table(
    "doc_id_renames",
    metadata,
    sa.Column("old_id", sa.String(1024), primary_key=True),
    sa.Column("new_id", sa.String(1024), nullable=False),
    sa.Column("done", sa.Boolean, nullable=False, default=False),
)

MIGRATIONS = Path(__file__).parent / "migrations"
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def make_engine(url: str) -> sa.Engine:
    """An engine; SQLite gets WAL and a busy timeout so a worker and the web process share it."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def head_revision() -> str | None:
    """The newest migration's revision id, read from the version files without importing Alembic.

    The migrations form one line (each revises the one before), so the head is the revision no
    other file names as its ``down_revision``; None when that is not clear (then Alembic decides).
    """
    revisions, downs = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        rev = re.search(r'^revision\s*=\s*["\']([^"\']+)["\']', text, re.M)
        down = re.search(r'^down_revision\s*=\s*["\']([^"\']+)["\']', text, re.M)
        if rev:
            revisions.add(rev.group(1))
        if down:
            downs.add(down.group(1))
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: sa.Engine) -> bool:
    """Whether the database already has the newest schema (one query; Alembic not imported)."""
    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    except sa.exc.DBAPIError:  # no version table yet: a new database
        return False
    return list(rows) == [head]


def migrate(engine: sa.Engine) -> None:
    """Upgrade the database to the newest schema (Alembic ``upgrade head``), once per process.

    A database already at the newest revision is recognised with one query, without importing
    or running Alembic: a short command (``supportbot ask``) starts faster and the logs stay quiet.
    """
    key = str(engine.url)
    with _migrate_lock:
        if key in _migrated:
            return
        if _at_head(engine):
            _migrated.add(key)
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        # Alembic says "Context impl ..." and each step at INFO: worth seeing only when debugging.
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            logging.getLogger("alembic").setLevel(logging.WARNING)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        _migrated.add(key)

answers = sa.Table(
    "answers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("asker", sa.String(256), nullable=False),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("conversation", sa.String(256), nullable=False),
    sa.Column("thread", sa.String(256), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False, index=True),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON: question, citations, trace, note
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("answer_id", sa.String(64), sa.ForeignKey("answers.id"), primary_key=True),
    sa.Column("user", sa.String(256), primary_key=True),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("vote", sa.String(8), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# --- sources kept in sync by the workers (migration 0003) ---------------------------------------

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("options", sa.Text, nullable=False),  # JSON object of strings; never credentials
    sa.Column("access", sa.Text, nullable=False),  # comma-separated access groups
    sa.Column("interval_s", sa.Integer),  # NULL: synced on request only
    sa.Column("status", sa.String(16), nullable=False, default="idle"),
    sa.Column("run_id", sa.String(64)),  # the unfinished sync run: the checkpoint a crash resumes
    sa.Column("last_sync_at", sa.DateTime(timezone=True)),
    sa.Column("next_due_at", sa.DateTime(timezone=True), index=True),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
    sa.Column("last_summary", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

source_documents = sa.Table(
    "source_documents",
    metadata,
    sa.Column("source_id", sa.String(32), sa.ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("external_id", sa.String(1024), primary_key=True),
    sa.Column("doc_ids", sa.Text, nullable=False),  # JSON list of the document ids it produced
    sa.Column("marker", sa.String(256)),  # version / updated time / blob sha at the source
    sa.Column("embedder", sa.String(256), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# --- reviews of declined and down-voted answers, for the golden set (migration 0004) ------------

reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("answer_id", sa.String(64), sa.ForeignKey("answers.id"), primary_key=True),
    sa.Column("verdict", sa.String(16), nullable=False),  # "passages" | "unanswerable"
    sa.Column("passages", sa.Text, nullable=False),  # JSON list: chunk_id, doc_id, title, text
    sa.Column("reviewer", sa.String(256), nullable=False),
    sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

# --- admin confirmations of web votes, revoked admin sessions (migration 0005) ------------------

vote_confirmations = sa.Table(
    "vote_confirmations",
    metadata,
    sa.Column("answer_id", sa.String(64), sa.ForeignKey("answers.id"), primary_key=True),
    sa.Column("confirmed_by", sa.String(256), nullable=False),
    sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
)

revoked_sessions = sa.Table(
    "revoked_sessions",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

# --- verified answers: expert replies marked as the answer (migration 0007) ---------------------

verified_answers = sa.Table(
    "verified_answers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("paraphrases", sa.Text, nullable=False),  # JSON list
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("author", sa.String(256), nullable=False),
    sa.Column("author_name", sa.String(256), nullable=False),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("conversation", sa.String(512), nullable=False),
    sa.Column("thread", sa.String(256), nullable=False),
    sa.Column("message_id", sa.String(256), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("groups", sa.Text, nullable=False),  # JSON list of access groups
    sa.Column("answer_id", sa.String(64), nullable=False),  # the bot answer it answered
    sa.Column("marked_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    sa.Column("review_by", sa.DateTime(timezone=True)),
    sa.Column("removed", sa.Boolean, nullable=False, default=False),
)


class Database:
    """One database: its engine, made and migrated on first use, shared by every SQL store of a
    process (one connection pool, one migration check). No I/O in the constructor.

    ``engine`` raises ProviderUnavailable when the database cannot be reached.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: sa.Engine | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    engine = make_engine(self.url)
                    try:
                        migrate(engine)
                    except sa.exc.OperationalError as exc:
                        raise ProviderUnavailable(f"database unavailable: {type(exc.orig).__name__}") from None
                    self._engine = engine
        return self._engine


class SqlStore:
    """Base of the SQL stores: built from a URL (a database of its own) or a shared
    :class:`Database` (what the composition root passes)."""

    def __init__(self, db: str | Database) -> None:
        self.db = db if isinstance(db, Database) else Database(db)

    @property
    def engine(self) -> sa.Engine:
        """The engine (migrated on first use); ProviderUnavailable when the database is down."""
        return self.db.engine
