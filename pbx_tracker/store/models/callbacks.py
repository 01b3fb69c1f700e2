"""Callback tasks: the customers to call back, their missed calls and what happened
to each task."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from pbx_tracker.store.models.base import Base

OPEN_CUSTOMER_TASK = "status = 'open' AND customer IS NOT NULL"


class CallbackTaskRow(Base):
    """A customer to call back: opened by a missed call, joined by the next ones,
    done when the customer is reached or a manager closes it.

    At most one open task per customer (a partial unique index, so two daemons
    sharing PostgreSQL cannot open two); hidden callers (customer NULL) get a
    task per missed call.
    """

    __tablename__ = "callback_tasks"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'done')", name="status"),
        CheckConstraint(
            "resolution IN ('answered_inbound', 'called_back', 'closed_by_manager')",
            name="resolution",
        ),
        CheckConstraint(
            "(status = 'open' AND resolution IS NULL)"
            " OR (status = 'done' AND resolution IS NOT NULL)",
            name="resolved",
        ),
        Index(
            "uq_callback_tasks_open_customer",
            "customer",
            unique=True,
            sqlite_where=text(OPEN_CUSTOMER_TASK),
            postgresql_where=text(OPEN_CUSTOMER_TASK),
        ),
        Index("ix_callback_tasks_status_assignee_created_at", "status", "assignee", "created_at"),
        Index("ix_callback_tasks_status_created_at", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(64))
    customer: Mapped[str | None] = mapped_column(String(32))
    dialable: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(8), server_default="open")
    assignee: Mapped[str | None] = mapped_column(String(64))
    group_name: Mapped[str | None] = mapped_column(String(64))
    did: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(255))
    tries: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime]
    first_missed_at: Mapped[datetime]
    last_missed_at: Mapped[datetime]
    first_call_id: Mapped[int | None]  # the call that opened it (migration 0009)
    reminders_sent: Mapped[int] = mapped_column(Integer, server_default="0")
    last_reminder_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    snoozed_until: Mapped[datetime | None]
    first_attempt_at: Mapped[datetime | None]
    ringme_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(String(32))
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_call: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class CallbackTaskCallRow(Base):
    """A missed call of a callback task (the call that opened it and those that joined)."""

    __tablename__ = "callback_task_calls"
    __table_args__ = (Index("ix_callback_task_calls_call_id", "call_id"),)

    task_id: Mapped[int] = mapped_column(
        ForeignKey("callback_tasks.id", ondelete="CASCADE"), primary_key=True
    )
    call_id: Mapped[int] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )


class CallbackEventRow(Base):
    """What happened to a callback task, in order of id: the audit trail of callback speed."""

    __tablename__ = "callback_events"
    __table_args__ = (Index("ix_callback_events_task_id", "task_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("callback_tasks.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]]


# reports find the callback tasks of a period by their first missed call
Index("ix_callback_tasks_first_missed_at", CallbackTaskRow.first_missed_at)
