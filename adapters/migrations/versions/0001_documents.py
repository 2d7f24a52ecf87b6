"""Document versions and ingest runs.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("summary", sa.Text),
        sa.Column("rolled_back", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "doc_versions",
        sa.Column("doc_id", sa.String(1024), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("embedder", sa.String(256), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("chunks", sa.Text, nullable=False),
        sa.Column("vectors", sa.LargeBinary, nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_doc_versions_source", "doc_versions", ["source"])
    op.create_index("ix_doc_versions_run_id", "doc_versions", ["run_id"])


def downgrade() -> None:
    op.drop_table("doc_versions")
    op.drop_table("ingest_runs")
