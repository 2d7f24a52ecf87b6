"""Answers with their traces, and feedback votes.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "answers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("asker", sa.String(256), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("conversation", sa.String(256), nullable=False),
        sa.Column("thread", sa.String(256), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_answers_created_at", "answers", ["created_at"])
    op.create_index("ix_answers_decision", "answers", ["decision"])
    op.create_table(
        "feedback",
        sa.Column("answer_id", sa.String(64), sa.ForeignKey("answers.id"), primary_key=True),
        sa.Column("user", sa.String(256), primary_key=True),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("vote", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("answers")
