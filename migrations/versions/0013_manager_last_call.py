"""Indexes that tell when each manager's last conversation ended

At start the routing board reads back each manager's last call end (longest
idle, wrap-up): the latest ``ended_at`` of the answered calls they answered,
were transferred to, or placed (``pbx_tracker/store/last_calls.py``).  Without
these indexes that read was a scan of a year's calls; with them it is one
backward step per manager and column.  Partial (answered calls only; transfers
only for ``transferred_to``), on both engines.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANSWERED = "status = 'answered'"
TRANSFERRED = "status = 'answered' AND transferred_to IS NOT NULL"
INDEXES = [
    ("calls", "answered_by", ANSWERED),
    ("calls", "transferred_to", TRANSFERRED),
    ("outbound_calls", "manager", ANSWERED),
]


def upgrade() -> None:
    for table, column, where in INDEXES:
        op.create_index(
            op.f(f"ix_{table}_{column}_ended_at"),
            table,
            [column, "ended_at"],
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )


def downgrade() -> None:
    for table, column, _ in reversed(INDEXES):
        op.drop_index(op.f(f"ix_{table}_{column}_ended_at"), table_name=table)
