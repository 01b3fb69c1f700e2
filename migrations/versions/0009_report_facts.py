"""Two stored facts the reports read instead of joining for them

- ``callback_tasks.first_call_id``: the call that opened the task (the lowest
  call id linked to it), so a report groups callback tasks by their first
  call's source or day without aggregating ``callback_task_calls``;
- ``calls.answer_seconds``: how long the answering manager's phone rang
  before they took the call (``answered_at`` minus that leg's ``rang_at``), so
  the manager view's answer speed needs no join of ring attempts.

Both are filled for the stored rows (on a million calls, some tens of
seconds).  Plain ``add_column``: on SQLite a batch rebuild of `calls` would
drop the previous_call_at triggers of 0006.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIRST_CALL = (
    "UPDATE callback_tasks SET first_call_id = ("
    "SELECT min(l.call_id) FROM callback_task_calls l WHERE l.task_id = callback_tasks.id)"
)
ANSWER_LEG = (
    "SELECT {seconds} FROM ring_attempts a WHERE a.call_id = calls.id"
    " AND a.outcome = 'answer' AND a.manager = calls.answered_by ORDER BY a.id LIMIT 1"
)
SECONDS = {
    "postgresql": "extract(epoch FROM calls.answered_at - a.rang_at)",
    "sqlite": "(julianday(calls.answered_at) - julianday(a.rang_at)) * 86400.0",
}


def upgrade() -> None:
    op.add_column("callback_tasks", sa.Column("first_call_id", sa.Integer(), nullable=True))
    op.add_column("calls", sa.Column("answer_seconds", sa.Float(), nullable=True))
    op.execute(FIRST_CALL)
    leg = ANSWER_LEG.format(seconds=SECONDS[op.get_bind().dialect.name])
    op.execute(f"UPDATE calls SET answer_seconds = ({leg}) WHERE answered_by IS NOT NULL")


def downgrade() -> None:
    op.drop_column("calls", "answer_seconds")
    op.drop_column("callback_tasks", "first_call_id")
