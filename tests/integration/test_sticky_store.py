"""Who last talked with a caller, read from the call store on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.calls.records import CallRecord, CallStatus, Direction
from pbx_tracker.routing.sticky import StickyMemory
from pbx_tracker.store.calls import calls_table, save_call
from pbx_tracker.store.engine import make_async_engine
from stored import missed_call

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CALLER = "+79161234501"
MONTH_AGO = NOW - timedelta(days=30)


def talk(linkedid: str, days_ago: float, manager: str, **more: Any) -> CallRecord:
    """An answered call with CALLER that started ``days_ago``."""
    started = NOW - timedelta(days=days_ago)
    return missed_call(linkedid, started, more.pop("caller", CALLER)).replace(
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by=manager,
        answered_at=started + timedelta(seconds=5),
        talk_seconds=120,
        **more,
    )


async def save(engine: AsyncEngine, *records: CallRecord) -> None:
    async with engine.begin() as conn:
        for record in records:
            await save_call(conn, record)


async def test_last_inbound_conversation_wins(engine: AsyncEngine) -> None:
    """A returning caller goes to the manager they last talked with; missed calls and other callers'
    calls do not count."""
    await save(
        engine,
        talk("1.1", days_ago=10, manager="101"),
        talk("1.2", days_ago=3, manager="102"),
        missed_call("1.3", NOW - timedelta(days=1), CALLER),  # nobody talked: does not count
        talk("1.4", days_ago=1, manager="103", caller="+79160000000"),  # someone else
    )
    found = await StickyMemory(engine).last_manager(CALLER, since=MONTH_AGO)
    assert found == ("102", NOW - timedelta(days=3))


async def test_transfer_target_is_who_talked_last(engine: AsyncEngine) -> None:
    """A caller who was transferred goes next time to the manager they were transferred to."""
    await save(engine, talk("2.1", days_ago=2, manager="101", transferred_to="103"))
    assert await StickyMemory(engine).last_manager(CALLER, MONTH_AGO) == (
        "103",
        NOW - timedelta(days=2),
    )


async def test_answered_callback_is_the_latest_conversation(engine: AsyncEngine) -> None:
    """A callback the customer answered counts as their latest conversation, while one they did not
    pick up does not."""
    await save(
        engine,
        talk("3.1", days_ago=4, manager="101"),
        talk("3.2", days_ago=2, manager="102", direction=Direction.OUTBOUND, did=None),
        talk("3.3", days_ago=1, manager="103", direction=Direction.OUTBOUND).replace(
            status=CallStatus.MISSED  # the customer did not pick up
        ),
    )
    found = await StickyMemory(engine).last_manager(CALLER, MONTH_AGO)
    assert found is not None and found[0] == "102"


async def test_older_than_the_window_is_not_sticky(engine: AsyncEngine) -> None:
    """A conversation older than the sticky window sends the caller to nobody in particular, and a
    wider window finds it."""
    await save(engine, talk("4.1", days_ago=31, manager="101"))
    memory = StickyMemory(engine)
    assert await memory.last_manager(CALLER, since=MONTH_AGO) is None
    assert await memory.last_manager(CALLER, since=NOW - timedelta(days=40)) is not None
    assert await memory.last_manager("+79160000000", since=MONTH_AGO) is None


async def test_answers_are_cached_and_finished_calls_update_them(engine: AsyncEngine) -> None:
    """Who talked last is read once and kept, and a newly finished call updates it at once while an
    older one changes nothing."""
    await save(engine, talk("5.1", days_ago=3, manager="101"))
    memory = StickyMemory(engine)
    assert (await memory.last_manager(CALLER, MONTH_AGO) or ("",))[0] == "101"
    async with engine.begin() as conn:  # changed behind the cache's back
        await conn.execute(update(calls_table).values(answered_by="999"))
    assert (await memory.last_manager(CALLER, MONTH_AGO) or ("",))[0] == "101"
    memory.remember(talk("5.2", days_ago=0, manager="102"))
    assert await memory.last_manager(CALLER, MONTH_AGO) == ("102", NOW)
    memory.remember(talk("5.0", days_ago=20, manager="103"))  # older: changes nothing
    assert await memory.last_manager(CALLER, MONTH_AGO) == ("102", NOW)


async def test_cache_is_bounded(engine: AsyncEngine) -> None:
    """Only a bounded number of callers is kept in memory; a caller pushed out is read from the
    database again."""
    await save(engine, talk("6.1", days_ago=1, manager="101"))
    memory = StickyMemory(engine, size=2)
    assert await memory.last_manager(CALLER, MONTH_AGO) is not None
    for other in ("+79160000001", "+79160000002"):
        await memory.last_manager(other, MONTH_AGO)
    async with engine.begin() as conn:
        await conn.execute(update(calls_table).values(answered_by="999"))
    # CALLER was pushed out of the cache: the database is asked again
    assert (await memory.last_manager(CALLER, MONTH_AGO) or ("",))[0] == "999"


async def test_database_failure_means_no_sticky_ring(database_url: str) -> None:
    """When the database cannot be read the call is routed as if the caller were new, with one
    warning logged."""
    engine = make_async_engine(database_url)  # never migrated: the tables are missing
    try:
        with structlog.testing.capture_logs() as logs:
            assert await StickyMemory(engine).last_manager(CALLER, MONTH_AGO) is None
    finally:
        await engine.dispose()
    assert [entry["event"] for entry in logs] == ["routing.sticky_lookup_failed"]
    assert logs[0]["log_level"] == "warning"


async def test_preloaded_window_answers_without_the_database(engine: AsyncEngine) -> None:
    """After preload, the history is in memory: the database can go away."""
    await save(
        engine,
        talk("6.1", days_ago=10, manager="101"),
        talk("6.2", days_ago=2, manager="102"),
        talk("6.3", days_ago=5, manager="103", caller="+79160000000"),
        talk("6.4", days_ago=40, manager="101", caller="+79165550000"),  # before the window
    )
    memory = StickyMemory(engine)
    assert await memory.preload(MONTH_AGO) == 2
    await engine.dispose()
    broken = make_async_engine("sqlite:////nonexistent-folder/none.sqlite3")
    memory._engine = broken  # any database query would now fail and log a warning
    with structlog.testing.capture_logs() as logs:
        assert await memory.last_manager(CALLER, MONTH_AGO) == ("102", NOW - timedelta(days=2))
        assert await memory.last_manager("+79160000000", MONTH_AGO) is not None
        assert await memory.last_manager("+79167777777", MONTH_AGO) is None  # a new caller
    assert logs == []
    await broken.dispose()


async def test_refresh_reads_what_another_node_wrote(engine: AsyncEngine) -> None:
    """A conversation stored by another node is found after a refresh, which reports how many new
    ones it read."""
    memory = StickyMemory(engine)
    await memory.preload(MONTH_AGO)
    assert await memory.last_manager(CALLER, MONTH_AGO) is None
    await save(engine, talk("7.1", days_ago=1, manager="103").replace(node="pbx2"))
    assert await memory.refresh() == 1
    assert await memory.last_manager(CALLER, MONTH_AGO) == ("103", NOW - timedelta(days=1))
    assert await memory.refresh() == 0  # nothing new since
