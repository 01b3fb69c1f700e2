"""What a finished call does to its customer's callback task: open, join, resolve, attempt.

Every function runs in the caller's transaction (`async with engine.begin()
as conn`) and never commits; the caller passes the time (`now`).

Events of a call carry the call's own time (a missed call: when it started;
a resolving call: when it was answered; an attempt: when it was placed);
the task row keeps the times the reports need for callback speed.

Two daemons sharing PostgreSQL cannot open two tasks for one customer: a
partial unique index allows one open task per customer, and the daemon that
loses the race joins the winner's task.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, case, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.callbacks.policy import (
    Attempt,
    EventKind,
    Join,
    Nothing,
    Open,
    Resolve,
    TaskStatus,
    customer_of,
    decide,
)
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.callbacks.tasks import (
    TaskChange,
    TaskError,
    add_event,
    existing_task,
    open_task_for,
    stored_time,
    task_calls_table,
    tasks_table,
    update_open,
)
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.store.engine import dialect_insert
from pbx_tracker.store.models import OPEN_CUSTOMER_TASK, CallRow

__all__ = ["apply_call"]

_calls = cast(Table, CallRow.__table__)
_RACE_ROUNDS = 3  # a lost race is decided again on what the winner wrote


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
    await add_event(conn, task_id, record.started_at, EventKind.OPENED, detail)
    return TaskChange("opened", await existing_task(conn, task_id))


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
    if not await update_open(conn, decision.task_id, changes):
        return None
    await _link(conn, decision.task_id, call_id)
    await add_event(conn, decision.task_id, record.started_at, EventKind.JOINED, _call(record))
    return TaskChange("joined", await existing_task(conn, decision.task_id))


async def _resolve(conn: AsyncConnection, decision: Resolve, now: datetime) -> TaskChange | None:
    changes = {
        "status": TaskStatus.DONE.value,
        "resolution": decision.resolution.value,
        "resolved_by": decision.by,
        "resolved_at": decision.at,
        "resolved_call": decision.call,
        "updated_at": now,
    }
    if not await update_open(conn, decision.task_id, changes):
        return None
    detail = {"resolution": decision.resolution.value, "by": decision.by, "call": decision.call}
    await add_event(conn, decision.task_id, decision.at, EventKind.RESOLVED, detail)
    return TaskChange("resolved", await existing_task(conn, decision.task_id))


async def _attempt(conn: AsyncConnection, decision: Attempt, now: datetime) -> TaskChange | None:
    c = tasks_table.c
    changes = {
        "first_attempt_at": func.coalesce(c.first_attempt_at, stored_time(decision.at)),
        "updated_at": now,
    }
    if not await update_open(conn, decision.task_id, changes):
        return None
    detail = {"channel": "outbound", "manager": decision.manager, "call": decision.call}
    await add_event(conn, decision.task_id, decision.at, EventKind.ATTEMPT, detail)
    return TaskChange("attempt", await existing_task(conn, decision.task_id))


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


def _later(column: ColumnElement[datetime], moment: datetime) -> ColumnElement[datetime]:
    """The later of a time column and `moment`, on both engines."""
    return case((column < stored_time(moment), stored_time(moment)), else_=column)
