"""Sources kept in sync by the workers, and their per-document sync state.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("access", sa.Text, nullable=False),
        sa.Column("interval_s", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False, server_default="idle"),
        sa.Column("run_id", sa.String(64)),
        sa.Column("last_sync_at", sa.DateTime(timezone=True)),
        sa.Column("next_due_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("last_summary", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sources_next_due_at", "sources", ["next_due_at"])
    op.create_table(
        "source_documents",
        sa.Column(
            "source_id", sa.String(32), sa.ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("external_id", sa.String(1024), primary_key=True),
        sa.Column("doc_ids", sa.Text, nullable=False),
        sa.Column("marker", sa.String(256)),
        sa.Column("embedder", sa.String(256), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("source_documents")
    op.drop_table("sources")
