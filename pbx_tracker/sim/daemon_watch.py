"""Looking at what the daemon process does from outside: when each call appears in its
database, and bounded waits on the database, the mailbox and the clock.

The daemon is another process: nothing tells us when it stored something, so
these look again every `POLL` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks.tasks import list_tasks
from pbx_tracker.store.models import CallRow, CelPositionRow

POLL = 0.25  # s between two looks at the database the daemon writes


class DatabaseWatch:
    """When each call first appears in the database (looked at every `POLL`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.seen: dict[str, float] = {}
        self._last = 0

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # an outage of ours: look again
                await self.look()
            await asyncio.sleep(POLL)

    async def look(self) -> int:
        async with self.engine.connect() as conn:
            query = select(CallRow.id, CallRow.linkedid).where(CallRow.id > self._last)
            rows = (await conn.execute(query)).all()
        now = time.time()
        for row_id, linkedid in rows:
            self.seen.setdefault(linkedid, now)
            self._last = max(self._last, row_id)
        return len(self.seen)


async def until(
    check: Callable[[], Any],
    timeout: float,  # noqa: ASYNC109
    what: str,
) -> None:
    """Look again every `POLL` until ``await check()`` is true (bounded)."""
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            while not await check():  # noqa: ASYNC110 - another process: nothing tells us
                await asyncio.sleep(POLL)
    except TimeoutError:
        print(f"gave up waiting for {what} after {timeout:.0f} s", file=sys.stderr)


async def is_true(value: bool) -> bool:
    """`value`, as a check `until` can await."""
    return value


def left(deadline: float) -> float:
    """Seconds until `deadline` (`time.monotonic()`)."""
    return deadline - time.monotonic()


async def quiet(reminder_tasks: Callable[[], list[str]], seconds: float = 3.0) -> None:
    """A few seconds more: a reminder sent twice would arrive now."""
    count = len(reminder_tasks())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL)
        if len(reminder_tasks()) != count:
            count, deadline = len(reminder_tasks()), time.monotonic() + seconds


async def cel_position_saved(engine: AsyncEngine) -> bool:
    """The daemon has read the CEL file once (its position is stored)."""
    with contextlib.suppress(Exception):
        async with engine.connect() as conn:
            query = select(func.count()).select_from(CelPositionRow)
            return int((await conn.execute(query)).scalar_one()) > 0
    return False


async def count_is(watch: DatabaseWatch, count: int) -> bool:
    """At least `count` calls are stored."""
    with contextlib.suppress(Exception):
        return await watch.look() >= count
    return False


async def tasks_at_least(engine: AsyncEngine, count: int) -> bool:
    """At least `count` callback tasks are stored."""
    with contextlib.suppress(Exception):
        async with engine.connect() as conn:
            return len(await list_tasks(conn, status=None, limit=count + 10)) >= count
    return False
