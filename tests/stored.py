"""Call records for storage tests: a plain missed call to build, and what a database holds."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from waiting import first_found

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.tasks import CallbackTask
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction, MissedReason
from pbx_tracker.store.calls import list_calls
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


async def stored_calls(url: str) -> list[CallRecord]:
    """Every inbound call record in the database at `url`, oldest first."""
    engine = make_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await list_calls(conn)
    finally:
        await engine.dispose()


async def stored_tasks(url: str, status: str | None = None) -> list[CallbackTask]:
    """The callback tasks in the database at `url` (of ``status``; None: all)."""
    engine = make_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await tasks.list_tasks(conn, status=status, limit=10_000)
    finally:
        await engine.dispose()


async def tasks_once_taken(
    url: str, handled: asyncio.Event, wait: float = 15.0
) -> list[CallbackTask]:
    """The stored callback tasks once there are some, re-read each time the callbacks
    service sets ``handled`` (cleared before each look, so no wake-up is lost)."""

    async def taken() -> list[CallbackTask] | None:
        return await stored_tasks(url) or None

    return await first_found(taken, handled, wait)
