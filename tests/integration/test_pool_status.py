"""`pool status` figures from the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.attribution.settings import AttributionSettings, NumberPool
from pbx_tracker.attribution.status import pool_status
from pbx_tracker.attribution.visits import (
    Visit,
    record_pool_use,
    save_visit,
    start_lease,
    touch_visit,
)
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction
from pbx_tracker.store.calls import save_calls

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
POOL = NumberPool(name="site", numbers=[f"+7495111001{n}" for n in range(5)], hold_minutes=20)


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def call(linkedid: str, method: str) -> CallRecord:
    return CallRecord(
        linkedid=linkedid,
        node="pbx",
        direction=Direction.INBOUND,
        did=POOL.numbers[0],
        caller="+79161234567",
        caller_name=None,
        status=CallStatus.MISSED,
        missed_reason=None,
        answered_by=None,
        transferred_to=None,
        started_at=ago(30),
        answered_at=None,
        ended_at=ago(29),
        ring_seconds=10,
        talk_seconds=0,
        recording_path=None,
        attribution={"method": method, "pool": "site", "confidence": None},
    )


async def test_status_shows_use_exhaustion_traffic_and_attribution(engine: AsyncEngine) -> None:
    """pool status shows numbers in use, the busiest hour's use and exhaustions, visits per hour,
    minutes on site, the recommended size, and a warning when half the calls could not be
    credited."""
    async with engine.begin() as conn:
        # two visits of 6 and 10 minutes; one still holds its number, one's hold ran out
        for visit_id, start, length, did in (("a", 70, 6, 0), ("b", 15, 10, 1)):
            visit = Visit(visit_id, "site", ago(start), ago(start))
            await save_visit(conn, visit)
            await start_lease(conn, "site", POOL.numbers[did], visit_id, ago(start))
            await touch_visit(conn, visit_id, ago(start - length))
        # the busiest hour: 150 numbers given and 30 visits shown the fallback
        await record_pool_use(conn, "site", ago(120), leases_started=150, exhaustions=30, in_use=5)
        await record_pool_use(conn, "site", ago(10), leases_started=20, in_use=3)
        await save_calls(
            conn,
            [
                call("1", "session"),
                call("2", "session"),
                call("3", "ambiguous"),
                call("4", "unattributed"),
            ],
        )
        status = await pool_status(
            conn, POOL, AttributionSettings(warn_min_calls=4), since=ago(24 * 60), now=NOW
        )
    assert status.size == 5
    assert status.in_use == 1  # "a" was last seen 64 min ago, beyond the 20-min hold
    assert (status.peak_in_use, status.leases_started, status.exhaustions) == (5, 170, 30)
    assert status.visits_per_hour == 180
    assert status.minutes_on_site == 8.0
    # 180 visits/h * (8 + 20) min / 60 * 1.2 = 100.8
    assert status.recommended_size == 101
    assert status.calls == 4
    assert status.calls_by_method == {"session": 2, "ambiguous": 1, "unattributed": 1}
    assert status.unattributed_share == 0.5
    assert status.warning is not None and "2 of 4 calls (50%)" in status.warning


async def test_status_of_an_unused_pool(engine: AsyncEngine) -> None:
    """An unused pool shows nothing in use, no calls, the smallest recommended size and no
    warning."""
    async with engine.connect() as conn:
        status = await pool_status(conn, POOL, AttributionSettings(), since=ago(60), now=NOW)
    assert (status.in_use, status.calls, status.visits_per_hour) == (0, 0, 0)
    assert status.recommended_size == 4
    assert status.unattributed_share is None and status.warning is None
