"""Admin confirmations of web votes, and revoked admin sessions (issue 14).

``vote_confirmations``: an admin confirmed, in the review queue, the votes web visitors cast on
an answer; from then on they count for every platform, not just the web chat.
``revoked_sessions``: admin sessions ended by signing out, until their cookie would expire anyway.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vote_confirmations",
        sa.Column("answer_id", sa.String(64), sa.ForeignKey("answers.id"), primary_key=True),
        sa.Column("confirmed_by", sa.String(256), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "revoked_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_revoked_sessions_expires_at", "revoked_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("revoked_sessions")
    op.drop_table("vote_confirmations")
