"""A reminder that went out while the database refused writes is written down when it
is back, and never goes out twice (SQLite write-locked by another process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import structlog
from clocks import SecondsClock
from services import callback_service
from structlog.testing import LogCapture
from structlog.typing import EventDict, WrappedLogger

from pbx_tracker.callbacks.service import CallbackService
from pbx_tracker.config import settings_from_mapping
from pbx_tracker.sim.db_outage import SqliteLock
from pbx_tracker.store.calls import save_call
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head
from stored import missed_call, stored_tasks, tasks_once_taken

WAIT = 15.0


@asynccontextmanager
async def due_reminder(tmp_path: Path) -> AsyncIterator[tuple[CallbackService, int, SqliteLock]]:
    """A daemon's callbacks on SQLite with one task whose first reminder is due, and a
    write lock another process can take on its database."""
    path = tmp_path / "pbx.sqlite3"
    url = f"sqlite:///{path}"
    await asyncio.to_thread(upgrade_to_head, url)
    settings = settings_from_mapping(
        {
            "ami": {"secret": "unused-here"},
            "database": {"url": url},
            "tracked_numbers": [{"did": "+74951234567", "source": "flyer"}],
            "managers": [{"name": "Anna", "extension": "101"}],
            "callbacks": {"remind_after_minutes": [5, 60]},
        },
        environ={},
    )
    clock = SecondsClock(datetime.now(UTC).timestamp())
    engine = make_async_engine(url)
    service = callback_service(settings, engine, clock=clock)
    await service.start()
    lock = SqliteLock(path)
    try:
        call = missed_call("1795000000.1", datetime.now(UTC) - timedelta(minutes=1), "+79161234501")
        call = call.replace(source="flyer")
        async with engine.begin() as conn:
            await save_call(conn, call)
        service.call_written(call, True)
        [task] = await tasks_once_taken(url, service.handled, WAIT)
        clock.advance(6 * 60)  # the first reminder is due
        yield service, task.id, lock
    finally:
        await lock.release()
        await service.stop()
        await engine.dispose()


@contextmanager
def watched_logs(name: str) -> Iterator[tuple[list[EventDict], asyncio.Event]]:
    """structlog's `capture_logs`, plus an event set when an entry ``name`` is logged."""
    seen = asyncio.Event()

    class Watch(LogCapture):
        def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> NoReturn:
            if event.get("event") == name:
                seen.set()
            super().__call__(logger, method, event)

    watch = Watch()
    before = structlog.get_config()["processors"]
    structlog.configure(processors=[watch])
    try:
        yield watch.entries, seen
    finally:
        structlog.configure(processors=before)


async def reminders_sent(service: CallbackService) -> int:
    [task] = await stored_tasks(str(service.engine.url))
    return task.reminders_sent


async def test_a_reminder_sent_while_writes_fail_is_not_sent_again(tmp_path: Path) -> None:
    """The manager gets one reminder, not one per retry, when the database could not
    record it before the job gave up: the job run again only records it."""
    async with due_reminder(tmp_path) as (service, task_id, lock):
        service.write_down_waits = ()  # the job gives up at once
        with structlog.testing.capture_logs() as logs:
            await lock.take()
            await service.run_job("remind", task_id)  # sent; the write waits, then fails
            await lock.release()
            await service.run_job("remind", task_id)  # run again, as the sweep puts it back
        sent = [entry for entry in logs if entry["event"] == "callbacks.reminder"]
        assert len(sent) == 1
        assert any(entry["event"] == "callbacks.job_failed" for entry in logs)
        assert await reminders_sent(service) == 1


async def test_a_reminder_is_recorded_as_soon_as_the_database_is_back(tmp_path: Path) -> None:
    """The job that sent a reminder keeps trying to record it while the database is away
    (a restart meanwhile would send it again), and records it once it is back."""
    async with due_reminder(tmp_path) as (service, task_id, lock):
        service.write_down_waits = (0.1,) * 100
        with watched_logs("callbacks.reminder_not_recorded") as (logs, failed_once):
            await lock.take()
            job = asyncio.create_task(service.run_job("remind", task_id))
            await asyncio.wait_for(failed_once.wait(), WAIT)
            await lock.release()
            await asyncio.wait_for(job, WAIT)
        assert [e["event"] for e in logs].count("callbacks.reminder") == 1
        assert not any(entry["event"] == "callbacks.job_failed" for entry in logs)
        assert await reminders_sent(service) == 1
