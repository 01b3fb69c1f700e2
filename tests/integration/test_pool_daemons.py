"""Several daemons serving one number pool from one database (`StoredVisitPool` each).

Each daemon is a `StoredVisitPool` with its own engine (its own connections), as
two ``pbx-tracker run`` behind one proxy; they share a clock moved by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clocks import DateClock
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.attribution.pool import Lease
from pbx_tracker.attribution.stored_pool import StoredVisitPool
from pbx_tracker.attribution.visit_pool import VisitStart
from pbx_tracker.attribution.visits import (
    StoredLease,
    Visit,
    live_leases,
    save_visit,
    start_leases,
)
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
POOL = "site"
NUMBERS = [f"+7495000{i:04d}" for i in range(10)]
FALLBACK = "+74950000000"
HOLD = 600.0


def daemon(engine: AsyncEngine, clock: DateClock, numbers: list[str] = NUMBERS) -> StoredVisitPool:
    return StoredVisitPool(
        engine,
        name=POOL,
        numbers=numbers,
        fallback=FALLBACK,
        hold_seconds=HOLD,
        max_visits_per_client=50,
        max_visits_per_network=1000,
        clock=clock,
    )


def request(**fields: Any) -> VisitStart:
    return VisitStart.model_validate({"page": "https://example.ru/landing", **fields})


def client(n: int) -> str:
    return f"198.51.{n}.7"  # every visitor in a network of their own


async def live(engine: AsyncEngine) -> list[StoredLease]:
    async with engine.connect() as conn:
        return await live_leases(conn, POOL)


@pytest.fixture(name="postgres_url")
async def _postgres_url(postgres_database: str) -> str:
    await asyncio.to_thread(upgrade_to_head, postgres_database)
    return postgres_database


@pytest.fixture(name="engines")
async def _engines(postgres_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    first, second = make_async_engine(postgres_url), make_async_engine(postgres_url)
    try:
        yield first, second
    finally:
        await first.dispose()
        await second.dispose()


@pytest.mark.postgres
async def test_two_daemons_never_show_one_number_to_two_live_visits(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """Visits started at once on two daemons of one PostgreSQL get distinct numbers, each
    stored as the visit's live lease; the rest get the fallback; both daemons serve."""
    clock = DateClock(T0)
    numbers = [f"+7495100{i:04d}" for i in range(30)]
    daemons = [daemon(engine, clock, numbers) for engine in engines]
    try:
        answers = await asyncio.gather(
            *(
                daemons[n % 2].start(request(visitor_id=f"visitor-{n}"), client(n))
                for n in range(40)
            )
        )
        shown = [answer.number for answer in answers if answer.number is not None]
        assert sorted(shown) == numbers  # each number to one visit
        assert sum(answer.fallback for answer in answers) == 40 - len(numbers)
        stored = {lease.visit_id: lease.did for lease in await live(engines[0])}
        assert stored == {a.visit_id: a.number for a in answers if a.number is not None}
        served = [{a.number for a in answers[n::2]} - {None} for n in (0, 1)]
        assert all(served)  # both daemons handed out numbers
        assert sum(d.refused_leases for d in daemons) > 0  # they did compete for numbers
        # more visits on each daemon, now that the store told them what is taken
        more = await asyncio.gather(
            *(daemons[n % 2].start(request(), client(100 + n)) for n in range(6))
        )
        assert all(answer.fallback for answer in more)
    finally:
        for pool in daemons:
            await pool.aclose()


@pytest.mark.postgres
async def test_keep_alive_and_returning_visitor_work_on_either_daemon(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """A visit started on one daemon is kept alive through the other, which then never
    hands its number to another visit; a returning visitor gets their number back there."""
    clock = DateClock(T0)
    first, second = (daemon(engine, clock, NUMBERS[:2]) for engine in engines)
    try:
        ann = await first.start(request(visitor_id="ann-browser-1"), client(1))
        clock.advance(HOLD * 0.9)
        kept = await second.keep_alive(ann.visit_id, client(1))
        assert kept is not None
        assert kept.number == ann.number
        clock.advance(HOLD * 0.2)  # the first daemon saw no keep-alive for a whole hold
        bob = await first.start(request(visitor_id="bob-browser-1"), client(2))
        carl = await second.start(request(visitor_id="carl-browser-1"), client(3))
        assert ann.number not in (bob.number, carl.number)
        assert (bob.fallback, carl.fallback) == (False, True)  # two numbers: ann's and bob's
        assert {lease.visit_id: lease.did for lease in await live(engines[0])} == {
            ann.visit_id: ann.number,
            bob.visit_id: bob.number,
        }
        again = await first.keep_alive(ann.visit_id, client(1))
        assert again is not None
        assert again.number == ann.number
        clock.advance(HOLD + 1)  # every visit is over
        back = await second.start(request(visitor_id="ann-browser-1"), client(1))
        assert back.number == ann.number
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_number_live_for_another_daemon_is_not_handed_out(engine: AsyncEngine) -> None:
    """A number another daemon shows (a live lease in the store) goes to no visit here
    until that lease runs out; the visit gets the next free number."""
    clock = DateClock(T0)
    async with engine.begin() as conn:
        await save_visit(conn, Visit("elsewhere-visit-1", POOL, T0, T0))
        await start_leases(conn, POOL, [Lease(NUMBERS[0], "elsewhere-visit-1", T0, T0)])
    pool = daemon(engine, clock, NUMBERS[:2])
    try:
        here = await pool.start(request(), client(1))
        assert here.number == NUMBERS[1]
        full = await pool.start(request(), client(2))
        assert full.fallback
        assert {lease.visit_id: lease.did for lease in await live(engine)} == {
            "elsewhere-visit-1": NUMBERS[0],
            here.visit_id: NUMBERS[1],
        }
        clock.advance(HOLD)  # the other daemon's visit ran out (and so did this one's)
        later = await pool.start(request(), client(3))
        assert later.number in NUMBERS[:2]
        assert [lease.visit_id for lease in await live(engine)] == [later.visit_id]
    finally:
        await pool.aclose()


async def test_a_visit_of_another_daemon_is_kept_alive_here(engine: AsyncEngine) -> None:
    """A keep-alive reaching a daemon that did not start the visit keeps its number."""
    clock = DateClock(T0)
    first, second = daemon(engine, clock), daemon(engine, clock)
    try:
        started = await first.start(request(), client(1))
        clock.advance(60)
        kept = await second.keep_alive(started.visit_id, client(1))
        assert kept is not None
        assert (kept.visit_id, kept.number) == (started.visit_id, started.number)
        [lease] = await live(engine)
        assert (lease.visit_id, lease.last_seen_at) == (
            started.visit_id,
            T0 + timedelta(seconds=60),
        )
        clock.advance(HOLD)
        assert await second.keep_alive(started.visit_id, client(1)) is None
    finally:
        await first.aclose()
        await second.aclose()
