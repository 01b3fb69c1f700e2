"""`StoredVisitPool`: the number pool of `MemoryVisitPool`, with visits and leases stored.

The allocator and the live visits stay in memory (the decisions are the same as
`MemoryVisitPool`'s); every request also writes what it changed, in one
transaction: the leases the allocator ended (`release_lease`), the new visit and
its lease, keep-alives, and the pool's use.  A returning visitor's previous
number comes from the store, so it survives restarts; `restore` rebuilds the
allocator and the live visits from the stored leases after a restart.

Requests are handled one at a time (an `asyncio.Lock`): the allocator's choice
is made and reserved in memory with no await in between, and the writes reach
the store in the order the allocator made its decisions (a number's old lease
is closed before its new one starts).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx_tracker.attribution.pool import Assignment, Lease, PoolAllocator
from pbx_tracker.attribution.visits import (
    Visit,
    extend_lease,
    get_visit,
    last_number_of,
    latest_leases,
    record_pool_use,
    release_lease,
    save_visit,
    start_lease,
    touch_visit,
)
from pbx_tracker.phones import display_number
from pbx_tracker.web.memory_pool import Clock, MemoryVisitPool, _LiveVisit, _utc_now
from pbx_tracker.web.models import (
    KeepAliveAnswer,
    TooManyVisits,
    UnknownPool,
    VisitAnswer,
    VisitStart,
)

__all__ = ["StoredVisitPool"]

log = structlog.get_logger(__name__)

_Write = Callable[[AsyncConnection], Awaitable[None]]


class StoredVisitPool(MemoryVisitPool):
    """One number pool whose visits, leases and use are stored through ``engine``."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        name: str,
        numbers: Sequence[str],
        fallback: str,
        region: str = "RU",
        hold_seconds: float = 1800.0,
        quarantine_seconds: float = 0.0,
        max_visits_per_client: int = 5,
        clock: Clock = _utc_now,
    ) -> None:
        super().__init__(
            numbers,
            fallback=fallback,
            name=name,
            region=region,
            hold_seconds=hold_seconds,
            quarantine_seconds=quarantine_seconds,
            max_visits_per_client=max_visits_per_client,
            remembered_visitors=1,
            clock=clock,
        )
        self.engine = engine
        self._quarantine_seconds = quarantine_seconds
        self._lock = asyncio.Lock()
        self._ended: list[Lease] = []

    async def restore(self) -> None:
        """Rebuild the allocator and the live visits from the stored leases (at start);
        the leases whose hold ran out meanwhile are released in the store."""
        async with self._lock, self.engine.connect() as conn:
            stored = await latest_leases(conn, self.allocator.numbers)
            self.allocator = PoolAllocator(
                self.allocator.numbers,
                hold_seconds=self.allocator.hold.total_seconds(),
                quarantine_seconds=self._quarantine_seconds,
                leases=[lease.lease() for lease in stored],
            )
            for lease in self.allocator.live_leases():
                await self._restore_visit(conn, lease)
        async with self._lock:
            self._tick()
            await self._store(_nothing)
        log.info("visit_pool.restored", pool=self.name, live=self.allocator.in_use)

    async def start(self, request: VisitStart, client: str) -> VisitAnswer:
        if request.pool is not None and request.pool != self.name:
            raise UnknownPool(request.pool)
        previous = await self._previous_number(request.visitor_id)
        async with self._lock:
            now = self._tick()
            resumed = self._resume(request.visitor_id, client, now)
            if resumed is not None:
                await self._store(partial(self._store_keep_alive, visit=resumed, now=now))
                return self._answer(resumed)
            if self._per_client[client] >= self.max_visits_per_client:
                raise TooManyVisits(retry_after=self._hold_seconds)
            visit_id = secrets.token_urlsafe(16)
            assignment = self.allocator.assign(visit_id, now, previous)
            visit = _LiveVisit(visit_id, client, request.visitor_id, assignment.number, now)
            self._add(visit)
            stored = _stored_visit(self.name, visit, request)
            await self._store(
                partial(self._store_start, visit=stored, assignment=assignment, now=now)
            )
        log.debug("visit.started", visit_id=visit_id, number=visit.number, client=client)
        return self._answer(visit)

    async def keep_alive(self, visit_id: str, client: str) -> KeepAliveAnswer | None:
        async with self._lock:
            now = self._tick()
            visit = self._visits.get(visit_id)
            if visit is not None and (
                visit.number is None or self.allocator.keep_alive(visit_id, now) is not None
            ):
                self._touch(visit, now)
                await self._store(partial(self._store_keep_alive, visit=visit, now=now))
                display = display_number(visit.number or self.fallback, self.region)
                return KeepAliveAnswer(
                    visit_id=visit_id,
                    number=visit.number,
                    display=display,
                    expires_in=self._hold_seconds,
                )
            if visit is not None:
                self._drop(visit)
            if self._ended:
                await self._store(_nothing)
            return None

    # internals

    def _leases_ended(self, leases: list[Lease]) -> None:
        """Kept until the next transaction stores them (`release_lease`)."""
        self._ended.extend(leases)

    async def _previous_number(self, visitor_id: str | None) -> str | None:
        if visitor_id is None:
            return None
        async with self.engine.connect() as conn:
            return await last_number_of(conn, visitor_id, self.name)

    async def _restore_visit(self, conn: AsyncConnection, lease: Lease) -> None:
        stored = await get_visit(conn, lease.visit_id)
        client = (stored.client_ip if stored else None) or "unknown"
        visitor_id = stored.visitor_id if stored else None
        self._add(_LiveVisit(lease.visit_id, client, visitor_id, lease.number, lease.last_seen_at))

    async def _store(self, write: _Write) -> None:
        """One transaction: the ended leases first, then ``write``."""
        ended, self._ended = self._ended, []
        try:
            async with self.engine.begin() as conn:
                for lease in ended:
                    await release_lease(conn, lease.visit_id, lease.ends_at(self.allocator.hold))
                await write(conn)
        except BaseException:
            self._ended = ended + self._ended
            raise

    async def _store_start(
        self, conn: AsyncConnection, visit: Visit, assignment: Assignment, now: datetime
    ) -> None:
        await save_visit(conn, visit)
        if assignment.started and assignment.number is not None:
            await start_lease(conn, self.name, assignment.number, visit.id, now)
        await record_pool_use(
            conn,
            self.name,
            now,
            leases_started=int(assignment.started),
            exhaustions=int(assignment.exhausted),
            in_use=self.allocator.in_use,
        )

    async def _store_keep_alive(
        self, conn: AsyncConnection, visit: _LiveVisit, now: datetime
    ) -> None:
        await touch_visit(conn, visit.visit_id, now)
        if visit.number is not None:
            await extend_lease(conn, visit.visit_id, now)


async def _nothing(conn: AsyncConnection) -> None:
    return None


def _stored_visit(pool: str, visit: _LiveVisit, request: VisitStart) -> Visit:
    return Visit(
        id=visit.visit_id,
        pool=pool,
        started_at=visit.last_seen,
        last_seen_at=visit.last_seen,
        landing_page=str(request.page),
        referrer=None if request.referrer is None else str(request.referrer),
        utm_source=request.utm_source,
        utm_medium=request.utm_medium,
        utm_campaign=request.utm_campaign,
        utm_term=request.utm_term,
        utm_content=request.utm_content,
        gclid=request.gclid,
        yclid=request.yclid,
        fbclid=request.fbclid,
        ga_client_id=request.ga_client_id,
        ym_client_id=request.ym_client_id,
        visitor_id=visit.visitor_id,
        client_ip=visit.client,
    )
