"""Reminder jobs kept in the project's database survive the daemon (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from waiting import until

from pbx_tracker.callbacks.schedule import JOBS_TABLE, ReminderScheduler

WAIT = 10.0


class Handler:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.changed = asyncio.Event()

    async def __call__(self, kind: str, task_id: int) -> None:
        self.calls.append((kind, task_id))
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        await until(lambda: len(self.calls) >= count, self.changed, WAIT)


async def test_jobs_that_came_due_while_no_daemon_ran_run_once_at_start(
    migrated_url: str,
) -> None:
    """Reminders that came due while no daemon ran are sent once at the next start (one scheduled
    again is sent once, not twice), a future one waits, and a cancelled task's reminder never
    runs."""
    database_url = migrated_url
    now = datetime.now(UTC)
    first = ReminderScheduler(database_url, Handler())
    first._scheduler.start(paused=True)  # a daemon that stored its jobs, then died
    first.schedule("remind", 1, now - timedelta(minutes=5))
    first.schedule("escalate", 1, now - timedelta(minutes=1))
    first.schedule("remind", 2, now + timedelta(hours=1))
    first.schedule("remind", 1, now - timedelta(minutes=2))  # replaces task 1's reminder
    first.shutdown()

    handler = Handler()
    second = ReminderScheduler(database_url, handler)
    second.start()
    try:
        await handler.wait_for(2)
        pending = second.pending()
    finally:
        second.shutdown()
    assert sorted(handler.calls) == [("escalate", 1), ("remind", 1)]
    assert [job_id for job_id, _ in pending] == ["callback-2-remind"]

    third_handler = Handler()
    third = ReminderScheduler(database_url, third_handler)
    third.start()
    third.cancel(2)
    remaining = third.pending()
    third.shutdown()
    assert third_handler.calls == [] and remaining == []  # nothing ran twice
    assert JOBS_TABLE == "pbx_tracker_jobs"
