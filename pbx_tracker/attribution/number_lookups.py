"""`NumberLookups`: the number a returning visitor was last shown, read from the store.

A stored pool remembers the last number of its most recent visitors; for any
other visitor it asks the store (`visits.last_numbers_of`), so the number
survives restarts.  The lookups of concurrent requests share one query; the
reader task keeps its connection while there are lookups and ends when idle
(after the pool's linger), as the pool's writer does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx_tracker.attribution.group_commit import close_quietly, fail
from pbx_tracker.attribution.visits import last_numbers_of
from pbx_tracker.store.engine import describe_error

__all__ = ["Linger", "NumberLookups"]

log = structlog.get_logger(__name__)

Linger = Callable[[asyncio.Event], Awaitable[bool]]


class NumberLookups:
    """The visitors' last numbers in pool ``pool``'s store, looked up by a reader task.

    ``linger``: the pool's wait for more work (True: there is more; False: end now).
    ``reader``: the reader task while it runs."""

    def __init__(self, engine: AsyncEngine, pool: str, linger: Linger) -> None:
        self.engine = engine
        self.pool = pool
        self.reader: asyncio.Task[None] | None = None
        self._linger = linger
        self._lookups: dict[str, list[asyncio.Future[str | None]]] = {}
        self._more = asyncio.Event()  # for a lingering reader: lookups to answer

    async def last_number(self, visitor_id: str) -> str | None:
        """The visitor's last number in the store (None: none), read together with the
        lookups of other requests; `VisitStoreError` when the store cannot be read."""
        found: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._lookups.setdefault(visitor_id, []).append(found)
        if self.reader is None:
            self.reader = asyncio.create_task(self._read())
        else:
            self._more.set()
        return await found

    def wake(self) -> None:
        """A lingering reader looks again (the pool is closing)."""
        self._more.set()

    async def _read(self) -> None:
        """Answer the pending visitor lookups, one query per round, until none is left
        (on one connection while there are any)."""
        conn: AsyncConnection | None = None
        try:
            while True:
                self._more.clear()
                if not self._lookups:
                    if await self._linger(self._more) or self._lookups:
                        continue
                    break
                pending, self._lookups = self._lookups, {}
                try:
                    conn = conn or await self.engine.connect().start()
                    found = await last_numbers_of(conn, pending, self.pool)
                except Exception as error:
                    await close_quietly(conn)
                    conn = None
                    log.error(
                        "attribution.pool_lookup_failed",
                        pool=self.pool,
                        error=describe_error(error),
                    )
                    for futures in pending.values():
                        for future in futures:
                            fail(future, error)
                    continue
                for visitor_id, futures in pending.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(found.get(visitor_id))
        finally:
            self.reader = None
            for futures in self._lookups.values():  # only when cancelled
                for future in futures:
                    future.cancel()
            await close_quietly(conn)
