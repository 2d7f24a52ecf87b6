"""Reviews of declined and down-voted answers: the passages that should have been found.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("answer_id", sa.String(64), sa.ForeignKey("answers.id"), primary_key=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("passages", sa.Text, nullable=False),
        sa.Column("reviewer", sa.String(256), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_reviews_reviewed_at", "reviews", ["reviewed_at"])


def downgrade() -> None:
    op.drop_table("reviews")
