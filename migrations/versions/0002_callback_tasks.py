"""callback_tasks, callback_task_calls, callback_events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)
OPEN_CUSTOMER = "status = 'open' AND customer IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "callback_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("customer", sa.String(length=32), nullable=True),
        sa.Column("dialable", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=8), server_default="open", nullable=False),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("group_name", sa.String(length=64), nullable=True),
        sa.Column("did", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("tries", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("first_missed_at", UTC_TIME, nullable=False),
        sa.Column("last_missed_at", UTC_TIME, nullable=False),
        sa.Column("reminders_sent", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_reminder_at", UTC_TIME, nullable=True),
        sa.Column("escalated_at", UTC_TIME, nullable=True),
        sa.Column("snoozed_until", UTC_TIME, nullable=True),
        sa.Column("first_attempt_at", UTC_TIME, nullable=True),
        sa.Column("ringme_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("resolved_at", UTC_TIME, nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.Column("resolved_call", sa.String(length=64), nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'done')", name=op.f("ck_callback_tasks_status")
        ),
        sa.CheckConstraint(
            "resolution IN ('answered_inbound', 'called_back', 'closed_by_manager')",
            name=op.f("ck_callback_tasks_resolution"),
        ),
        sa.CheckConstraint(
            "(status = 'open' AND resolution IS NULL)"
            " OR (status = 'done' AND resolution IS NOT NULL)",
            name=op.f("ck_callback_tasks_resolved"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_tasks")),
    )
    op.create_index(
        op.f("uq_callback_tasks_open_customer"),
        "callback_tasks",
        ["customer"],
        unique=True,
        sqlite_where=sa.text(OPEN_CUSTOMER),
        postgresql_where=sa.text(OPEN_CUSTOMER),
    )
    op.create_index(
        op.f("ix_callback_tasks_status_assignee_created_at"),
        "callback_tasks",
        ["status", "assignee", "created_at"],
    )
    op.create_index(
        op.f("ix_callback_tasks_status_created_at"), "callback_tasks", ["status", "created_at"]
    )

    op.create_table(
        "callback_task_calls",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["callback_tasks.id"],
            name=op.f("fk_callback_task_calls_task_id_callback_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_callback_task_calls_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "call_id", name=op.f("pk_callback_task_calls")),
    )
    op.create_index(op.f("ix_callback_task_calls_call_id"), "callback_task_calls", ["call_id"])

    op.create_table(
        "callback_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["callback_tasks.id"],
            name=op.f("fk_callback_events_task_id_callback_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_events")),
    )
    op.create_index(op.f("ix_callback_events_task_id"), "callback_events", ["task_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_callback_events_task_id"), table_name="callback_events")
    op.drop_table("callback_events")
    op.drop_index(op.f("ix_callback_task_calls_call_id"), table_name="callback_task_calls")
    op.drop_table("callback_task_calls")
    op.drop_index(op.f("ix_callback_tasks_status_created_at"), table_name="callback_tasks")
    op.drop_index(
        op.f("ix_callback_tasks_status_assignee_created_at"), table_name="callback_tasks"
    )
    op.drop_index(op.f("uq_callback_tasks_open_customer"), table_name="callback_tasks")
    op.drop_table("callback_tasks")
