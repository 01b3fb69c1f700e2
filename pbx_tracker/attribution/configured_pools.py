"""`VisitPools`: the configured number pools behind the visits API, each a
`StoredVisitPool` on the daemon's database.

A request names its pool (the snippet's ``data-pool``); a request without one
goes to the first configured pool.  A keep-alive carries only the visit id: the
pool that started the visit answers it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.attribution.memory_pool import Clock
from pbx_tracker.attribution.settings import AttributionSettings, NumberPool
from pbx_tracker.attribution.stored_pool import StoredVisitPool
from pbx_tracker.attribution.visit_pool import KeepAliveAnswer, UnknownPool, VisitAnswer, VisitStart

__all__ = ["VisitPools"]

# the pools' writers keep their database connection this long after the last request
# (saves PostgreSQL's connection checks on a busy site; `close` ends them)
LINGER_SECONDS = 1.0


class VisitPools:
    """Several `StoredVisitPool`s as one `VisitPool`."""

    def __init__(self, pools: Sequence[StoredVisitPool]) -> None:
        if not pools:
            raise ValueError("at least one number pool")
        self.pools = {pool.name: pool for pool in pools}
        self._default = pools[0]

    @classmethod
    def from_settings(
        cls,
        engine: AsyncEngine,
        pools: Sequence[NumberPool],
        *,
        region: str,
        privacy: AttributionSettings,
        clock: Clock,
    ) -> VisitPools:
        return cls([_stored_pool(engine, pool, region, privacy, clock) for pool in pools])

    async def restore(self) -> None:
        """Each pool's live visits back from the store (at start)."""
        for pool in self.pools.values():
            await pool.restore()

    async def start(self, request: VisitStart, client: str, *, bot: bool = False) -> VisitAnswer:
        pool = self._default if request.pool is None else self.pools.get(request.pool)
        if pool is None:
            raise UnknownPool(request.pool)
        return await pool.start(request, client, bot=bot)

    async def keep_alive(self, visit_id: str, client: str) -> KeepAliveAnswer | None:
        """The pool that holds the visit answers; else each asks the store in turn (a
        visit another daemon started)."""
        for pool in self.pools.values():
            if pool.holds(visit_id):
                return await pool.keep_alive(visit_id, client)
        for pool in self.pools.values():
            answer = await pool.keep_alive(visit_id, client)
            if answer is not None:
                return answer
        return None

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()


def _stored_pool(
    engine: AsyncEngine, pool: NumberPool, region: str, privacy: AttributionSettings, clock: Clock
) -> StoredVisitPool:
    return StoredVisitPool(
        engine,
        name=pool.name,
        numbers=pool.numbers,
        fallback=pool.fallback,
        region=region,
        hold_seconds=pool.hold.total_seconds(),
        quarantine_seconds=pool.quarantine_minutes * 60,
        max_visits_per_client=pool.max_visits_per_client,
        max_visits_per_network=pool.max_visits_per_network,
        static_number_for_bots=pool.static_number_for_bots,
        store_client_ip=privacy.store_client_ip,
        store_analytics_ids=privacy.store_analytics_ids,
        linger_seconds=LINGER_SECONDS,
        clock=clock,
    )
