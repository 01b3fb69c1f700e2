"""web_sessions, login_failures: sign-ins and the login brake shared by every daemon

Both were kept in one daemon's memory: a restart signed everyone out, and a
second daemon on the same database knew no one.

- ``web_sessions``: one row per signed-in browser, keyed by the SHA-256 of the
  session cookie (never the cookie itself): the user's name, the stamp of the
  password they signed in with, the CSRF token, a message for the next page,
  when it was made and last used;
- ``login_failures``: per client, failed sign-ins in a row, the last one and
  until when the client must wait.

Nothing to fill: after the upgrade everyone signs in once more.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("stamp", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("flash", sa.String(length=512), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("last_used", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_web_sessions")),
    )
    op.create_index(op.f("ix_web_sessions_user_name"), "web_sessions", ["user_name"])
    op.create_index(op.f("ix_web_sessions_last_used"), "web_sessions", ["last_used"])
    op.create_table(
        "login_failures",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", UTC_TIME, nullable=False),
        sa.Column("locked_until", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("client", name=op.f("pk_login_failures")),
    )
    op.create_index(op.f("ix_login_failures_last_failed_at"), "login_failures", ["last_failed_at"])


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_table("web_sessions")
