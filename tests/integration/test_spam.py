"""Spam calls on real databases: the writer marks them as it stores them, a manager's
decision survives a re-save, and the callback policy leaves them alone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.finished_calls import apply_call
from pbx_tracker.callbacks.policy import Nothing, Resolve, decide
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.calls.records import (
    CallRecord,
    CallStatus,
    Direction,
    SpamReason,
    record_from_json,
)
from pbx_tracker.crm.outbox import enqueue_calls, outbox_table
from pbx_tracker.spam import marking
from pbx_tracker.spam.classify import SpamClassifier
from pbx_tracker.spam.settings import SpamSettings
from pbx_tracker.store.calls import save_call
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.spill import encode
from pbx_tracker.store.writer import CallWriter
from stored import connected, missed_call, stored_calls

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
FLOOD = "+79160000009"
RULES = SpamSettings(
    block=["+79160000001", "+7800*"], block_hidden=True, repeat_limit=2, repeat_window_minutes=10
)


def call(linkedid: str, minutes: float, caller: str | None, **changes: Any) -> CallRecord:
    record = missed_call(linkedid, T0 + timedelta(minutes=minutes), caller)
    return record.replace(source="google", **changes)


@pytest.fixture(name="make_writer")
async def _make_writer(tmp_path: Path) -> AsyncIterator[Callable[..., CallWriter]]:
    """Started CallWriters with the spam rules (``one_by_one``: no batches); stopped after."""
    made: list[tuple[CallWriter, AsyncEngine]] = []

    def make(url: str, rules: SpamSettings = RULES, *, one_by_one: bool = False) -> CallWriter:
        engine = make_async_engine(url)
        writer = CallWriter(
            engine,
            spill_path=tmp_path / "spill.jsonl",
            classify=SpamClassifier(rules).classify,
            # a first-time window makes the writer take one record per transaction
            first_time_window=timedelta(days=30) if one_by_one else None,
            on_written=lambda record, new: written.append(record),
        )
        made.append((writer, engine))
        return writer

    written: list[CallRecord] = []
    make.written = written  # type: ignore[attr-defined]
    yield make
    for writer, engine in made:
        await writer.stop()
        await engine.dispose()


async def write_all(writer: CallWriter, records: list[CallRecord]) -> None:
    for record in records:  # queued before the start: one batch, unless one by one
        writer.submit(record)
    await writer.start()
    assert await writer.drain(timeout=30) == 0


async def spam_columns(url: str) -> dict[str, tuple[bool, str | None]]:
    async with connected(url) as conn:
        rows = await conn.execute(text("SELECT linkedid, spam, spam_reason FROM calls"))
        return {row[0]: (bool(row[1]), row[2]) for row in rows}


@pytest.mark.parametrize("one_by_one", [False, True], ids=["batch", "one-by-one"])
async def test_the_writer_marks_blocked_hidden_and_flooding_callers(
    migrated_url: str, make_writer: Callable[..., CallWriter], one_by_one: bool
) -> None:
    """Stored calls from a blocked number or prefix, a hidden number, or a number calling too often
    in the window are marked spam with the reason, while customers and outbound calls are not."""
    records = [
        call("blocked", 0, "+79160000001"),
        call("prefix", 0.5, "+78001234567"),
        call("hidden", 1, None),
        call("customer", 1.5, "+79161234567"),
        *(call(f"flood.{n}", n, FLOOD) for n in (2, 3, 4, 5)),
        call("flood.later", 14, FLOOD),  # 4 and 5 are in its window: past the limit again
        call("flood.calm", 40, FLOOD),  # nothing within ten minutes before it
        call("out", 6, "+79160000001", direction=Direction.OUTBOUND, answered_by="101"),
    ]
    await write_all(make_writer(migrated_url, one_by_one=one_by_one), records)

    expected = {
        "blocked": (True, "blocked"),
        "prefix": (True, "blocked"),
        "hidden": (True, "hidden"),
        "customer": (False, None),
        "flood.2": (False, None),
        "flood.3": (False, None),
        "flood.4": (True, "repeat"),
        "flood.5": (True, "repeat"),
        "flood.later": (True, "repeat"),
        "flood.calm": (False, None),
    }
    assert await spam_columns(migrated_url) == expected
    seen = {r.linkedid: r.spam for r in make_writer.written}  # type: ignore[attr-defined]
    assert seen["out"] is None  # outbound calls are never spam
    assert seen["blocked"] is SpamReason.BLOCKED
    stored = {r.linkedid: r.spam for r in await stored_calls(migrated_url)}
    assert stored == {k: (SpamReason(v[1]) if v[0] else None) for k, v in expected.items()}


async def test_calls_stored_earlier_count_towards_the_limit_only_within_the_window(
    migrated_url: str, make_writer: Callable[..., CallWriter]
) -> None:
    """Calls stored before count towards a number's repeat limit only while they are within the
    window."""
    await write_all(make_writer(migrated_url), [call("a", 0, FLOOD), call("b", 1, FLOOD)])
    later = make_writer(migrated_url)
    await write_all(later, [call("c", 9, FLOOD), call("d", 25, FLOOD), call("e", 26, FLOOD)])
    columns = await spam_columns(migrated_url)
    assert columns["c"] == (True, "repeat")  # a and b were 9 and 8 minutes before it
    assert columns["d"] == columns["e"] == (False, None)  # the window holds at most one


async def test_without_rules_nothing_is_spam(
    migrated_url: str, make_writer: Callable[..., CallWriter]
) -> None:
    """With no spam rules configured no call is marked spam, however often or hidden it calls."""
    records = [call(f"x.{n}", n * 0.1, FLOOD) for n in range(20)] + [call("h", 3, None)]
    await write_all(make_writer(migrated_url, SpamSettings()), records)
    assert set((await spam_columns(migrated_url)).values()) == {(False, None)}


async def test_a_managers_decision_survives_saving_the_call_again(
    migrated_url: str, make_writer: Callable[..., CallWriter]
) -> None:
    """A replay re-saves calls: what a manager decided by hand stays."""
    blocked, customer = call("blocked", 0, "+79160000001"), call("customer", 1, "+79161234567")
    await write_all(make_writer(migrated_url), [blocked, customer])
    async with connected(migrated_url, write=True) as conn:
        ids = dict((await conn.execute(text("SELECT linkedid, id FROM calls"))).all())
        await marking.undo_spam(
            conn, ids["blocked"], by="101", now=T0, callbacks=CallbackSettings(enabled=False)
        )
        await marking.mark_spam(conn, ids["customer"], by="101", now=T0)
    await write_all(make_writer(migrated_url), [blocked, customer])
    assert await spam_columns(migrated_url) == {
        "blocked": (False, None),
        "customer": (True, "manual"),
    }


async def test_undo_opens_the_callback_and_marking_closes_a_task_of_only_spam(
    engine: AsyncEngine,
) -> None:
    """A manager undoing spam on a missed call opens its callback task; marking it spam again closes
    that task as closed by that manager, and marking twice is refused."""
    settings = CallbackSettings()
    missed = call("m1", 0, "+79161234567", spam=SpamReason.REPEAT)
    async with engine.begin() as conn:
        await save_call(conn, missed)
        assert await apply_call(conn, missed, settings, now=T0) is None  # spam: no task
        call_id = (await conn.execute(text("SELECT id FROM calls"))).scalar_one()
        undone = await marking.undo_spam(conn, call_id, by="101", now=T0, callbacks=settings)
    assert undone.was is SpamReason.REPEAT
    assert undone.task is not None and undone.task.kind == "opened"
    assert undone.task.task.customer == "+79161234567"

    async with engine.begin() as conn:
        marked = await marking.mark_spam(conn, call_id, by="102", now=T0 + timedelta(hours=1))
        task = await tasks.get_task(conn, undone.task.task_id)
        with pytest.raises(marking.SpamError, match="spam already"):
            await marking.mark_spam(conn, call_id, by="102", now=T0)
    assert marked.closed_tasks == (undone.task.task_id,)
    assert task is not None and not task.is_open
    assert (task.resolution, task.resolved_by) == ("closed_by_manager", "102")


async def test_the_crm_hears_of_every_decision(engine: AsyncEngine) -> None:
    """Each mark and undo is a ``call.updated`` event, even one that brings the call
    back to how the CRM first got it."""
    missed = call("m1", 0, "+79161234567")
    async with engine.begin() as conn:
        await save_call(conn, missed)
        await enqueue_calls(conn, [(missed, True)], T0)  # as the writer does
        call_id = (await conn.execute(text("SELECT id FROM calls"))).scalar_one()
        off = CallbackSettings(enabled=False)
        crm = {"crm_targets": ["webhook"]}
        await marking.mark_spam(conn, call_id, by="101", now=T0 + timedelta(minutes=1), **crm)
        later = T0 + timedelta(minutes=2)
        await marking.undo_spam(conn, call_id, by="101", now=later, callbacks=off, **crm)
        await marking.mark_spam(conn, call_id, by="102", now=T0 + timedelta(minutes=3), **crm)
        rows = (
            (await conn.execute(select(outbox_table).order_by(outbox_table.c.id))).mappings().all()
        )
    assert [(row["event"], row["payload"]["call"]["spam"]) for row in rows] == [
        ("call.finished", None),
        ("call.updated", "manual"),
        ("call.updated", None),
        ("call.updated", "manual"),
    ]
    assert len({row["idempotency_key"] for row in rows}) == 4


async def test_without_a_crm_a_spam_mark_leaves_nothing_waiting(engine: AsyncEngine) -> None:
    """With no CRM configured, marking a call as spam writes no event nobody would deliver."""
    missed = call("m1", 0, "+79161234567")
    async with engine.begin() as conn:
        await save_call(conn, missed)
        call_id = (await conn.execute(text("SELECT id FROM calls"))).scalar_one()
        await marking.mark_spam(conn, call_id, by="101", now=T0 + timedelta(minutes=1))
        assert (await conn.execute(select(outbox_table))).all() == []


def test_spam_calls_open_and_join_no_callback_but_answered_ones_still_resolve() -> None:
    """A missed spam call, whatever its reason, opens or joins no callback task, but an answered one
    still resolves the customer's open task."""
    settings = CallbackSettings()

    class Task:
        id = 7
        first_missed_at = T0 - timedelta(hours=1)

    for reason, why in [
        (SpamReason.BLOCKED, "spam: blocked number"),
        (SpamReason.HIDDEN, "spam: hidden number"),
        (SpamReason.REPEAT, "spam: repeat calls"),
        (SpamReason.MANUAL, "spam: marked by a manager"),
    ]:
        record = call("s", 0, "+79161234567", spam=reason)
        assert decide(record, None, settings) == Nothing(why)
        assert decide(record, Task(), settings) == Nothing(why)
    answered = call("a", 0, "+79161234567", spam=SpamReason.REPEAT).replace(
        status=CallStatus.ANSWERED, missed_reason=None, answered_by="101", answered_at=T0
    )
    assert isinstance(decide(answered, Task(), settings), Resolve)


def test_spill_lines_keep_the_reason_and_old_lines_without_it_still_read() -> None:
    """A call spilled to file while the database is down keeps its spam reason, and spill lines
    written before spam existed still read."""
    record = call("s", 0, "+79160000001", spam=SpamReason.BLOCKED)
    assert record_from_json(json.loads(encode(record))) == record
    old = json.loads(encode(record.replace(spam=None)))
    del old["spam"]  # spilled by a version before the spam column
    assert record_from_json(old) == record.replace(spam=None)
