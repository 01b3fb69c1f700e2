"""Callback tasks on real SQLite and PostgreSQL: opened by missed calls, joined, resolved.

Calls are saved with `save_call` first, as the daemon does, then applied.
Times come from the tests (`now=`), never from a clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx_tracker.callbacks import finished_calls, tasks
from pbx_tracker.callbacks.finished_calls import apply_call
from pbx_tracker.callbacks.policy import EventKind, Resolution, TaskStatus
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.callbacks.task_actions import assign_task, close_task, snooze_task
from pbx_tracker.callbacks.tasks import (
    CallbackTask,
    TaskChange,
    TaskError,
    get_task,
    list_tasks,
    open_task_for,
    record_notify_failure,
    record_reminder,
    record_ringme_attempt,
    task_calls_table,
    task_events,
    tasks_table,
)
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction, MissedReason, RingAttempt
from pbx_tracker.store.calls import calls_table, save_call
from pbx_tracker.store.engine import make_async_engine, make_sync_engine
from pbx_tracker.store.migrate import alembic_config, current_revision, upgrade_to_head
from stored import missed_call

T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)
CUSTOMER = "+79161234567"
SETTINGS = CallbackSettings()
CALLBACK_TABLES = {"callback_tasks", "callback_task_calls", "callback_events"}


def missed(
    linkedid: str, minute: int = 0, caller: str | None = CUSTOMER, **more: Any
) -> CallRecord:
    """A missed call on a tracked number (source google) where only 101 rang."""
    start = T0 + timedelta(minutes=minute)
    attempt = RingAttempt("101", "PJSIP/101-00000001", start, start, "noanswer")
    record = missed_call(linkedid, start, caller).replace(
        source="google",
        attempts=(attempt,),
        variables={"ROUTE_GROUP": "sales", "ROUTE_MANAGER": "101"},
    )
    return record.replace(**more)


def answered(linkedid: str, minute: int, by: str = "102", **more: Any) -> CallRecord:
    """The customer calls again and `by` answers after 5 s."""
    start = T0 + timedelta(minutes=minute)
    return missed(
        linkedid,
        minute,
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by=by,
        answered_at=start + timedelta(seconds=5),
        talk_seconds=15,
        **more,
    )


def outbound(linkedid: str, minute: int, *, reached: bool, manager: str = "103") -> CallRecord:
    """`manager` calls the customer back; the customer answers after 8 s or never."""
    start = T0 + timedelta(minutes=minute)
    return missed(
        linkedid,
        minute,
        direction=Direction.OUTBOUND,
        did="+74951110001",
        source=None,
        status=CallStatus.ANSWERED if reached else CallStatus.MISSED,
        missed_reason=None if reached else MissedReason.NO_ANSWER,
        answered_by=manager if reached else None,
        answered_at=start + timedelta(seconds=8) if reached else None,
        attempts=(RingAttempt(manager, f"PJSIP/{manager}-1", start, start, "answer"),),
        variables={},
    )


async def apply(
    engine: AsyncEngine, record: CallRecord, now: datetime = NOW, **settings: Any
) -> TaskChange | None:
    """Save the call and apply it, in one transaction (as the daemon does)."""
    async with engine.begin() as conn:
        await save_call(conn, record)
        return await apply_call(conn, record, CallbackSettings(**settings), now=now)


async def opened(engine: AsyncEngine, record: CallRecord, now: datetime = NOW) -> CallbackTask:
    change = await apply(engine, record, now)
    assert change is not None and change.kind == "opened"
    return change.task


async def run(engine: AsyncEngine, action: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
    async with engine.begin() as conn:
        return await action(conn)


async def events_of(engine: AsyncEngine, task_id: int) -> list[EventKind]:
    async with engine.connect() as conn:
        return [event.kind for event in await task_events(conn, task_id)]


async def linked_calls(engine: AsyncEngine, task_id: int) -> list[str]:
    query = (
        select(calls_table.c.linkedid)
        .join(task_calls_table, task_calls_table.c.call_id == calls_table.c.id)
        .where(task_calls_table.c.task_id == task_id)
        .order_by(calls_table.c.started_at)
    )
    async with engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


class TestMissedCalls:
    async def test_a_missed_call_opens_a_task_linked_to_it(self, engine: AsyncEngine) -> None:
        """A missed call from a customer opens one callback task for their number, assigned to the
        manager it rang, with the number dialled, its source and an "opened" event."""
        task = await opened(engine, missed("m.1"))
        assert (task.customer, task.dialable, task.status) == (CUSTOMER, True, TaskStatus.OPEN)
        assert (task.assignee, task.group_name, task.node) == ("101", "sales", "pbx1")
        assert (task.did, task.source, task.tries) == ("+74951234567", "google", 1)
        assert task.first_missed_at == task.last_missed_at == T0
        assert task.created_at == task.updated_at == NOW
        assert (task.reminders_sent, task.ringme_attempts) == (0, 0)
        assert task.resolved_at is task.resolution is task.first_attempt_at is None
        assert await linked_calls(engine, task.id) == ["m.1"]
        async with engine.connect() as conn:
            assert await open_task_for(conn, CUSTOMER) == task
            assert await get_task(conn, task.id) == task
            (event,) = await task_events(conn, task.id)
        assert (event.kind, event.at) == (EventKind.OPENED, T0)
        assert event.detail == {"call": "m.1", "assignee": "101", "group": "sales"}

    async def test_a_second_miss_joins_and_keeps_the_first_did_and_source(
        self, engine: AsyncEngine
    ) -> None:
        """A second missed call from the same customer joins their open task (tries 2, last miss
        moved) and keeps the number and source of the first call, by which reports group it."""
        first = await opened(engine, missed("m.1"))
        second = missed("m.2", 7, did="+74951110002", source="yandex")
        change = await apply(engine, second, NOW + timedelta(minutes=7))
        assert change is not None and (change.kind, change.task_id) == ("joined", first.id)
        task = change.task
        assert (task.tries, task.did, task.source) == (2, "+74951234567", "google")
        assert (task.first_missed_at, task.last_missed_at) == (T0, T0 + timedelta(minutes=7))
        assert task.updated_at == NOW + timedelta(minutes=7)
        assert task.created_at == NOW
        assert await linked_calls(engine, task.id) == ["m.1", "m.2"]
        assert await events_of(engine, task.id) == [EventKind.OPENED, EventKind.JOINED]
        # the reports group the task by the call that opened it
        first_call = select(tasks_table.c.first_call_id).where(tasks_table.c.id == task.id)
        opening = select(calls_table.c.id).where(calls_table.c.linkedid == "m.1")
        async with engine.connect() as conn:
            assert (await conn.execute(first_call)).scalar() == (
                await conn.execute(opening)
            ).scalar()

    async def test_applying_a_missed_call_again_changes_nothing(self, engine: AsyncEngine) -> None:
        """A call saved twice (a spill file replayed) is not a second try."""
        task = await opened(engine, missed("m.1"))
        assert await apply(engine, missed("m.1")) is None
        async with engine.connect() as conn:
            assert await get_task(conn, task.id) == task
        assert await events_of(engine, task.id) == [EventKind.OPENED]

    async def test_a_late_record_does_not_move_the_last_miss_back(
        self, engine: AsyncEngine
    ) -> None:
        """A missed call stored late, earlier than the task's last miss, does not move the last miss
        back."""
        await opened(engine, missed("m.2", 10))
        change = await apply(engine, missed("m.1", 3))
        assert change is not None
        assert change.task.last_missed_at == T0 + timedelta(minutes=10)

    async def test_hidden_callers_get_separate_tasks_that_cannot_be_dialled(
        self, engine: AsyncEngine
    ) -> None:
        """Each missed call from a hidden number gets its own task marked not dialable, and "ring
        me" on it is refused."""
        first = await opened(engine, missed("h.1", caller=None))
        second = await opened(engine, missed("h.2", 1, caller=None))
        assert first.id != second.id
        for task in (first, second):
            assert (task.customer, task.dialable, task.tries) == (None, False, 1)
        with pytest.raises(TaskError, match="cannot be dialled"):
            await run(engine, lambda c: record_ringme_attempt(c, first.id, at=NOW, manager="101"))

    async def test_untracked_reasons_and_disabled_callbacks_open_nothing(
        self, engine: AsyncEngine
    ) -> None:
        """A missed call on an untracked number, for a reason not called back, or with callbacks off
        opens no task."""
        assert await apply(engine, missed("u.1", source=None)) is None
        assert await apply(engine, missed("u.2"), reasons=["busy"]) is None
        assert await apply(engine, missed("u.3"), enabled=False) is None
        async with engine.connect() as conn:
            assert await list_tasks(conn, status=None) == []

    async def test_an_unsaved_missed_call_is_refused(self, engine: AsyncEngine) -> None:
        """Applying a missed call that was never stored is refused with "save it first"."""
        async with engine.begin() as conn:
            with pytest.raises(TaskError, match="save it first"):
                await apply_call(conn, missed("never.saved"), SETTINGS, now=NOW)


class TestResolution:
    async def test_the_customer_calls_again_and_is_answered(self, engine: AsyncEngine) -> None:
        """When the customer calls again and a manager answers, their task is done as answered
        inbound, naming the manager and the call, and no task is open for them."""
        task = await opened(engine, missed("m.1"))
        later = NOW + timedelta(minutes=20)
        change = await apply(engine, answered("a.1", 20), later)
        assert change is not None and (change.kind, change.task_id) == ("resolved", task.id)
        done = change.task
        assert (done.status, done.resolution) == (TaskStatus.DONE, Resolution.ANSWERED_INBOUND)
        assert (done.resolved_by, done.resolved_call) == ("102", "a.1")
        assert done.resolved_at == T0 + timedelta(minutes=20, seconds=5)
        assert done.updated_at == later
        assert await events_of(engine, task.id) == [EventKind.OPENED, EventKind.RESOLVED]
        async with engine.connect() as conn:
            assert await open_task_for(conn, CUSTOMER) is None
        assert await linked_calls(engine, task.id) == ["m.1"]

    async def test_a_miss_after_resolution_opens_a_new_task(self, engine: AsyncEngine) -> None:
        """A customer who misses again after their task was resolved gets a new task with one
        try."""
        first = await opened(engine, missed("m.1"))
        await apply(engine, answered("a.1", 20))
        second = await opened(engine, missed("m.2", 40))
        assert second.id != first.id and second.tries == 1

    async def test_an_answered_outbound_callback_resolves(self, engine: AsyncEngine) -> None:
        """A manager's callback that the customer answers closes the task as called back, naming the
        manager and the call."""
        task = await opened(engine, missed("m.1"))
        change = await apply(engine, outbound("o.1", 12, reached=True))
        assert change is not None and change.kind == "resolved"
        assert change.task.resolution is Resolution.CALLED_BACK
        assert (change.task.resolved_by, change.task.resolved_call) == ("103", "o.1")
        assert change.task.resolved_at == T0 + timedelta(minutes=12, seconds=8)
        async with engine.connect() as conn:
            (*_, event) = await task_events(conn, task.id)
        assert event.detail == {"resolution": "called_back", "by": "103", "call": "o.1"}

    async def test_an_unanswered_callback_is_an_attempt(self, engine: AsyncEngine) -> None:
        """A manager's callback the customer does not answer leaves the task open and records each
        attempt, keeping the time of the first."""
        task = await opened(engine, missed("m.1"))
        change = await apply(engine, outbound("o.1", 12, reached=False))
        assert change is not None and (change.kind, change.task.status) == ("attempt", "open")
        assert change.task.first_attempt_at == T0 + timedelta(minutes=12)
        again = await apply(engine, outbound("o.2", 30, reached=False))
        assert again is not None
        assert again.task.first_attempt_at == T0 + timedelta(minutes=12)
        async with engine.connect() as conn:
            events = await task_events(conn, task.id)
        assert [e.kind for e in events] == [EventKind.OPENED, EventKind.ATTEMPT, EventKind.ATTEMPT]
        assert events[1].detail == {"channel": "outbound", "manager": "103", "call": "o.1"}

    async def test_a_late_record_of_an_earlier_call_resolves_nothing(
        self, engine: AsyncEngine
    ) -> None:
        """An answered call that ended before the miss (its record came late) is no answer."""
        task = await opened(engine, missed("m.1", 30))
        assert await apply(engine, answered("a.0", 0)) is None
        async with engine.connect() as conn:
            assert await get_task(conn, task.id) == task

    async def test_answered_calls_without_a_task_change_nothing(self, engine: AsyncEngine) -> None:
        """An answered call or callback of a customer with no open task changes no task."""
        assert await apply(engine, answered("a.1", 0)) is None
        assert await apply(engine, outbound("o.1", 1, reached=True)) is None


class TestManagerCommands:
    async def test_close(self, engine: AsyncEngine) -> None:
        """A manager closing a task marks it done as closed by manager, with who and when, and
        records a "closed" event."""
        task = await opened(engine, missed("m.1"))
        at = NOW + timedelta(hours=1)
        done = await run(engine, lambda c: close_task(c, task.id, by="101", now=at))
        assert (done.status, done.resolution) == (TaskStatus.DONE, Resolution.CLOSED_BY_MANAGER)
        assert (done.resolved_by, done.resolved_at, done.resolved_call) == ("101", at, None)
        assert await events_of(engine, task.id) == [EventKind.OPENED, EventKind.CLOSED]

    async def test_snooze(self, engine: AsyncEngine) -> None:
        """A task snoozed until a later time stays open and records who snoozed it until when; a
        snooze that is not in the future is refused."""
        task = await opened(engine, missed("m.1"))
        until = NOW + timedelta(hours=2)
        snoozed = await run(
            engine, lambda c: snooze_task(c, task.id, until=until, by="101", now=NOW)
        )
        assert snoozed.snoozed_until == until and snoozed.is_open
        async with engine.connect() as conn:
            (*_, event) = await task_events(conn, task.id)
        assert event.detail == {"by": "101", "until": "2026-11-20T11:31:00.000Z"}
        with pytest.raises(TaskError, match="not later"):
            await run(engine, lambda c: snooze_task(c, task.id, until=NOW, by="101", now=NOW))

    async def test_assign(self, engine: AsyncEngine) -> None:
        """A task assigned to another manager moves to them in the same group, with an event saying
        who moved it from whom to whom."""
        task = await opened(engine, missed("m.1"))
        moved = await run(
            engine, lambda c: assign_task(c, task.id, extension="103", by="900", now=NOW)
        )
        assert moved.assignee == "103" and moved.group_name == "sales"
        async with engine.connect() as conn:
            (*_, event) = await task_events(conn, task.id)
        assert (event.kind, event.detail) == (
            EventKind.ASSIGNED,
            {"by": "900", "from": "101", "to": "103"},
        )

    @pytest.mark.parametrize("action", ["close", "snooze", "assign"])
    async def test_unknown_and_done_tasks_are_refused(
        self, engine: AsyncEngine, action: str
    ) -> None:
        """Closing, snoozing or assigning a done task or one that does not exist is refused with a
        message saying which and why."""
        task = await opened(engine, missed("m.1"))
        await run(engine, lambda c: close_task(c, task.id, by="101", now=NOW))
        commands: dict[str, Callable[[AsyncConnection, int], Awaitable[Any]]] = {
            "close": lambda c, i: close_task(c, i, by="102", now=NOW),
            "snooze": lambda c, i: snooze_task(
                c, i, until=NOW + timedelta(hours=1), by="102", now=NOW
            ),
            "assign": lambda c, i: assign_task(c, i, extension="102", by="102", now=NOW),
        }
        with pytest.raises(TaskError, match=rf"^cannot {action} task {task.id}: it is done"):
            await run(engine, lambda c: commands[action](c, task.id))
        with pytest.raises(TaskError, match=rf"^cannot {action} task 999: no such task$"):
            await run(engine, lambda c: commands[action](c, 999))

    async def test_list_newest_first_by_status_and_assignee(self, engine: AsyncEngine) -> None:
        """The task list shows open tasks newest first, can be narrowed to one manager or to done
        tasks, or show all up to a limit."""
        made = []
        for i, manager in enumerate(["101", "102", "101", "101"]):
            attempt = RingAttempt(manager, "PJSIP/x-1", T0, T0, "noanswer")
            record = missed(f"m.{i}", i, caller=f"+7916123450{i}", attempts=(attempt,))
            made.append(await opened(engine, record, NOW + timedelta(minutes=i)))
        await run(engine, lambda c: close_task(c, made[3].id, by="101", now=NOW))
        ids = [t.id for t in made]
        async with engine.connect() as conn:
            assert [t.id for t in await list_tasks(conn)] == [ids[2], ids[1], ids[0]]
            mine = await list_tasks(conn, assignee="101")
            assert [t.id for t in mine] == [ids[2], ids[0]]
            assert [t.id for t in await list_tasks(conn, status="done")] == [ids[3]]
            everything = await list_tasks(conn, status=None, limit=3)
            assert [t.id for t in everything] == [ids[3], ids[2], ids[1]]
            assert await list_tasks(conn, assignee="109") == []


class TestNotifications:
    async def test_events_are_recorded_in_order(self, engine: AsyncEngine) -> None:
        """A task's history lists reminders, a failed webhook, "ring me" attempts and an escalation
        in order; an escalation is not counted as a reminder."""
        task = await opened(engine, missed("m.1"))
        at = [NOW + timedelta(minutes=m) for m in range(6)]
        tid = task.id

        async def story(c: AsyncConnection) -> CallbackTask:
            await record_reminder(c, tid, at=at[0], channels=["email", "webhook"])
            await record_notify_failure(c, tid, at=at[1], channel="webhook", reason="HTTP 500")
            await record_ringme_attempt(c, tid, at=at[2], manager="101")
            await record_reminder(c, tid, at=at[3], channels=["email"], covers=4)  # 2..4 late
            await record_reminder(c, tid, at=at[4], channels=["email"], escalation=True)
            return await record_ringme_attempt(c, tid, at=at[5], manager="101")

        after = await run(engine, story)
        # the escalation is no scheduled reminder: the count and last reminder stay
        assert (after.reminders_sent, after.last_reminder_at) == (4, at[3])
        assert (after.escalated_at, after.first_attempt_at) == (at[4], at[2])
        assert after.ringme_attempts == 2 and after.is_open
        async with engine.connect() as conn:
            events = await task_events(conn, tid)
        assert [(e.kind, e.at) for e in events[1:]] == [
            (EventKind.REMINDED, at[0]),
            (EventKind.NOTIFY_FAILED, at[1]),
            (EventKind.ATTEMPT, at[2]),
            (EventKind.REMINDED, at[3]),
            (EventKind.ESCALATED, at[4]),
            (EventKind.ATTEMPT, at[5]),
        ]
        assert events[1].detail == {"channels": ["email", "webhook"]}
        assert events[2].detail == {"channel": "webhook", "reason": "HTTP 500"}
        assert events[3].detail == {"channel": "ring_me", "manager": "101"}

    async def test_a_reminder_sent_as_the_task_closed_is_still_recorded(
        self, engine: AsyncEngine
    ) -> None:
        """A reminder that went out as the task was being closed is still counted on the closed
        task."""
        task = await opened(engine, missed("m.1"))
        await run(engine, lambda c: close_task(c, task.id, by="101", now=NOW))
        after = await run(engine, lambda c: record_reminder(c, task.id, at=NOW, channels=["email"]))
        assert after.reminders_sent == 1 and not after.is_open

    async def test_unknown_tasks_are_refused(self, engine: AsyncEngine) -> None:
        """Recording a reminder or a failed notification for a task that does not exist is refused
        naming the task."""
        with pytest.raises(TaskError, match="no callback task 999"):
            await run(engine, lambda c: record_reminder(c, 999, at=NOW, channels=["email"]))
        with pytest.raises(TaskError, match="no callback task 999"):
            await run(
                engine,
                lambda c: record_notify_failure(c, 999, at=NOW, channel="email", reason="down"),
            )

    async def test_times_come_back_in_utc(self, engine: AsyncEngine) -> None:
        """A task opened with a Moscow time reads back as the same instant in UTC."""
        moscow = timezone(timedelta(hours=3))
        task = await opened(engine, missed("m.1"), NOW.astimezone(moscow))
        assert task.created_at == NOW and task.created_at.tzinfo == UTC


class TestOneOpenTaskPerCustomer:
    async def test_the_database_refuses_a_second_open_task(self, engine: AsyncEngine) -> None:
        """The database itself refuses a second open task for the same customer, while done tasks of
        theirs can be many."""
        task = await opened(engine, missed("m.1"))
        row = {k: v for k, v in tasks_table_row(task).items() if k != "id"}
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(tasks_table.insert().values(row))
        done = {**row, "status": "done", "resolution": "closed_by_manager"}
        async with engine.begin() as conn:  # done tasks of the same customer are history
            await conn.execute(tasks_table.insert().values(done))
            await conn.execute(tasks_table.insert().values(done))

    async def test_a_daemon_that_loses_the_race_joins_the_winners_task(
        self, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The other daemon opened the task after this one looked: the insert gives way."""
        winner = await opened(engine, missed("m.1"))
        real = tasks.open_task_for
        looks: list[str] = []

        async def stale_then_real(conn: AsyncConnection, customer: str) -> CallbackTask | None:
            looks.append(customer)
            return None if len(looks) == 1 else await real(conn, customer)

        monkeypatch.setattr(finished_calls, "open_task_for", stale_then_real)
        change = await apply(engine, missed("m.2", 3))
        assert looks == [CUSTOMER, CUSTOMER]
        assert change is not None and (change.kind, change.task_id) == ("joined", winner.id)
        assert change.task.tries == 2

    @pytest.mark.postgres
    async def test_two_daemons_miss_the_same_customer_at_once(self, postgres_database: str) -> None:
        """Two daemons' transactions at the same time on PostgreSQL: one task, two tries.

        (SQLite has a single writer: daemons never share a SQLite file.)
        """
        await asyncio.to_thread(upgrade_to_head, postgres_database)
        one, two = make_async_engine(postgres_database), make_async_engine(postgres_database)
        try:
            await asyncio.gather(apply(one, missed("m.1")), apply(two, missed("m.2", 0)))
            async with one.connect() as conn:
                (task,) = await list_tasks(conn, status=None)
            assert task.tries == 2
            assert sorted(await linked_calls(one, task.id)) == ["m.1", "m.2"]
        finally:
            await one.dispose()
            await two.dispose()


def tasks_table_row(task: CallbackTask) -> dict[str, Any]:
    row = {column.name: getattr(task, column.name) for column in tasks_table.columns}
    row["status"], row["resolution"] = str(task.status), None
    return row


class TestMigration:
    async def test_downgrade_drops_only_the_callback_tables(self, database_url: str) -> None:
        """Down to 0001 with tasks stored: calls stay, callback tables go; up again works."""
        await asyncio.to_thread(upgrade_to_head, database_url)
        engine = make_async_engine(database_url)
        try:
            await opened(engine, missed("m.1"))
        finally:
            await engine.dispose()
        await asyncio.to_thread(_migrate, database_url, "downgrade", "0001")
        assert await asyncio.to_thread(current_revision, database_url) == "0001"
        assert not await asyncio.to_thread(_tables, database_url) & CALLBACK_TABLES
        await asyncio.to_thread(upgrade_to_head, database_url)
        assert await asyncio.to_thread(_tables, database_url) >= CALLBACK_TABLES
        engine = make_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                count = select(func.count()).select_from(calls_table)
                assert (await conn.execute(count)).scalar_one() == 1
                assert await list_tasks(conn, status=None) == []
            again = await apply(engine, missed("m.2", 5))
            assert again is not None and again.kind == "opened"
        finally:
            await engine.dispose()


def _migrate(url: str, action: str, revision: str) -> None:
    config = alembic_config()
    engine = make_sync_engine(url, foreign_keys=False)
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            getattr(command, action)(config, revision)
            connection.commit()
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
