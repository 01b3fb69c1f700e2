"""`StoredVisitPool` on SQLite and PostgreSQL: visits, leases and pool use stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clocks import DateClock
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from waiting import polled

from pbx_tracker.attribution.stored_pool import StoredVisitPool, VisitStoreError
from pbx_tracker.attribution.visit_pool import VisitStart
from pbx_tracker.attribution.visits import (
    StoredLease,
    get_visit,
    leases_table,
    live_leases,
    pool_usage,
    visits_table,
)
from pbx_tracker.phones import display_number

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
POOL = "site"
A, B, C = "+74950000001", "+74950000002", "+74950000003"
FALLBACK = "+74950000000"
HOLD = 600.0


@pytest.fixture(name="clock")
def _clock() -> DateClock:
    return DateClock(T0)


def make_pool(
    engine: AsyncEngine, clock: DateClock, numbers: list[str] | None = None
) -> StoredVisitPool:
    return StoredVisitPool(
        engine,
        name=POOL,
        numbers=numbers or [A, B, C],
        fallback=FALLBACK,
        region="RU",
        hold_seconds=HOLD,
        quarantine_seconds=0.0,
        max_visits_per_client=50,
        max_visits_per_network=1000,
        clock=clock,
    )


def request(**labels: Any) -> VisitStart:
    return VisitStart.model_validate({"page": "https://example.ru/landing", **labels})


async def all_leases(engine: AsyncEngine) -> list[StoredLease]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(leases_table).order_by(leases_table.c.id))).all()
    return [StoredLease(**row._asdict()) for row in rows]


async def live(engine: AsyncEngine) -> list[StoredLease]:
    async with engine.connect() as conn:
        return await live_leases(conn, POOL)


async def test_started_visit_is_stored_with_labels_and_lease(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """A visit given a number is stored with its landing page, address, utm tags, click ids and
    client ids, and the number's lease to it."""
    pool = make_pool(engine, clock)
    labels = {
        "referrer": "https://yandex.ru/search/?text=okna",
        "utm_source": "yandex",
        "utm_medium": "cpc",
        "utm_campaign": "winter",
        "utm_term": "okna",
        "utm_content": "ad-1",
        "gclid": "g-1",
        "yclid": "123",
        "fbclid": "fb.1",
        "ga_client_id": "GA1.2.3.4",
        "ym_client_id": "170000",
        "visitor_id": "visitor-1",
    }
    answer = await pool.start(request(**labels), "192.0.2.1")
    assert (answer.number, answer.fallback) == (A, False)
    async with engine.connect() as conn:
        stored = await get_visit(conn, answer.visit_id)
    assert stored is not None
    assert stored.pool == POOL
    assert stored.started_at == T0
    assert stored.landing_page == "https://example.ru/landing"
    assert stored.client_ip == "192.0.2.1"
    for label, value in labels.items():
        assert getattr(stored, label) == value
    [lease] = await all_leases(engine)
    assert (lease.did, lease.visit_id, lease.started_at, lease.released_at) == (
        A,
        answer.visit_id,
        T0,
        None,
    )


async def test_keep_alive_extends_visit_and_lease(engine: AsyncEngine, clock: DateClock) -> None:
    """A visit's keep-alive keeps its number for another hold period and stores when it was last
    seen."""
    pool = make_pool(engine, clock)
    answer = await pool.start(request(), "192.0.2.1")
    clock.advance(300)
    kept = await pool.keep_alive(answer.visit_id, "192.0.2.1")
    assert kept is not None
    assert (kept.number, kept.expires_in) == (A, int(HOLD))
    async with engine.connect() as conn:
        stored = await get_visit(conn, answer.visit_id)
    assert stored is not None
    assert stored.last_seen_at == T0 + timedelta(seconds=300)
    [lease] = await all_leases(engine)
    assert lease.last_seen_at == T0 + timedelta(seconds=300)
    assert lease.released_at is None


async def test_expired_lease_is_released_in_the_store(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """A visit silent beyond the hold loses its number, the lease is stored as released at the
    hold's end, and the number goes to the next visit."""
    pool = make_pool(engine, clock)
    first = await pool.start(request(), "192.0.2.1")
    clock.advance(HOLD + 1)
    assert await pool.keep_alive(first.visit_id, "192.0.2.1") is None
    [lease] = await all_leases(engine)
    assert lease.released_at == T0 + timedelta(seconds=HOLD)
    second = await pool.start(request(), "192.0.2.2")
    assert [lease.visit_id for lease in await live(engine)] == [second.visit_id]


async def test_restore_keeps_live_leases_after_restart(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """After a restart visits keep their numbers, a returning visitor resumes their visit, and a new
    visit gets a free number."""
    before = make_pool(engine, clock)
    first = await before.start(request(visitor_id="v-1"), "192.0.2.1")
    second = await before.start(request(), "192.0.2.2")
    assert (first.number, second.number) == (A, B)
    clock.advance(60)
    after = make_pool(engine, clock)
    await after.restore()
    assert after.live_visits == 2
    kept = await after.keep_alive(first.visit_id, "192.0.2.1")
    assert kept is not None
    assert kept.number == A
    third = await after.start(request(), "192.0.2.3")
    assert third.number == C
    resumed = await after.start(request(visitor_id="v-1"), "192.0.2.1")
    assert (resumed.visit_id, resumed.number) == (first.visit_id, A)
    assert sorted(lease.did for lease in await live(engine)) == [A, B, C]


async def test_returning_visitor_gets_the_stored_number(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """A visitor returning after a restart and after their hold ran out gets the number they had
    before."""
    before = make_pool(engine, clock)
    await before.start(request(visitor_id="v-1"), "192.0.2.1")
    await before.start(request(), "192.0.2.2")
    clock.advance(HOLD + 60)
    after = make_pool(engine, clock)
    await after.restore()
    assert after.live_visits == 0
    assert await live(engine) == []
    back = await after.start(request(visitor_id="v-1"), "192.0.2.1")
    assert back.number == A  # C is the least recently used, A is the visitor's
    released = [lease for lease in await all_leases(engine) if lease.released_at is not None]
    assert len(released) == 2


async def test_exhaustion_gives_the_fallback_and_is_counted(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """When every pool number is held a new visit is shown the fallback number, is still stored, and
    the exhaustion is counted."""
    pool = make_pool(engine, clock)
    numbers = [(await pool.start(request(), f"192.0.2.{i}")).number for i in range(3)]
    assert numbers == [A, B, C]
    exhausted = await pool.start(request(), "192.0.2.9")
    assert (exhausted.number, exhausted.fallback) == (None, True)
    assert exhausted.display == display_number(FALLBACK, "RU")
    kept = await pool.keep_alive(exhausted.visit_id, "192.0.2.9")
    assert kept is not None
    assert kept.number is None
    async with engine.connect() as conn:
        usage = await pool_usage(conn, POOL, T0)
        assert await get_visit(conn, exhausted.visit_id) is not None
    assert (usage.live, usage.peak_in_use, usage.leases_started, usage.exhaustions) == (3, 3, 3, 1)


async def test_concurrent_starts_get_distinct_numbers(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """Twenty visits starting at once each get a different number, all stored."""
    numbers = [f"+7495000{i:04d}" for i in range(20)]
    pool = make_pool(engine, clock, numbers)
    answers = await asyncio.gather(
        *(pool.start(request(visitor_id=f"v-{i}"), f"192.0.2.{i}") for i in range(20))
    )
    shown = [answer.number for answer in answers]
    assert sorted(n for n in shown if n is not None) == numbers
    stored = await live(engine)
    assert len(stored) == 20
    assert len({lease.did for lease in stored}) == 20
    assert {lease.visit_id for lease in stored} == {answer.visit_id for answer in answers}


# --- group commit ---------------------------------------------------------------


async def stored_visits(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(visits_table.c.id))).scalars())


async def rename_table(engine: AsyncEngine, old: str, new: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


async def test_many_concurrent_starts_share_no_number_and_are_all_stored(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """Two hundred visits starting at once on a pool of 150 share no number, the 50 left get the
    fallback, and all are stored in a few batches."""
    numbers = [f"+7495000{i:04d}" for i in range(150)]
    pool = make_pool(engine, clock, numbers)
    answers = await asyncio.gather(
        *(pool.start(request(visitor_id=f"v-{i}"), f"198.51.100.{i % 200}") for i in range(200))
    )
    shown = [answer.number for answer in answers if answer.number is not None]
    assert sorted(shown) == numbers  # each number once; 50 visits got the fallback
    assert sum(answer.fallback for answer in answers) == 50
    assert await stored_visits(engine) == {answer.visit_id for answer in answers}
    stored = {lease.visit_id: lease.did for lease in await live(engine)}
    assert stored == {a.visit_id: a.number for a in answers if a.number is not None}
    assert pool.stats.requests == 200
    assert pool.stats.batches < 200  # committed together, not one by one
    async with engine.connect() as conn:
        usage = await pool_usage(conn, POOL, T0)
    assert (usage.leases_started, usage.exhaustions, usage.peak_in_use) == (150, 50, 150)


async def test_numbers_handed_on_within_one_batch_are_stored_in_order(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """A number released and given to a new visit in one batch is stored as the old lease ending
    before the new one starts."""
    pool = make_pool(engine, clock, [A])
    first = await pool.start(request(), "192.0.2.1")
    clock.advance(HOLD + 1)
    # both decided before either is written: A's old lease ends, then its new one starts
    second, third = await asyncio.gather(
        pool.start(request(), "192.0.2.2"), pool.start(request(), "192.0.2.3")
    )
    assert (first.number, second.number, third.number) == (A, A, None)
    leases = await all_leases(engine)
    assert [(lease.visit_id, lease.released_at) for lease in leases] == [
        (first.visit_id, T0 + timedelta(seconds=HOLD)),
        (second.visit_id, None),
    ]


async def test_failed_batch_answers_errors_and_later_requests_succeed(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """While the database refuses writes visits get an error and their numbers stay free; once it is
    back new visits get those numbers and a missed keep-alive is carried over."""
    pool = make_pool(engine, clock)
    kept = await pool.start(request(), "192.0.2.1")
    assert kept.number == A
    await rename_table(engine, "pool_stats", "pool_stats_away")  # every write now fails
    clock.advance(60)
    results = await asyncio.gather(
        *(pool.start(request(), f"192.0.2.{i}") for i in range(2, 5)),
        pool.keep_alive(kept.visit_id, "192.0.2.1"),
        return_exceptions=True,
    )
    assert all(isinstance(result, VisitStoreError) for result in results)
    assert pool.stats.failed_batches >= 1
    assert await stored_visits(engine) == {kept.visit_id}
    assert pool.live_visits == 1  # the failed starts were dropped; their numbers are free

    await rename_table(engine, "pool_stats_away", "pool_stats")  # the database is back
    again = await asyncio.gather(*(pool.start(request(), f"192.0.2.{i}") for i in range(5, 7)))
    assert sorted(answer.number for answer in again if answer.number) == [B, C]
    assert await stored_visits(engine) == {kept.visit_id} | {a.visit_id for a in again}
    [first] = [lease for lease in await all_leases(engine) if lease.visit_id == kept.visit_id]
    assert first.last_seen_at == T0 + timedelta(seconds=60)  # the failed keep-alive, carried over
    assert sorted(lease.did for lease in await live(engine)) == [A, B, C]


async def test_lookup_failure_answers_an_error_and_recovers(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """A visit started while the database cannot be read gets an error, and the next one once it is
    back gets a number."""
    pool = make_pool(engine, clock)
    await rename_table(engine, "number_leases", "number_leases_away")
    with pytest.raises(VisitStoreError):
        await pool.start(request(visitor_id="v-1"), "192.0.2.1")
    await rename_table(engine, "number_leases_away", "number_leases")
    answer = await pool.start(request(visitor_id="v-1"), "192.0.2.1")
    assert answer.number is not None
    assert await stored_visits(engine) == {answer.visit_id}


async def test_aclose_drains_pending_writes(engine: AsyncEngine, clock: DateClock) -> None:
    """Closing the pool waits until every visit already answered is stored."""
    numbers = [f"+7495000{i:04d}" for i in range(30)]
    pool = make_pool(engine, clock, numbers)
    tasks = [asyncio.create_task(pool.start(request(), f"192.0.2.{i}")) for i in range(30)]
    # all decided, writes pending
    await polled(lambda: pool.live_visits == 30, "30 visits decided", every=0.001)
    await pool.aclose()
    assert all(task.done() for task in tasks)
    answers = [task.result() for task in tasks]
    assert await stored_visits(engine) == {answer.visit_id for answer in answers}
    assert len(await live(engine)) == 30


async def test_returning_visitor_is_remembered_without_the_store(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """A returning visitor gets their earlier number from memory even while the visits table cannot
    be read."""
    pool = make_pool(engine, clock)
    first = await pool.start(request(visitor_id="v-1"), "192.0.2.1")
    clock.advance(HOLD + 60)
    await rename_table(engine, "visits", "visits_away")  # a lookup would fail now
    try:
        assert await pool._previous_number("v-1") == first.number
    finally:
        await rename_table(engine, "visits_away", "visits")
    back = await pool.start(request(visitor_id="v-1"), "192.0.2.9")
    assert back.number == first.number


async def test_lingering_writer_keeps_its_connection_until_aclose(
    engine: AsyncEngine, clock: DateClock
) -> None:
    """Visits in quick succession are written by one lingering writer, which ends at close, and the
    pool still works after closing."""
    pool = StoredVisitPool(
        engine, name=POOL, numbers=[A, B, C], fallback=FALLBACK, linger_seconds=60.0, clock=clock
    )
    try:
        first = await pool.start(request(visitor_id="v-1"), "192.0.2.1")
        writer = pool._writer
        assert writer is not None and not writer.done()  # waiting for more, not ended
        second = await pool.start(request(visitor_id="v-2"), "192.0.2.2")
        assert pool._writer is writer  # the same task (and connection) wrote it
        assert await pool.keep_alive(first.visit_id, "192.0.2.1") is not None
        assert await stored_visits(engine) == {first.visit_id, second.visit_id}
    finally:
        await asyncio.wait_for(pool.aclose(), 10)
    assert pool._writer is None and pool.lookups.reader is None
    assert {lease.did for lease in await live(engine)} == {A, B}
    third = await pool.start(request(), "192.0.2.3")  # works after aclose
    await asyncio.wait_for(pool.aclose(), 10)
    assert third.visit_id in await stored_visits(engine)
