"""How a number pool is doing: use, exhaustion, attribution, and the size it needs.

Read from the store, so the CLI (`pbx-tracker pool status`) and the daemon's
status endpoint show the same figures, whichever daemon served the visits.

- ``in_use``: leases live now (not released, kept alive within the hold);
- ``peak_in_use``, ``leases_started``, ``exhaustions``: from the hourly
  ``pool_stats`` rows of the period;
- ``visits_per_hour``: new visits in the busiest hour of the period (a visit
  given a number or shown the fallback);
- ``minutes_on_site``: the median time from a visit's start to its last
  keep-alive, over the period's latest visits;
- ``recommended_size``: `pool.recommended_pool_size` from those two and the
  pool's hold (20 % headroom, never below 4);
- calls on the pool's numbers by attribution method, and ``warning`` when the
  share without a single visit (unattributed or ambiguous) passes
  ``attribution.warn_unattributed_share`` over at least ``warn_min_calls`` calls.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.attribution.pool import recommended_pool_size
from pbx_tracker.attribution.settings import AttributionSettings, NumberPool
from pbx_tracker.attribution.visits import hour_of, leases_table, stats_table, visits_table
from pbx_tracker.store.models import CallRow

__all__ = ["PoolStatus", "pool_status", "share_warning"]

VISIT_SAMPLE = 5000
_calls = CallRow.__table__
_UNEXPLAINED = ("unattributed", "ambiguous")


class PoolStatus(BaseModel):
    """One pool's figures (the module docstring says what each means)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pool: str
    size: int
    in_use: int
    peak_in_use: int
    leases_started: int
    exhaustions: int
    visits_per_hour: int
    minutes_on_site: float
    hold_minutes: float
    recommended_size: int
    calls: int
    calls_by_method: dict[str, int]
    unattributed_share: float | None
    warning: str | None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


async def pool_status(
    conn: AsyncConnection,
    pool: NumberPool,
    settings: AttributionSettings,
    *,
    since: datetime,
    now: datetime,
) -> PoolStatus:
    """The pool's figures from ``since`` (hour resolution for the hourly ones) to ``now``."""
    peak, started, exhausted, busiest = await _hourly(conn, pool.name, since)
    minutes = await _minutes_on_site(conn, pool.name, since)
    methods = await _calls_by_method(conn, pool, since)
    calls = sum(methods.values())
    unexplained = sum(methods.get(m, 0) for m in _UNEXPLAINED)
    share = unexplained / calls if calls else None
    return PoolStatus(
        pool=pool.name,
        size=len(pool.numbers),
        in_use=await _in_use(conn, pool, now),
        peak_in_use=peak,
        leases_started=started,
        exhaustions=exhausted,
        visits_per_hour=busiest,
        minutes_on_site=round(minutes, 1),
        hold_minutes=pool.hold_minutes,
        recommended_size=recommended_pool_size(busiest, minutes, pool.hold_minutes),
        calls=calls,
        calls_by_method=methods,
        unattributed_share=None if share is None else round(share, 3),
        warning=share_warning(pool.name, unexplained, calls, settings),
    )


def share_warning(
    pool: str, unexplained: int, calls: int, settings: AttributionSettings
) -> str | None:
    """The warning text when too many of ``calls`` have no single visit, else None."""
    if calls < settings.warn_min_calls or unexplained / calls <= settings.warn_unattributed_share:
        return None
    return (
        f"pool {pool}: {unexplained} of {calls} calls ({unexplained / calls:.0%}) have no "
        f"single visit (limit {settings.warn_unattributed_share:.0%}); the pool may be too "
        "small or the hold too short"
    )


async def _hourly(conn: AsyncConnection, pool: str, since: datetime) -> tuple[int, int, int, int]:
    s = stats_table.c
    new_visits = s.leases_started + s.exhaustions
    query = select(
        func.coalesce(func.max(s.peak_in_use), 0),
        func.coalesce(func.sum(s.leases_started), 0),
        func.coalesce(func.sum(s.exhaustions), 0),
        func.coalesce(func.max(new_visits), 0),
    ).where(s.pool == pool, s.hour >= hour_of(since))
    peak, started, exhausted, busiest = (await conn.execute(query)).one()
    return int(peak), int(started), int(exhausted), int(busiest)


async def _in_use(conn: AsyncConnection, pool: NumberPool, now: datetime) -> int:
    c = leases_table.c
    query = (
        select(func.count())
        .select_from(leases_table)
        .where(
            c.pool == pool.name,
            c.released_at.is_(None),
            c.last_seen_at > now - pool.hold,
        )
    )
    return int((await conn.execute(query)).scalar_one())


async def _minutes_on_site(conn: AsyncConnection, pool: str, since: datetime) -> float:
    v = visits_table.c
    query = (
        select(v.started_at, v.last_seen_at)
        .where(v.pool == pool, v.started_at >= since)
        .order_by(v.started_at.desc())
        .limit(VISIT_SAMPLE)
    )
    lengths = [
        (row.last_seen_at - row.started_at).total_seconds() / 60
        for row in (await conn.execute(query)).all()
    ]
    return statistics.median(lengths) if lengths else 0.0


async def _calls_by_method(
    conn: AsyncConnection, pool: NumberPool, since: datetime
) -> dict[str, int]:
    c = _calls.c
    method = func.coalesce(c.attribution_method, "unattributed")
    query = (
        select(method, func.count())
        .where(c.did.in_(pool.numbers), c.started_at >= since)
        .group_by(method)
    )
    return {str(name): int(count) for name, count in (await conn.execute(query)).all()}
