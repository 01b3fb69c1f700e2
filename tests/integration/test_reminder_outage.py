"""A reminder that went out while the database refused writes is written down when it
is back, and never goes out twice (SQLite write-locked by another process)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from pbx_tracker.callbacks.service import CallbackService
from pbx_tracker.config import settings_from_mapping
from pbx_tracker.sim.db_outage import SqliteLock
from pbx_tracker.store.calls import save_call
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head
from stored import missed_call, stored_tasks

WAIT = 15.0


async def test_a_reminder_sent_while_writes_fail_is_not_sent_again(tmp_path: Path) -> None:
    """The manager gets one reminder, not one per retry, when the database could not
    record it the first time."""
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
    now = [datetime.now(UTC).timestamp()]
    engine = make_async_engine(url)
    service = CallbackService(settings, engine, clock=lambda: now[0])
    await service.start()
    lock = SqliteLock(path)
    try:
        call = missed_call("1795000000.1", datetime.now(UTC) - timedelta(minutes=1), "+79161234501")
        async with engine.begin() as conn:
            await save_call(conn, call.replace(source="flyer"))
        service.call_written(call.replace(source="flyer"), True)
        async with asyncio.timeout(WAIT):
            while not await stored_tasks(url):
                service.handled.clear()
                await service.handled.wait()
        [task] = await stored_tasks(url)
        now[0] += 6 * 60  # the first reminder is due
        with structlog.testing.capture_logs() as logs:
            await lock.take()
            await service.run_job("remind", task.id)  # sent; the write waits, then fails
            await lock.release()
            await service.run_job("remind", task.id)  # run again, as the sweep puts it back
        sent = [entry for entry in logs if entry["event"] == "callback.reminder"]
        assert len(sent) == 1
        assert any(entry["event"] == "callbacks.job_failed" for entry in logs)
        [task] = await stored_tasks(url)
        assert task.reminders_sent == 1
    finally:
        await lock.release()
        await service.stop()
        await engine.dispose()
