"""The SQL schema (SQLAlchemy Core) and its Alembic migrations, shared by every SQL store.

SQLite in the data directory by default; PostgreSQL (or any SQLAlchemy URL) through
``SUPPORTBOT_DATABASE_URL``. ``migrate(engine)`` brings a database to the newest schema.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

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


def migrate(engine: sa.Engine) -> None:
    """Upgrade the database to the newest schema (Alembic ``upgrade head``), once per process."""
    key = str(engine.url)
    with _migrate_lock:
        if key in _migrated:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
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

# --- verified answers: expert replies marked as the answer (migration 0005) ---------------------

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
