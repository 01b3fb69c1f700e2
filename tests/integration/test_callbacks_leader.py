"""Two daemons on one PostgreSQL database: both open tasks, one sends the reminders, and the
other takes over when the first is gone (the advisory lock of DESIGN.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from clocks import SecondsClock
from services import callback_service
from sqlalchemy import text
from waiting import first_found

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.service import CallbackService
from pbx_tracker.config import Settings, settings_from_mapping
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head
from stored import connected, missed_call, saved, stored_tasks, tasks_once_taken

WAIT = 15.0
pytestmark = pytest.mark.postgres


def settings_for(url: str, remind_after: tuple[int, ...] = (0, 60)) -> Settings:
    return settings_from_mapping(
        {
            "ami": {"secret": "unused"},
            "database": {"url": url},
            "tracked_numbers": [{"did": "+74951234567", "source": "flyer"}],
            "managers": [{"name": "Anna", "extension": "101", "group": "sales"}],
            "callbacks": {"remind_after_minutes": list(remind_after)},
        },
        environ={},
    )


@asynccontextmanager
async def daemon(url: str) -> AsyncIterator[CallbackService]:
    """A CallbackService as a daemon runs it, with its own engine (its own sessions)."""
    engine = make_async_engine(url)
    service = callback_service(settings_for(url), engine)
    service.sweep_seconds = 0.2
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await engine.dispose()


async def open_task(url: str, service: CallbackService) -> None:
    """A missed call stored and handed to ``service``, as its writer would."""
    call = missed_call("1795000000.1", datetime.now(UTC) - timedelta(minutes=1), "+79161234501")
    call = call.replace(source="flyer")
    await saved(url, call)
    service.call_written(call, True)


async def the_task(url: str) -> tasks.CallbackTask:
    [task] = await stored_tasks(url)
    return task


async def until_reminded(url: str, leader: CallbackService) -> tasks.CallbackTask:
    """Wait (bounded) until the follower opened the task and the leader reminded of it."""

    async def reminded() -> tasks.CallbackTask | None:
        found = await stored_tasks(url)
        return found[0] if found and found[0].reminders_sent > 0 else None

    return await first_found(reminded, leader.handled, WAIT)


async def test_one_daemon_reminds_and_another_takes_over_when_it_is_gone(
    postgres_database: str,
) -> None:
    """Of two daemons on one database only the leader sends reminders; when it stops the other takes
    over the pending reminders without sending any twice."""
    url = postgres_database
    await asyncio.to_thread(upgrade_to_head, url)
    async with daemon(url) as first, daemon(url) as second:
        assert first.leadership.leading and not second.leadership.leading
        await open_task(url, second)  # the follower sees the call and opens the task
        task = await until_reminded(url, first)  # the leader's sweep reminds of it
        assert task.reminders_sent == 1 and task.tries == 1
        assert not second.scheduler._scheduler.running  # the follower sends nothing

        await first.stop()  # the leader is gone: its lock with it
        await asyncio.wait_for(second.became_leader.wait(), WAIT)
        assert second.leadership.leading
        jobs = {job_id for job_id, _ in second.scheduler.pending()}
        assert {f"callback-{task.id}-remind", f"callback-{task.id}-escalate"} <= jobs
    assert (await the_task(url)).reminders_sent == 1  # not reminded twice by the handover


async def test_a_leader_whose_session_ended_sends_no_reminder(postgres_database: str) -> None:
    """A leader whose database session PostgreSQL ended (its lock gone with it, free for
    another daemon) sends no reminder that comes due before it noticed: it steps down."""
    url = postgres_database
    await asyncio.to_thread(upgrade_to_head, url)
    clock = SecondsClock(datetime.now(UTC).timestamp())
    engine = make_async_engine(url)
    service = callback_service(settings_for(url, (5, 60)), engine, clock=clock)
    service.sweep_seconds = 3600.0  # the next sweep is far away: only the job's own check
    await service.start()
    try:
        await open_task(url, service)
        await tasks_once_taken(url, service.handled, WAIT)
        task = await the_task(url)
        assert task.reminders_sent == 0 and service.leadership.leading
        await end_lock_sessions(url)
        clock.advance(6 * 60)  # the first reminder (at 5 min) is due; the lock is not held
        await service.run_job("remind", task.id)
        assert (await the_task(url)).reminders_sent == 0
        # it stepped down, and leads again through a new session: nobody else holds the lock
        await asyncio.wait_for(service.became_leader.wait(), WAIT)
        assert service.leadership.leading
    finally:
        await service.stop()
        await engine.dispose()


async def end_lock_sessions(url: str) -> None:
    """PostgreSQL ends the session holding this database's advisory locks (as a network
    cut or an administrator's pg_terminate_backend would)."""
    query = text(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    async with connected(url, write=True) as conn:
        assert (await conn.execute(query)).scalars().all() == [True]


async def test_reminders_due_together_keep_the_lead(postgres_database: str) -> None:
    """Dozens of reminder jobs due at once each check the lock: the leader keeps leading
    (it stepped down by mistake, cutting reminders already sent, which went out again)."""
    url = postgres_database
    await asyncio.to_thread(upgrade_to_head, url)
    async with daemon(url) as leader:
        answers = await asyncio.gather(*(leader.leadership.try_lead() for _ in range(40)))
        assert all(answers) and leader.leadership.leading
