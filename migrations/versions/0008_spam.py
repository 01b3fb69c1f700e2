"""calls.spam: spam calls are kept but left out of leads and callbacks

``spam`` (false by default) with its ``spam_reason`` (blocked, hidden, repeat,
manual; NULL when not spam) and who changed it by hand last
(``spam_changed_by``, ``spam_changed_at``).  A partial index on the spam
calls' start lists them by period.

Plain ``add_column``: on SQLite a batch rebuild of `calls` would drop the
previous_call_at triggers of 0006.  SQLite (3.35+) drops the columns again
with plain ``ALTER TABLE … DROP COLUMN``, after the index.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SPAM = "spam"


def upgrade() -> None:
    op.add_column(
        "calls", sa.Column("spam", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("calls", sa.Column("spam_reason", sa.String(length=16), nullable=True))
    op.add_column("calls", sa.Column("spam_changed_by", sa.String(length=64), nullable=True))
    op.add_column("calls", sa.Column("spam_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        op.f("ix_calls_spam_started_at"),
        "calls",
        ["started_at"],
        sqlite_where=sa.text(SPAM),
        postgresql_where=sa.text(SPAM),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_calls_spam_started_at"), table_name="calls")
    for column in ("spam_changed_at", "spam_changed_by", "spam_reason", "spam"):
        op.drop_column("calls", column)
