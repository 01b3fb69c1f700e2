"""Visits, number leases and pool use in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx_tracker.attribution.pool import Lease, PoolAllocator
from pbx_tracker.attribution.visit_batches import VisitBatch, write_visit_batch
from pbx_tracker.attribution.visits import (
    PoolUsage,
    PoolUse,
    Visit,
    extend_lease,
    extend_leases,
    get_visit,
    last_number_of,
    last_numbers_of,
    latest_leases,
    leases_at,
    leases_table,
    live_leases,
    pool_usage,
    record_pool_use,
    release_lease,
    release_leases,
    save_visit,
    save_visits,
    start_lease,
    start_leases,
    touch_visit,
    touch_visits,
    visits_table,
)

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
POOL = "site"
A, B, C = "+74950000001", "+74950000002", "+74950000003"
GRACE = timedelta(minutes=2)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def visit(visit_id: str | None = None, *, minutes: float = 0, **labels: Any) -> Visit:
    moment = at(minutes)
    return Visit(visit_id or secrets.token_urlsafe(16), POOL, moment, moment, **labels)


async def add_visits(conn: AsyncConnection, *visit_ids: str) -> None:
    for visit_id in visit_ids:
        await save_visit(conn, visit(visit_id))


def visit_ids(leases: list[Any]) -> list[str]:
    return [lease.visit_id for lease in leases]


class TestVisits:
    async def test_saved_visit_reads_back_with_every_label(self, engine: AsyncEngine) -> None:
        """A visit reads back with every label exactly as stored, long landing pages, Cyrillic terms
        and IPv6 addresses included; an unknown visit id finds nothing."""
        full = visit(
            landing_page="https://example.ru/" + "a" * 2000,
            referrer="https://yandex.ru/search/?text=окна",
            utm_source="yandex",
            utm_medium="cpc",
            utm_campaign="winter",
            utm_term="пластиковые окна",
            utm_content="ad-1",
            gclid="g" * 256,
            yclid="123456789",
            fbclid="fb.1",
            ga_client_id="GA1.2.1234.5678",
            ym_client_id="1700000000123456789",
            visitor_id="visitor-1",
            client_ip="2001:db8::1",
            user_agent="Mozilla/5.0 " + "x" * 400,
        )
        async with engine.begin() as conn:
            await save_visit(conn, full)
            await save_visit(conn, visit("bare"))
        async with engine.connect() as conn:
            assert await get_visit(conn, full.id) == full
            assert await get_visit(conn, "bare") == visit("bare")
            assert await get_visit(conn, "forged") is None

    async def test_touch_moves_last_seen_forward_only(self, engine: AsyncEngine) -> None:
        """A visit's last-seen time only moves forward, and touching an unknown visit does
        nothing."""
        async with engine.begin() as conn:
            await save_visit(conn, visit("v1"))
            assert await touch_visit(conn, "v1", at(5))
            assert await touch_visit(conn, "v1", at(3))
            assert not await touch_visit(conn, "forged", at(5))
            found = await get_visit(conn, "v1")
        assert found is not None and found.last_seen_at == at(5)
        assert found.started_at == T0

    async def test_visit_id_is_unique(self, engine: AsyncEngine) -> None:
        """The database refuses a second visit with the same id."""
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await save_visit(conn, visit("v1"))
                await save_visit(conn, visit("v1"))


class TestLeases:
    async def test_lifecycle(self, engine: AsyncEngine) -> None:
        """A lease starts live, its last-seen time only moves forward, and once released it can be
        neither released nor extended again, leaving only the other visit's lease live."""
        async with engine.begin() as conn:
            await add_visits(conn, "v1", "v2")
            first = await start_lease(conn, POOL, A, "v1", at(0))
            await start_lease(conn, POOL, B, "v2", at(1))
            await start_lease(conn, "other", C, "v2", at(1))
            assert await extend_lease(conn, "v1", at(4))
            assert await extend_lease(conn, "v1", at(2))  # never back
            live = await live_leases(conn, POOL)
            assert [(lease.did, lease.visit_id) for lease in live] == [(A, "v1"), (B, "v2")]
            assert live[0].id == first and live[0].last_seen_at == at(4)
            assert live[0].released_at is None

            assert await release_lease(conn, "v1", at(6))
            assert not await release_lease(conn, "v1", at(7))
            assert not await extend_lease(conn, "v1", at(7))
            assert visit_ids(await live_leases(conn, POOL)) == ["v2"]

    async def test_a_did_has_one_live_lease(self, engine: AsyncEngine) -> None:
        """The database refuses two live leases of the same number."""
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await add_visits(conn, "v1", "v2")
                rows = [
                    {"pool": POOL, "did": A, "visit_id": v, "started_at": T0, "last_seen_at": T0}
                    for v in ("v1", "v2")
                ]
                await conn.execute(insert(leases_table), rows)

    async def test_start_closes_a_lease_left_open(self, engine: AsyncEngine) -> None:
        """A new lease of a number left held by a stopped daemon ends the old lease at the new one's
        start."""
        async with engine.begin() as conn:
            await add_visits(conn, "v1", "v2")
            await start_lease(conn, POOL, A, "v1", at(0))
            await start_lease(conn, POOL, A, "v2", at(30))  # the daemon stopped meanwhile
            (old,) = await leases_at(conn, A, at(10))
            assert old.visit_id == "v1" and old.released_at == at(30)
            assert visit_ids(await live_leases(conn, POOL)) == ["v2"]

    async def test_latest_leases_restart_an_allocator(self, engine: AsyncEngine) -> None:
        """After a restart the number pool picks up from each number's latest lease, so a held
        number stays with its visit and an unused one is given out first."""
        async with engine.begin() as conn:
            await add_visits(conn, "v1", "v2", "v3")
            await start_lease(conn, POOL, A, "v1", at(0))
            await release_lease(conn, "v1", at(5))
            await start_lease(conn, POOL, A, "v2", at(10))
            await start_lease(conn, POOL, B, "v3", at(0))
            await release_lease(conn, "v3", at(2))
            latest = await latest_leases(conn, [A, B, C])
        assert [(lease.did, lease.visit_id) for lease in latest] == [(A, "v2"), (B, "v3")]
        allocator = PoolAllocator(
            [A, B, C], hold_seconds=900, leases=[lease.lease() for lease in latest]
        )
        assert allocator.assign("v2", at(11)).number == A
        assert allocator.assign("v4", at(11)).number == C  # never used before B
        assert allocator.assign("v5", at(11)).number == B


class TestLeasesAt:
    @pytest.fixture
    async def history(self, engine: AsyncEngine) -> AsyncEngine:
        """On A: v1 from 0 to 10, v2 from 11 to 20, v3 from 30, live (seen at 40)."""
        async with engine.begin() as conn:
            await add_visits(conn, "v1", "v2", "v3")
            for visit_id, start, end in (("v1", 0, 10), ("v2", 11, 20)):
                await start_lease(conn, POOL, A, visit_id, at(start))
                await release_lease(conn, visit_id, at(end))
            await start_lease(conn, POOL, A, "v3", at(30))
            await extend_lease(conn, "v3", at(40))
        return engine

    @pytest.mark.parametrize(
        ("minute", "holders"),
        [
            (-1, []),  # before any lease
            (0, ["v1"]),  # the start belongs to the lease
            (5, ["v1"]),
            (10, ["v1"]),  # the release too
            (10.5, ["v1"]),  # within grace, nobody else
            (12, ["v2", "v1"]),  # v2 holds it, v1 within grace: ambiguous
            (15, ["v2"]),
            (21, ["v2"]),
            (23, []),  # past the grace
            (35, ["v3"]),
            (60 * 24 * 30, ["v3"]),  # never released: live as far as the store knows
        ],
    )
    async def test_who_held_the_number(
        self, history: AsyncEngine, minute: float, holders: list[str]
    ) -> None:
        """At any moment the store names the visit that held a number, or both when one was just
        released within the grace period, and none before or after."""
        async with history.connect() as conn:
            assert visit_ids(await leases_at(conn, A, at(minute), GRACE)) == holders

    async def test_without_grace(self, history: AsyncEngine) -> None:
        """Without a grace period a released number belongs to nobody until the next visit takes
        it."""
        async with history.connect() as conn:
            assert visit_ids(await leases_at(conn, A, at(10.5))) == []
            assert visit_ids(await leases_at(conn, A, at(11))) == ["v2"]
            assert await leases_at(conn, B, at(11), GRACE) == []

    async def test_hold_ends_a_lease_never_released(self, history: AsyncEngine) -> None:
        """A lease never released counts as ended once its hold has passed, plus the grace
        period."""
        hold = timedelta(minutes=15)
        async with history.connect() as conn:
            assert visit_ids(await leases_at(conn, A, at(55), hold=hold)) == ["v3"]
            assert visit_ids(await leases_at(conn, A, at(56), GRACE, hold=hold)) == ["v3"]
            assert await leases_at(conn, A, at(58), GRACE, hold=hold) == []


class TestReturningVisitor:
    async def test_last_number_shown_to_the_visitor(self, engine: AsyncEngine) -> None:
        """The last number shown to a visitor is found overall or within one pool, and none for an
        unknown visitor."""
        async with engine.begin() as conn:
            await save_visit(conn, visit("v1", visitor_id="browser-1"))
            await save_visit(conn, visit("v2", minutes=60, visitor_id="browser-1"))
            await save_visit(conn, visit("v3", minutes=90, visitor_id="browser-2"))
            await save_visit(conn, visit("v4", minutes=120, visitor_id="browser-1"))
            await start_lease(conn, POOL, A, "v1", at(0))
            await release_lease(conn, "v1", at(10))
            await start_lease(conn, POOL, B, "v2", at(60))
            await release_lease(conn, "v2", at(70))
            await start_lease(conn, POOL, C, "v3", at(90))
            await start_lease(conn, "other", A, "v4", at(120))
            assert await last_number_of(conn, "browser-1") == A
            assert await last_number_of(conn, "browser-1", POOL) == B
            assert await last_number_of(conn, "browser-2", POOL) == C
            assert await last_number_of(conn, "browser-3") is None


class TestPoolUsage:
    async def test_counters_by_hour(self, engine: AsyncEngine) -> None:
        """Pool use is summed per hour: numbers in use now, the peak, numbers given out and
        exhaustions since a moment, for that pool only."""
        async with engine.begin() as conn:
            await record_pool_use(conn, POOL, at(-70), leases_started=9, in_use=9)
            await record_pool_use(conn, POOL, at(1), leases_started=1, in_use=3)
            await record_pool_use(conn, POOL, at(20), exhaustions=1, in_use=5)
            await record_pool_use(conn, POOL, at(30), leases_started=2, in_use=4)
            await record_pool_use(conn, POOL, at(75), exhaustions=2)
            await record_pool_use(conn, "other", at(1), exhaustions=7, in_use=8)
            await add_visits(conn, "v1", "v2")
            await start_lease(conn, POOL, A, "v1", at(1))
            await start_lease(conn, POOL, B, "v2", at(1))
            await release_lease(conn, "v2", at(2))
            usage = await pool_usage(conn, POOL, since=at(10))
            assert usage == PoolUsage(live=1, peak_in_use=5, leases_started=3, exhaustions=3)
            assert await pool_usage(conn, "none", T0) == PoolUsage(0, 0, 0, 0)


# --- index plan: "who held DID X at t" with months of history --------------

DIDS = [f"+7495{i:07d}" for i in range(20)]
LEASES_PER_DID = 1000  # one every two hours: about 83 days of history per DID


async def fill_history(conn: AsyncConnection) -> None:
    """20,000 leases: for each DID one every two hours, 90 minutes long."""
    await conn.execute(
        insert(visits_table),
        [{"id": f"v{i}", "pool": POOL, "started_at": T0, "last_seen_at": T0} for i in range(100)],
    )
    rows = []
    for n in range(LEASES_PER_DID):
        start = T0 + timedelta(hours=2 * n)
        for index, did in enumerate(DIDS):
            end = start + timedelta(minutes=90)
            rows.append(
                {
                    "pool": POOL,
                    "did": did,
                    "visit_id": f"v{(n + index) % 100}",
                    "started_at": start,
                    "last_seen_at": end,
                    "released_at": end,
                }
            )
    await conn.execute(insert(leases_table), rows)


@contextmanager
def statements_of(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (with parameters) run on ``engine`` meanwhile."""
    seen: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        _, _, statement, parameters, _, _ = args
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def plan_of(conn: AsyncConnection, statement: str, parameters: Any) -> str:
    explain = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    result = await conn.exec_driver_sql(explain + statement, parameters)
    return "\n".join(" ".join(str(part) for part in row) for row in result.all())


async def test_who_held_a_did_uses_the_indexes(engine: AsyncEngine) -> None:
    """Finding who held a number at a call's moment reads the two lease indexes, not the whole lease
    history, so crediting a call stays fast as history grows."""
    async with engine.begin() as conn:
        await fill_history(conn)
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    moment = T0 + timedelta(hours=2 * 500, minutes=91)  # a minute after a release
    async with engine.connect() as conn:
        with statements_of(engine) as statements:
            found = await leases_at(conn, DIDS[7], moment, GRACE)
        assert [lease.started_at for lease in found] == [T0 + timedelta(hours=1000)]
        assert found[0].visit_id == f"v{(500 + 7) % 100}"
        plans = [await plan_of(conn, *statement) for statement in statements]
    assert len(plans) == 2
    if engine.dialect.name == "postgresql":
        assert plans[0].startswith("Limit"), plans[0]  # one backward step, not the history
    indexes = ["ix_number_leases_did_started_at", "ix_number_leases_did_released_at"]
    for plan, index in zip(plans, indexes, strict=True):
        if engine.dialect.name == "postgresql":
            assert "Index Scan" in plan and index in plan, plan
            assert "Seq Scan" not in plan, plan
        else:
            assert f"USING INDEX {index}" in plan, plan
            assert "SCAN number_leases" not in plan and "TEMP B-TREE" not in plan, plan


class TestBatches:
    """The executemany variants a group commit writes with: same rows as one by one."""

    async def test_visits_saved_and_touched_together(self, engine: AsyncEngine) -> None:
        """Visits saved and touched in one go read back as saved one by one, last-seen never moving
        back and unknown visits ignored."""
        labelled = visit("v1", utm_source="yandex", visitor_id="visitor-1", client_ip="192.0.2.1")
        async with engine.begin() as conn:
            await save_visits(conn, [labelled, visit("v2"), visit("v3")])
            await save_visits(conn, [])
            await touch_visits(conn, {"v1": at(5), "v2": at(-1), "forged": at(5)})
            await touch_visits(conn, {})
        async with engine.connect() as conn:
            assert await get_visit(conn, "v1") == replace(labelled, last_seen_at=at(5))
            assert await get_visit(conn, "v2") == visit("v2")  # never back
            assert await get_visit(conn, "v3") == visit("v3")

    async def test_leases_started_extended_and_released_together(self, engine: AsyncEngine) -> None:
        """Leases started, extended and released in one go end up as done one by one, including a
        lease left open by a stopped daemon."""
        async with engine.begin() as conn:
            await add_visits(conn, "v0", "v1", "v2", "v3")
            await start_lease(conn, POOL, C, "v0", at(-30))  # left open by a stopped daemon
            await start_leases(
                conn,
                POOL,
                [
                    Lease(A, "v1", at(0), at(2)),
                    Lease(B, "v2", at(1), at(1), released_at=at(3)),  # ended within the batch
                    Lease(C, "v3", at(2), at(2)),
                ],
            )
            await extend_leases(conn, {"v1": at(4), "v2": at(9), "v3": at(1)})
            await release_leases(conn, {"v3": at(6), "v0": at(7)})
            leases = {lease.visit_id: lease for lease in await leases_at(conn, C, at(-1))}
            assert leases["v0"].released_at == at(0)  # closed before the batch's first start
            live = await live_leases(conn, POOL)
            assert [(lease.visit_id, lease.last_seen_at) for lease in live] == [("v1", at(4))]
            (ended,) = await leases_at(conn, B, at(2))
            assert (ended.visit_id, ended.last_seen_at, ended.released_at) == ("v2", at(1), at(3))
            (released,) = await leases_at(conn, C, at(5))
            assert (released.visit_id, released.last_seen_at, released.released_at) == (
                "v3",
                at(2),
                at(6),
            )

    async def test_last_numbers_of_many_visitors(self, engine: AsyncEngine) -> None:
        """The last numbers of many visitors are found in one go, per pool or overall, leaving out
        visitors without one."""
        async with engine.begin() as conn:
            for visit_id, visitor in (("v1", "ann"), ("v2", "ann"), ("v3", "bob"), ("v4", "eve")):
                await save_visit(conn, visit(visit_id, visitor_id=visitor))
            await start_lease(conn, POOL, A, "v1", at(0))
            await release_lease(conn, "v1", at(1))
            await start_lease(conn, POOL, B, "v2", at(2))
            await start_lease(conn, "other", C, "v3", at(2))
            found = await last_numbers_of(conn, ["ann", "bob", "eve", "nobody"], POOL)
            assert found == {"ann": B}
            assert await last_numbers_of(conn, ["bob", "ann"]) == {"ann": B, "bob": C}
            assert await last_numbers_of(conn, []) == {}

    async def test_one_batch_writes_everything_in_order(self, engine: AsyncEngine) -> None:
        """One batch stores new visits, touches, lease ends and starts and pool use in the right
        order, so a number released and given out again in it has the right holders."""
        old = visit("v0", visitor_id="ann")
        async with engine.begin() as conn:
            await save_visit(conn, old)
            await start_lease(conn, POOL, A, "v0", at(0))
        new = visit("v1", minutes=10, visitor_id="ann", utm_source="yandex", client_ip="192.0.2.1")
        bare = visit("v2", minutes=10)  # every label None: a column of NULLs
        batch = VisitBatch(
            POOL,
            visits=[new, bare],
            touched={"v0": at(9)},
            extended={"v0": at(9)},
            released={"v0": at(9.5)},
            leases=[Lease(A, "v1", at(10), at(10)), Lease(B, "v2", at(10), at(10), at(11))],
            use=[PoolUse(at(10), leases_started=2, in_use=1), PoolUse(at(11), exhaustions=1)],
        )
        async with engine.begin() as conn:
            await write_visit_batch(conn, batch)
            await write_visit_batch(conn, VisitBatch(POOL))  # nothing to write
        async with engine.connect() as conn:
            assert await get_visit(conn, "v1") == new
            assert await get_visit(conn, "v2") == bare
            assert await get_visit(conn, "v0") == replace(old, last_seen_at=at(9))
            (a_then,) = await leases_at(conn, A, at(5))
            assert (a_then.visit_id, a_then.last_seen_at, a_then.released_at) == (
                "v0",
                at(9),
                at(9.5),
            )
            live = await live_leases(conn, POOL)
            assert [(lease.visit_id, lease.did) for lease in live] == [("v1", A)]
            assert await last_numbers_of(conn, ["ann"], POOL) == {"ann": A}
            usage = await pool_usage(conn, POOL, T0)
        assert (usage.leases_started, usage.exhaustions, usage.peak_in_use) == (2, 1, 1)

    async def test_batch_errors_are_sqlalchemy_errors(self, engine: AsyncEngine) -> None:
        """A batch with a duplicate visit or a naive time fails as a whole and stores nothing."""
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await write_visit_batch(conn, VisitBatch(POOL, visits=[visit("v1"), visit("v1")]))
        naive = datetime(2026, 11, 24, 10, 0)
        with pytest.raises(ValueError, match="naive"):
            async with engine.begin() as conn:
                await touch_visits(conn, {"v1": naive})
        async with engine.connect() as conn:
            assert await get_visit(conn, "v1") is None  # rolled back
