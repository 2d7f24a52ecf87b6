"""Verified answers: expert replies marked as the answer in Slack or Teams (issue 17).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verified_answers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("paraphrases", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("author", sa.String(256), nullable=False),
        sa.Column("author_name", sa.String(256), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("conversation", sa.String(512), nullable=False),
        sa.Column("thread", sa.String(256), nullable=False),
        sa.Column("message_id", sa.String(256), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("groups", sa.Text, nullable=False),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("marked_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.Column("review_by", sa.DateTime(timezone=True)),
        sa.Column("removed", sa.Boolean, nullable=False),
    )
    op.create_index("ix_verified_answers_created_at", "verified_answers", ["created_at"])
    op.create_index("ix_answers_thread", "answers", ["platform", "conversation", "thread"])


def downgrade() -> None:
    op.drop_index("ix_answers_thread", "answers")
    op.drop_table("verified_answers")
