"""Callback tasks in the database: the rows, reading them, and what the reminders did.

Every function runs in the caller's transaction (`async with engine.begin()
as conn`) and never commits.  Times are timezone-aware; the caller passes
them (`now`, `at`), so a controllable clock drives everything.  What a
finished call does to a task is `finished_calls`, what managers do
`task_actions`; both write through the row helpers at the end of this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import BindParameter, Row, Table, case, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.callbacks.policy import EventKind, Resolution, TaskStatus
from pbx_tracker.store.models import (
    CallbackEventRow,
    CallbackTaskCallRow,
    CallbackTaskRow,
    UTCDateTime,
)

__all__ = [
    "CallbackTask",
    "ChangeKind",
    "TaskChange",
    "TaskError",
    "TaskEvent",
    "add_event",
    "count_open_tasks",
    "existing_task",
    "get_task",
    "list_tasks",
    "open_task_for",
    "record_notify_failure",
    "record_reminder",
    "record_ringme_attempt",
    "stored_time",
    "task_events",
    "update_open",
]

tasks_table = cast(Table, CallbackTaskRow.__table__)
task_calls_table = cast(Table, CallbackTaskCallRow.__table__)
events_table = cast(Table, CallbackEventRow.__table__)

ChangeKind = Literal["opened", "joined", "resolved", "attempt"]


class TaskError(Exception):
    """A task command that cannot be carried out; the message is for the user."""


@dataclass(frozen=True, slots=True)
class CallbackTask:
    """One row of callback_tasks."""

    id: int
    node: str
    customer: str | None
    dialable: bool
    status: TaskStatus
    assignee: str | None
    group_name: str | None
    did: str | None
    source: str | None
    tries: int
    created_at: datetime
    first_missed_at: datetime
    last_missed_at: datetime
    reminders_sent: int
    last_reminder_at: datetime | None
    escalated_at: datetime | None
    snoozed_until: datetime | None
    first_attempt_at: datetime | None
    ringme_attempts: int
    resolved_at: datetime | None
    resolution: Resolution | None
    resolved_by: str | None
    resolved_call: str | None
    updated_at: datetime
    first_call_id: int | None = None  # the call that opened it

    @property
    def is_open(self) -> bool:
        return self.status is TaskStatus.OPEN


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One row of callback_events."""

    id: int
    task_id: int
    at: datetime
    kind: EventKind
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskChange:
    """What a finished call did: which task, how, and the task afterwards."""

    kind: ChangeKind
    task: CallbackTask

    @property
    def task_id(self) -> int:
        return self.task.id


# -- reading -------------------------------------------------------------------


async def get_task(conn: AsyncConnection, task_id: int) -> CallbackTask | None:
    """The task with this id, or None."""
    query = select(tasks_table).where(tasks_table.c.id == task_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _task_from_row(row)


async def open_task_for(conn: AsyncConnection, customer: str) -> CallbackTask | None:
    """The open task of the customer (E.164), or None."""
    c = tasks_table.c
    query = select(tasks_table).where(c.customer == customer, c.status == TaskStatus.OPEN.value)
    row = (await conn.execute(query)).first()
    return None if row is None else _task_from_row(row)


async def list_tasks(
    conn: AsyncConnection,
    *,
    status: str | None = "open",
    assignee: str | None = None,
    limit: int = 100,
) -> list[CallbackTask]:
    """Tasks newest first (created_at, then id); status None lists open and done."""
    c = tasks_table.c
    query = select(tasks_table).order_by(c.created_at.desc(), c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(c.status == TaskStatus(status).value)
    if assignee is not None:
        query = query.where(c.assignee == assignee)
    return [_task_from_row(row) for row in (await conn.execute(query)).all()]


async def count_open_tasks(conn: AsyncConnection) -> int:
    """How many callback tasks are open (for monitoring)."""
    query = select(func.count()).select_from(tasks_table)
    query = query.where(tasks_table.c.status == TaskStatus.OPEN.value)
    return int((await conn.execute(query)).scalar_one())


async def task_events(conn: AsyncConnection, task_id: int) -> list[TaskEvent]:
    """The task's events in the order they were recorded."""
    e = events_table.c
    query = select(events_table).where(e.task_id == task_id).order_by(e.id)
    return [
        TaskEvent(row.id, row.task_id, row.at, EventKind(row.kind), dict(row.detail or {}))
        for row in (await conn.execute(query)).all()
    ]


# -- what the notifiers did ---------------------------------------------------------


async def record_reminder(
    conn: AsyncConnection,
    task_id: int,
    *,
    at: datetime,
    channels: Sequence[str],
    escalation: bool = False,
    covers: int | None = None,
) -> CallbackTask:
    """A reminder (or the escalation to the supervisor) went out at `at` through `channels`.

    A reminder counts as the scheduled reminders up to number `covers` (several
    that came due together are sent as one); without it, as the next one.  The
    escalation leaves the count alone.  Recorded even when the task was closed
    meanwhile: it was sent.
    """
    c = tasks_table.c
    changes: dict[str, Any]
    if escalation:
        changes = {"escalated_at": func.coalesce(c.escalated_at, stored_time(at))}
    else:
        count = (
            c.reminders_sent + 1
            if covers is None
            else case((c.reminders_sent > covers, c.reminders_sent), else_=covers)
        )
        changes = {"reminders_sent": count, "last_reminder_at": at}
    await _update_existing(conn, task_id, changes)
    kind = EventKind.ESCALATED if escalation else EventKind.REMINDED
    await add_event(conn, task_id, at, kind, {"channels": list(channels)})
    return await existing_task(conn, task_id)


async def record_notify_failure(
    conn: AsyncConnection, task_id: int, *, at: datetime, channel: str, reason: str
) -> None:
    """A channel failed to deliver a reminder (the notifier retries on its own)."""
    await existing_task(conn, task_id)
    detail = {"channel": channel, "reason": reason}
    await add_event(conn, task_id, at, EventKind.NOTIFY_FAILED, detail)


async def record_ringme_attempt(
    conn: AsyncConnection, task_id: int, *, at: datetime, manager: str
) -> CallbackTask:
    """A ring-me call for the task was originated at `at`, ringing `manager` first."""
    task = await existing_task(conn, task_id)
    if not task.dialable:
        raise TaskError(f"task {task_id}: the customer's number cannot be dialled")
    c = tasks_table.c
    changes = {
        "ringme_attempts": c.ringme_attempts + 1,
        "first_attempt_at": func.coalesce(c.first_attempt_at, stored_time(at)),
    }
    await _update_existing(conn, task_id, changes)
    detail = {"channel": "ring_me", "manager": manager}
    await add_event(conn, task_id, at, EventKind.ATTEMPT, detail)
    return await existing_task(conn, task_id)


# -- rows --------------------------------------------------------------------------


async def update_open(conn: AsyncConnection, task_id: int, changes: dict[str, Any]) -> bool:
    """Change the task if it is still open; False when it is not."""
    c = tasks_table.c
    statement = (
        update(tasks_table)
        .where(c.id == task_id, c.status == TaskStatus.OPEN.value)
        .values(changes)
        .returning(c.id)
    )
    return (await conn.execute(statement)).first() is not None


async def _update_existing(conn: AsyncConnection, task_id: int, changes: dict[str, Any]) -> None:
    c = tasks_table.c
    statement = update(tasks_table).where(c.id == task_id).values(changes).returning(c.id)
    if (await conn.execute(statement)).first() is None:
        raise TaskError(f"no callback task {task_id}")


async def existing_task(conn: AsyncConnection, task_id: int) -> CallbackTask:
    """The task with this id (`TaskError` when there is none)."""
    task = await get_task(conn, task_id)
    if task is None:
        raise TaskError(f"no callback task {task_id}")
    return task


async def add_event(
    conn: AsyncConnection, task_id: int, at: datetime, kind: EventKind, detail: dict[str, Any]
) -> None:
    """Add an event to the task's history."""
    values = {"task_id": task_id, "at": at, "kind": kind.value, "detail": detail}
    await conn.execute(insert(events_table).values(values))


def stored_time(moment: datetime) -> BindParameter[datetime]:
    """A time as a bound value stored like the columns (UTC, also on SQLite)."""
    return literal(moment, UTCDateTime())


def _task_from_row(row: Row[Any]) -> CallbackTask:
    fields = dict(row._mapping)
    fields["status"] = TaskStatus(row.status)
    fields["resolution"] = Resolution(row.resolution) if row.resolution else None
    return CallbackTask(**fields)
