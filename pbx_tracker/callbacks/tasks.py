"""Callback tasks in the database: what finished calls do to them, and what managers do.

Every function runs in the caller's transaction (`async with engine.begin()
as conn`) and never commits.  Times are timezone-aware; the caller passes
them (`now`, `at`), so a controllable clock drives everything.

Events of a call carry the call's own time (a missed call: when it started;
a resolving call: when it was answered; an attempt: when it was placed);
the task row keeps the times the reports need for callback speed.

Two daemons sharing PostgreSQL cannot open two tasks for one customer: a
partial unique index allows one open task per customer, and the daemon that
loses the race joins the winner's task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Row,
    Table,
    case,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.callbacks.policy import (
    Attempt,
    EventKind,
    Join,
    Nothing,
    Open,
    Resolution,
    Resolve,
    TaskStatus,
    customer_of,
    decide,
)
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.calls.records import CallRecord, format_time
from pbx_tracker.store.engine import dialect_insert
from pbx_tracker.store.models import (
    OPEN_CUSTOMER_TASK,
    CallbackEventRow,
    CallbackTaskCallRow,
    CallbackTaskRow,
    CallRow,
    UTCDateTime,
)

__all__ = [
    "CallbackTask",
    "ChangeKind",
    "TaskChange",
    "TaskError",
    "TaskEvent",
    "apply_call",
    "assign_task",
    "close_task",
    "get_task",
    "list_tasks",
    "open_task_for",
    "record_notify_failure",
    "record_reminder",
    "record_ringme_attempt",
    "snooze_task",
    "task_events",
]

tasks_table = cast(Table, CallbackTaskRow.__table__)
task_calls_table = cast(Table, CallbackTaskCallRow.__table__)
events_table = cast(Table, CallbackEventRow.__table__)
_calls = cast(Table, CallRow.__table__)

ChangeKind = Literal["opened", "joined", "resolved", "attempt"]
_RACE_ROUNDS = 3  # a lost race is decided again on what the winner wrote


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


# -- finished calls -----------------------------------------------------------


async def apply_call(
    conn: AsyncConnection, record: CallRecord, settings: CallbackSettings, *, now: datetime
) -> TaskChange | None:
    """Open, join, resolve or attempt a task for a finished, stored call; None if no change.

    A missed call must be saved first (`store.calls.save_call`): the task links
    to its row.  Applying the same missed call twice changes nothing the second time.
    """
    customer = customer_of(record)
    for _ in range(_RACE_ROUNDS):
        task = await open_task_for(conn, customer) if customer else None
        decision = decide(record, task, settings)
        if isinstance(decision, Nothing):
            return None
        if isinstance(decision, Open | Join):
            call_id = await _missed_call_id(conn, record)
            if await _is_linked(conn, call_id):
                return None
            change = await _missed(conn, record, decision, call_id, now)
        else:
            change = await _reached(conn, decision, now)
        if change is not None:
            return change
    raise TaskError(f"call {record.linkedid}: its customer's task kept changing; try again")


async def _missed(
    conn: AsyncConnection, record: CallRecord, decision: Open | Join, call_id: int, now: datetime
) -> TaskChange | None:
    """The missed call written; None when another writer changed the task first."""
    if isinstance(decision, Join):
        return await _join(conn, record, decision, call_id, now)
    return await _open(conn, record, decision, call_id, now)


async def _reached(
    conn: AsyncConnection, decision: Resolve | Attempt, now: datetime
) -> TaskChange | None:
    """The callback call written; None when the task was closed meanwhile."""
    if isinstance(decision, Resolve):
        return await _resolve(conn, decision, now)
    return await _attempt(conn, decision, now)


async def _open(
    conn: AsyncConnection, record: CallRecord, decision: Open, call_id: int, now: datetime
) -> TaskChange | None:
    values = {
        "node": record.node,
        "customer": decision.customer,
        "dialable": decision.dialable,
        "status": TaskStatus.OPEN.value,
        "assignee": decision.assignee,
        "group_name": decision.group,
        "did": decision.did,
        "source": decision.source,
        "tries": 1,
        "created_at": now,
        "first_missed_at": record.started_at,
        "last_missed_at": record.started_at,
        "first_call_id": call_id,
        "reminders_sent": 0,
        "ringme_attempts": 0,
        "updated_at": now,
    }
    task_id = await _insert_open_task(conn, values)
    if task_id is None:  # another daemon opened the customer's task first
        return None
    await _link(conn, task_id, call_id)
    detail = {"call": record.linkedid, "assignee": decision.assignee, "group": decision.group}
    await _add_event(conn, task_id, record.started_at, EventKind.OPENED, detail)
    return TaskChange("opened", await _existing_task(conn, task_id))


async def _insert_open_task(conn: AsyncConnection, values: dict[str, Any]) -> int | None:
    """The new task's id; None when the customer has an open task already."""
    c = tasks_table.c
    statement = (
        dialect_insert(conn)(tasks_table)
        .values(values)
        .on_conflict_do_nothing(
            index_elements=[c.customer],
            index_where=text(OPEN_CUSTOMER_TASK),  # a literal: PostgreSQL must match the index
        )
        .returning(c.id)
    )
    new_id = (await conn.execute(statement)).scalar_one_or_none()
    return None if new_id is None else int(new_id)


async def _join(
    conn: AsyncConnection, record: CallRecord, decision: Join, call_id: int, now: datetime
) -> TaskChange | None:
    c = tasks_table.c
    changes = {
        "tries": c.tries + 1,
        "last_missed_at": _later(c.last_missed_at, record.started_at),
        "updated_at": now,
    }
    if not await _update_open(conn, decision.task_id, changes):
        return None
    await _link(conn, decision.task_id, call_id)
    await _add_event(conn, decision.task_id, record.started_at, EventKind.JOINED, _call(record))
    return TaskChange("joined", await _existing_task(conn, decision.task_id))


async def _resolve(conn: AsyncConnection, decision: Resolve, now: datetime) -> TaskChange | None:
    changes = {
        "status": TaskStatus.DONE.value,
        "resolution": decision.resolution.value,
        "resolved_by": decision.by,
        "resolved_at": decision.at,
        "resolved_call": decision.call,
        "updated_at": now,
    }
    if not await _update_open(conn, decision.task_id, changes):
        return None
    detail = {"resolution": decision.resolution.value, "by": decision.by, "call": decision.call}
    await _add_event(conn, decision.task_id, decision.at, EventKind.RESOLVED, detail)
    return TaskChange("resolved", await _existing_task(conn, decision.task_id))


async def _attempt(conn: AsyncConnection, decision: Attempt, now: datetime) -> TaskChange | None:
    c = tasks_table.c
    changes = {
        "first_attempt_at": func.coalesce(c.first_attempt_at, _time(decision.at)),
        "updated_at": now,
    }
    if not await _update_open(conn, decision.task_id, changes):
        return None
    detail = {"channel": "outbound", "manager": decision.manager, "call": decision.call}
    await _add_event(conn, decision.task_id, decision.at, EventKind.ATTEMPT, detail)
    return TaskChange("attempt", await _existing_task(conn, decision.task_id))


def _call(record: CallRecord) -> dict[str, Any]:
    reason = record.missed_reason.value if record.missed_reason else None
    return {"call": record.linkedid, "reason": reason}


async def _missed_call_id(conn: AsyncConnection, record: CallRecord) -> int:
    c = _calls.c
    query = select(c.id).where(c.node == record.node, c.linkedid == record.linkedid)
    call_id = (await conn.execute(query)).scalar_one_or_none()
    if call_id is None:
        raise TaskError(f"call {record.node}/{record.linkedid} is not stored: save it first")
    return int(call_id)


async def _is_linked(conn: AsyncConnection, call_id: int) -> bool:
    query = select(task_calls_table.c.task_id).where(task_calls_table.c.call_id == call_id)
    return (await conn.execute(query.limit(1))).first() is not None


async def _link(conn: AsyncConnection, task_id: int, call_id: int) -> None:
    await conn.execute(insert(task_calls_table).values(task_id=task_id, call_id=call_id))


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


# -- what managers do ------------------------------------------------------------


async def close_task(
    conn: AsyncConnection, task_id: int, *, by: str, now: datetime
) -> CallbackTask:
    """Close the open task by hand (resolution closed_by_manager)."""
    await _open_task_or_error(conn, task_id, "close")
    changes = {
        "status": TaskStatus.DONE.value,
        "resolution": Resolution.CLOSED_BY_MANAGER.value,
        "resolved_by": by,
        "resolved_at": now,
        "updated_at": now,
    }
    await _command(conn, task_id, "close", changes)
    await _add_event(conn, task_id, now, EventKind.CLOSED, {"by": by})
    return await _existing_task(conn, task_id)


async def snooze_task(
    conn: AsyncConnection, task_id: int, *, until: datetime, by: str, now: datetime
) -> CallbackTask:
    """No reminders for the open task before `until` (later than `now`)."""
    if until <= now:
        raise TaskError(f"cannot snooze task {task_id}: {format_time(until)} is not later than now")
    await _open_task_or_error(conn, task_id, "snooze")
    await _command(conn, task_id, "snooze", {"snoozed_until": until, "updated_at": now})
    detail = {"by": by, "until": format_time(until)}
    await _add_event(conn, task_id, now, EventKind.SNOOZED, detail)
    return await _existing_task(conn, task_id)


async def assign_task(
    conn: AsyncConnection, task_id: int, *, extension: str, by: str, now: datetime
) -> CallbackTask:
    """Give the open task to the manager with `extension`."""
    task = await _open_task_or_error(conn, task_id, "assign")
    await _command(conn, task_id, "assign", {"assignee": extension, "updated_at": now})
    detail = {"by": by, "from": task.assignee, "to": extension}
    await _add_event(conn, task_id, now, EventKind.ASSIGNED, detail)
    return await _existing_task(conn, task_id)


async def _open_task_or_error(conn: AsyncConnection, task_id: int, action: str) -> CallbackTask:
    task = await get_task(conn, task_id)
    if task is None:
        raise TaskError(f"cannot {action} task {task_id}: no such task")
    if not task.is_open:
        raise TaskError(f"cannot {action} task {task_id}: it is done ({task.resolution})")
    return task


async def _command(
    conn: AsyncConnection, task_id: int, action: str, changes: dict[str, Any]
) -> None:
    if not await _update_open(conn, task_id, changes):  # closed by someone else meanwhile
        raise TaskError(f"cannot {action} task {task_id}: it was just closed")


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
        changes = {"escalated_at": func.coalesce(c.escalated_at, _time(at))}
    else:
        count = (
            c.reminders_sent + 1
            if covers is None
            else case((c.reminders_sent > covers, c.reminders_sent), else_=covers)
        )
        changes = {"reminders_sent": count, "last_reminder_at": at}
    await _update_existing(conn, task_id, changes)
    kind = EventKind.ESCALATED if escalation else EventKind.REMINDED
    await _add_event(conn, task_id, at, kind, {"channels": list(channels)})
    return await _existing_task(conn, task_id)


async def record_notify_failure(
    conn: AsyncConnection, task_id: int, *, at: datetime, channel: str, reason: str
) -> None:
    """A channel failed to deliver a reminder (the notifier retries on its own)."""
    await _existing_task(conn, task_id)
    detail = {"channel": channel, "reason": reason}
    await _add_event(conn, task_id, at, EventKind.NOTIFY_FAILED, detail)


async def record_ringme_attempt(
    conn: AsyncConnection, task_id: int, *, at: datetime, manager: str
) -> CallbackTask:
    """A ring-me call for the task was originated at `at`, ringing `manager` first."""
    task = await _existing_task(conn, task_id)
    if not task.dialable:
        raise TaskError(f"task {task_id}: the customer's number cannot be dialled")
    c = tasks_table.c
    changes = {
        "ringme_attempts": c.ringme_attempts + 1,
        "first_attempt_at": func.coalesce(c.first_attempt_at, _time(at)),
    }
    await _update_existing(conn, task_id, changes)
    detail = {"channel": "ring_me", "manager": manager}
    await _add_event(conn, task_id, at, EventKind.ATTEMPT, detail)
    return await _existing_task(conn, task_id)


# -- rows --------------------------------------------------------------------------


async def _update_open(conn: AsyncConnection, task_id: int, changes: dict[str, Any]) -> bool:
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


async def _existing_task(conn: AsyncConnection, task_id: int) -> CallbackTask:
    task = await get_task(conn, task_id)
    if task is None:
        raise TaskError(f"no callback task {task_id}")
    return task


async def _add_event(
    conn: AsyncConnection, task_id: int, at: datetime, kind: EventKind, detail: dict[str, Any]
) -> None:
    values = {"task_id": task_id, "at": at, "kind": kind.value, "detail": detail}
    await conn.execute(insert(events_table).values(values))


def _time(moment: datetime) -> BindParameter[datetime]:
    """A time as a bound value stored like the columns (UTC, also on SQLite)."""
    return literal(moment, UTCDateTime())


def _later(column: ColumnElement[datetime], moment: datetime) -> ColumnElement[datetime]:
    """The later of a time column and `moment`, on both engines."""
    return case((column < _time(moment), _time(moment)), else_=column)


def _task_from_row(row: Row[Any]) -> CallbackTask:
    fields = dict(row._mapping)
    fields["status"] = TaskStatus(row.status)
    fields["resolution"] = Resolution(row.resolution) if row.resolution else None
    return CallbackTask(**fields)
