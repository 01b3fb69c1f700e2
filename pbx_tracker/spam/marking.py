"""A manager marks a call as spam, or undoes the marking; and the spam calls of a period.

Every function runs in the caller's transaction and never commits; times are
passed in.  The call is named by its ``calls.id`` (the calls page shows it).

- `mark_spam`: the call is spam (reason ``manual``) from now on; an open
  callback task whose calls are now all spam is closed by that manager
  (``closed_by_manager``): nobody needs to call a robot back.
- `undo_spam`: the call is no spam any more; a missed call then goes through
  the callback policy as the daemon would have taken it in (`finished_calls.apply_call`):
  it opens or joins the customer's callback task, so the customer is called
  back after all (the running daemon schedules the reminders at its next sweep,
  and gives a task that has no assignee to a free manager).

Either way ``spam_changed_by`` and ``spam_changed_at`` keep who decided and
when, saving the call again (a replay) keeps that decision, and the CRM gets
the call again as a ``call.updated`` event (`pbx_tracker.crm.outbox`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.finished_calls import apply_call
from pbx_tracker.callbacks.policy import TaskStatus
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.callbacks.task_actions import close_task
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction, SpamReason
from pbx_tracker.crm.outbox import enqueue_calls
from pbx_tracker.store.calls import get_call
from pbx_tracker.store.models import CallbackTaskCallRow, CallbackTaskRow, CallRow

__all__ = ["SpamChange", "SpamError", "list_spam", "mark_spam", "undo_spam"]

calls_table = cast(Table, CallRow.__table__)
task_calls_table = cast(Table, CallbackTaskCallRow.__table__)
tasks_table = cast(Table, CallbackTaskRow.__table__)


class SpamError(Exception):
    """The change cannot be made; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class SpamChange:
    """What marking or unmarking did: the call before and after, and to its tasks."""

    call_id: int
    call: CallRecord
    was: SpamReason | None
    closed_tasks: tuple[int, ...] = ()
    task: tasks.TaskChange | None = None


async def mark_spam(
    conn: AsyncConnection,
    call_id: int,
    *,
    by: str,
    now: datetime,
    crm_targets: Sequence[str] = (),
) -> SpamChange:
    """Mark the call as spam by hand; close the open tasks left with only spam calls.
    ``crm_targets``: the CRMs told of the change (`CrmSettings.targets`)."""
    before = await _inbound_call(conn, call_id, "mark")
    if before.spam is not None:
        raise SpamError(f"call {call_id} is spam already ({before.spam.value})")
    await _set(conn, call_id, SpamReason.MANUAL, by=by, now=now, was=before.spam)
    closed = []
    for task_id in await _open_tasks_of(conn, call_id):
        if await _only_spam_calls(conn, task_id):
            await close_task(conn, task_id, by=by, now=now)
            closed.append(task_id)
    after = before.replace(spam=SpamReason.MANUAL)
    await enqueue_calls(conn, [(after, False)], now, decision="spam", targets=crm_targets)
    return SpamChange(call_id, after, before.spam, closed_tasks=tuple(closed))


async def undo_spam(
    conn: AsyncConnection,
    call_id: int,
    *,
    by: str,
    now: datetime,
    callbacks: CallbackSettings,
    crm_targets: Sequence[str] = (),
) -> SpamChange:
    """The call is no spam; a missed one opens or joins its customer's callback task."""
    before = await _inbound_call(conn, call_id, "unmark")
    if before.spam is None:
        raise SpamError(f"call {call_id} is not marked as spam")
    await _set(conn, call_id, None, by=by, now=now, was=before.spam)
    after = before.replace(spam=None)
    await enqueue_calls(conn, [(after, False)], now, decision="spam", targets=crm_targets)
    change = None
    if after.status is CallStatus.MISSED:
        try:
            change = await apply_call(conn, after, callbacks, now=now)
        except tasks.TaskError as error:
            raise SpamError(str(error)) from None
    return SpamChange(call_id, after, before.spam, task=change)


async def _inbound_call(conn: AsyncConnection, call_id: int, action: str) -> CallRecord:
    record = await get_call(conn, call_id)
    if record is None:
        raise SpamError(f"cannot {action} call {call_id}: no such call")
    if record.direction is not Direction.INBOUND:
        raise SpamError(f"cannot {action} call {call_id}: it is not an inbound call")
    return record


async def _set(
    conn: AsyncConnection,
    call_id: int,
    reason: SpamReason | None,
    *,
    by: str,
    now: datetime,
    was: SpamReason | None,
) -> None:
    """Store the new state, unless someone changed it meanwhile (then SpamError)."""
    c = calls_table.c
    statement = (
        update(calls_table)
        .where(c.id == call_id, c.spam == (was is not None))
        .values(
            spam=reason is not None,
            spam_reason=reason.value if reason else None,
            spam_changed_by=by,
            spam_changed_at=now,
        )
        .returning(c.id)
    )
    if (await conn.execute(statement)).first() is None:
        raise SpamError(f"call {call_id} was just changed by someone else; look again")


async def _open_tasks_of(conn: AsyncConnection, call_id: int) -> list[int]:
    link, t = task_calls_table.c, tasks_table.c
    query = (
        select(t.id)
        .join(task_calls_table, link.task_id == t.id)
        .where(link.call_id == call_id, t.status == TaskStatus.OPEN.value)
        .order_by(t.id)
    )
    return [int(task_id) for task_id in (await conn.execute(query)).scalars()]


async def _only_spam_calls(conn: AsyncConnection, task_id: int) -> bool:
    link, c = task_calls_table.c, calls_table.c
    query = (
        select(func.count())
        .select_from(task_calls_table.join(calls_table, link.call_id == c.id))
        .where(link.task_id == task_id, c.spam.is_(False))
    )
    return int((await conn.execute(query)).scalar_one()) == 0


@dataclass(frozen=True, slots=True)
class SpamCall:
    """One spam call of a period, as `list_spam` finds it."""

    id: int
    started_at: datetime
    caller: str | None
    did: str | None
    source: str | None
    status: str
    missed_reason: str | None
    reason: str
    changed_by: str | None
    changed_at: datetime | None


async def list_spam(
    conn: AsyncConnection, start: datetime, end: datetime, *, limit: int = 1000
) -> list[SpamCall]:
    """The calls that are spam now and started in [start, end), newest first."""
    c = calls_table.c
    query = (
        select(
            c.id,
            c.started_at,
            c.caller,
            c.did,
            c.source,
            c.status,
            c.missed_reason,
            c.spam_reason,
            c.spam_changed_by,
            c.spam_changed_at,
        )
        .where(and_(c.spam.is_(True), c.started_at >= start, c.started_at < end))
        .order_by(c.started_at.desc(), c.id.desc())
        .limit(limit)
    )
    return [_spam_call(row) for row in (await conn.execute(query)).all()]


def _spam_call(row: Any) -> SpamCall:
    return SpamCall(
        int(row.id),
        row.started_at,
        row.caller,
        row.did,
        row.source,
        row.status,
        row.missed_reason,
        row.spam_reason or SpamReason.MANUAL.value,
        row.spam_changed_by,
        row.spam_changed_at,
    )
