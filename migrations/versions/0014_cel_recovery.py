"""Calls recovered from Asterisk's CEL log, and where the reading of that log stands

- ``calls.recovered_from`` / ``outbound_calls.recovered_from``: ``cel`` for a call
  rebuilt from Asterisk's own event log (it happened while pbx-tracker did not
  listen), NULL for a call heard live;
- ``cel_positions``: per node and log (the file, or ``table:<name>`` for
  cel_pgsql's table), where the next read starts: the file's identity
  (device:inode), a fingerprint of its first line and the byte offset (or the
  table's last id).  Nothing to fill for the rows stored before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("calls", "outbound_calls"):
        op.add_column(table, sa.Column("recovered_from", sa.String(length=16), nullable=True))
    op.create_table(
        "cel_positions",
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("identity", sa.String(length=64), nullable=True),
        sa.Column("fingerprint", sa.String(length=32), nullable=True),
        sa.Column("byte_offset", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node", "source", name=op.f("pk_cel_positions")),
    )


def downgrade() -> None:
    op.drop_table("cel_positions")
    for table in ("outbound_calls", "calls"):
        op.drop_column(table, "recovered_from")
