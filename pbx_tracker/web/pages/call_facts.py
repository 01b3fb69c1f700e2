"""What the call card reads: one call, the phones that rang for it, its callback task with
that task's history, and the caller's other calls.  Every read is one indexed query
(calls.id, ring_attempts.call_id, callback_task_calls.call_id, callback_events.task_id,
calls.caller + started_at)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.callbacks import tasks
from pbx_tracker.store.models import CallbackTaskCallRow, CallRow, RingAttemptRow

__all__ = [
    "MAX_CALL_ID",
    "OTHER_CALLS",
    "CallFacts",
    "OpeningCall",
    "call_facts",
    "call_id_of",
    "opening_calls",
    "other_calls",
    "ring_attempts",
    "task_of_call",
]

calls_table = cast(Table, CallRow.__table__)
attempts_table = cast(Table, RingAttemptRow.__table__)
task_calls_table = cast(Table, CallbackTaskCallRow.__table__)

OTHER_CALLS = 20  # the caller's other calls the card lists
MAX_CALL_ID = 2**31 - 1  # calls.id is a 32-bit integer on PostgreSQL


def call_id_of(text: str) -> int | None:
    """A call's id as a page's address gives it (``/calls/12``): ASCII digits of an id the
    database can hold; None for anything else (a word, "²", an id too big for the column)."""
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_CALL_ID))):
        return None
    number = int(text)
    return number if number <= MAX_CALL_ID else None


@dataclass(frozen=True, slots=True)
class OpeningCall:
    """What the callbacks list shows of the call that opened a task."""

    recorded: bool
    caller_name: str | None


@dataclass(frozen=True, slots=True)
class CallFacts:
    """Everything the card shows of one call, as stored."""

    call: Row[Any]
    attempts: list[Row[Any]]
    task: tasks.CallbackTask | None
    events: list[tasks.TaskEvent]
    others: list[Any]


async def call_facts(conn: AsyncConnection, call_id: int) -> CallFacts | None:
    """The call with this id and what belongs to it; None when there is no such call."""
    if not 0 < call_id <= MAX_CALL_ID:
        return None
    call = (await conn.execute(select(calls_table).where(calls_table.c.id == call_id))).first()
    if call is None:
        return None
    task = await task_of_call(conn, call_id)
    events = await tasks.task_events(conn, task.id) if task is not None else []
    others = await other_calls(conn, call.caller, call_id) if call.caller else []
    return CallFacts(call, await ring_attempts(conn, call_id), task, events, others)


async def ring_attempts(conn: AsyncConnection, call_id: int) -> list[Row[Any]]:
    """The phones that rang for the call, in ringing order."""
    a = attempts_table.c
    query = select(attempts_table).where(a.call_id == call_id).order_by(a.rang_at, a.id)
    return list((await conn.execute(query)).all())


async def task_of_call(conn: AsyncConnection, call_id: int) -> tasks.CallbackTask | None:
    """The callback task the call opened or joined, or None."""
    query = select(task_calls_table.c.task_id).where(task_calls_table.c.call_id == call_id)
    task_id = (await conn.execute(query.limit(1))).scalar_one_or_none()
    return None if task_id is None else await tasks.get_task(conn, int(task_id))


async def other_calls(
    conn: AsyncConnection, caller: str, call_id: int, limit: int = OTHER_CALLS
) -> list[Any]:
    """The caller's other calls (same number), newest first."""
    c = calls_table.c
    query = (
        select(
            c.id,
            c.started_at,
            c.did,
            c.status,
            c.missed_reason,
            c.answered_by,
            c.source,
            c.recording_path,
            c.spam,
        )
        .where(c.caller == caller, c.id != call_id)
        .order_by(c.started_at.desc(), c.id.desc())
        .limit(limit)
    )
    return list((await conn.execute(query)).all())


async def opening_calls(conn: AsyncConnection, call_ids: Iterable[int]) -> dict[int, OpeningCall]:
    """Of these calls (those that opened callback tasks): which have a recording, and the
    caller's name (CallerIDName) each gave."""
    wanted = sorted(set(call_ids))
    if not wanted:
        return {}
    c = calls_table.c
    query = select(c.id, c.recording_path.is_not(None), c.caller_name).where(c.id.in_(wanted))
    return {
        int(found): OpeningCall(bool(recorded), name)
        for found, recorded, name in (await conn.execute(query)).all()
    }
