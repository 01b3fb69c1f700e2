"""Call records for storage tests: a plain missed call to build, a connection of its own to
a database, and what a database holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection
from waiting import first_found

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.tasks import CallbackTask
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction, MissedReason
from pbx_tracker.store.calls import list_calls, save_call
from pbx_tracker.store.engine import make_async_engine


def missed_call(linkedid: str, started_at: datetime, caller: str | None) -> CallRecord:
    """An inbound call on +74951234567 that rang 20 s and nobody answered."""
    return CallRecord(
        linkedid=linkedid,
        node="pbx1",
        direction=Direction.INBOUND,
        did="+74951234567",
        caller=caller,
        caller_name=None,
        status=CallStatus.MISSED,
        missed_reason=MissedReason.NO_ANSWER,
        answered_by=None,
        transferred_to=None,
        started_at=started_at,
        answered_at=None,
        ended_at=started_at + timedelta(seconds=20),
        ring_seconds=20,
        talk_seconds=0,
        recording_path=None,
    )


@asynccontextmanager
async def connected(url: str, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
    """A connection to the database at ``url`` for the block (in one transaction, committed
    at the block's end, when ``write``), on an engine of its own disposed afterwards, so the
    test leaves no connection open."""
    engine = make_async_engine(url)
    try:
        async with engine.begin() if write else engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def saved(url: str, *records: CallRecord) -> None:
    """``records`` stored in the database at ``url`` in order, in one transaction."""
    async with connected(url, write=True) as conn:
        for record in records:
            await save_call(conn, record)


async def stored_calls(url: str) -> list[CallRecord]:
    """Every inbound call record in the database at `url`, oldest first."""
    async with connected(url) as conn:
        return await list_calls(conn)


async def stored_tasks(url: str, status: str | None = None) -> list[CallbackTask]:
    """The callback tasks in the database at `url` (of ``status``; None: all)."""
    async with connected(url) as conn:
        return await tasks.list_tasks(conn, status=status, limit=10_000)


async def tasks_once_taken(
    url: str,
    handled: asyncio.Event,
    wait: float = 15.0,
    *,
    holding: Callable[[list[CallbackTask]], object] = bool,
) -> list[CallbackTask]:
    """The stored callback tasks once there are some (or once ``holding(tasks)`` is true),
    re-read each time the callbacks service sets ``handled`` (cleared before each look, so
    no wake-up is lost)."""

    async def taken() -> list[CallbackTask] | None:
        found = await stored_tasks(url)
        return found if holding(found) else None

    return await first_found(taken, handled, wait)
