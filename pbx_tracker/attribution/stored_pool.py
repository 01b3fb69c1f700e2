"""`StoredVisitPool`: the number pool of `MemoryVisitPool`, with visits and leases stored.

The allocator and the live visits stay in memory (the decisions are the same as
`MemoryVisitPool`'s); what each request changed is stored: the new visit and its
lease, keep-alives, the leases the allocator ended, and the pool's use.  A
returning visitor's previous number comes from memory (the last
``remembered_visitors`` visitors) or else from the store, so it survives
restarts; `restore` rebuilds the allocator and the live visits from the stored
leases after a restart.

Group commit (`group_commit`): each request decides in memory, adds what it
changed to the open batch and waits for that batch's commit before it answers;
one writer task writes the batches one after the other, each in one
transaction.  A batch that fails fails its requests (`VisitStoreError`, a 500
from the API) and memory is put back in line with the store.  Returning
visitors' numbers are looked up in the store by `number_lookups.NumberLookups`.

Several daemons, one pool.  Daemons that share a database (PostgreSQL)
behind one proxy serve the same pool, each deciding in memory; the store
arbitrates (`attribution.visit_batches`: one live lease per number, a unique index).
A new lease on a number another daemon shows is refused when the batch is
written: the daemon then learns the pool's live leases (`PoolAllocator.take_over`),
decides again for the refused visits (another number, or none: the fallback;
at most ``MAX_TRIES`` times) and those requests wait for the next batch; the
rest of the batch is committed as usual.  A keep-alive of a visit this daemon
does not hold (started by another daemon, or before a restart) is answered
from the store when the visit is live there, and the visit is held here from
then on.  A lease that runs out in this daemon's memory is ended in the store
only if no other daemon kept it alive meanwhile.

The writer task runs while there is something to write and ends when idle
(after ``linger_seconds`` without work);
`aclose` waits until every decided write is committed or failed (the daemon
calls it on stop, after the HTTP server stopped taking requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx_tracker.attribution.group_commit import (
    Done,
    OpenBatch,
    VisitStoreError,
    WriteStats,
    close_quietly,
    fail,
    stored_visit,
)
from pbx_tracker.attribution.memory_pool import (
    Clock,
    LiveVisit,
    MemoryVisitPool,
    network_of,
    utc_now,
)
from pbx_tracker.attribution.number_lookups import NumberLookups
from pbx_tracker.attribution.pool import Assignment, Lease, PoolAllocator
from pbx_tracker.attribution.visit_batches import BatchResult, write_visit_batch
from pbx_tracker.attribution.visit_pool import (
    KeepAliveAnswer,
    UnknownPool,
    VisitAnswer,
    VisitStart,
)
from pbx_tracker.attribution.visit_records import StoredLease
from pbx_tracker.attribution.visits import get_visit, latest_leases, live_lease_of
from pbx_tracker.store.engine import describe_error
from pbx_tracker.waking import woken

__all__ = ["StoredVisitPool", "VisitStoreError", "WriteStats"]

log = structlog.get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)  # where structlog's events of ``log`` end

MAX_TRIES = 4  # decisions for one visit whose lease the store refuses, then the fallback


class StoredVisitPool(MemoryVisitPool):
    """One number pool whose visits, leases and use are stored through ``engine``.

    ``store_client_ip`` False: visits are stored without the client's address (the
    per-client cap still counts it in memory; a visit restored after a restart counts
    for the address it is next resumed from).  ``store_analytics_ids`` False: without
    the Google Analytics and Yandex Metrica client ids (no upload to them then).

    ``linger_seconds``: how long the writer and the reader wait for more work before
    they end and give their connection back to the engine's pool.  0: at once (every
    request of a quiet site takes a connection, and PostgreSQL's pre-ping and reset
    cost round trips); more saves that, and then the pool holds up to two connections
    until `aclose`, which its owner must call (the daemon does).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        name: str,
        numbers: Sequence[str],
        fallback: str | None,
        region: str = "RU",
        hold_seconds: float = 1800.0,
        quarantine_seconds: float = 0.0,
        max_visits_per_client: int = 5,
        max_visits_per_network: int | None = None,
        static_number_for_bots: bool = True,
        remembered_visitors: int = 10_000,
        store_client_ip: bool = True,
        store_analytics_ids: bool = True,
        linger_seconds: float = 0.0,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(
            numbers,
            fallback=fallback,
            name=name,
            region=region,
            hold_seconds=hold_seconds,
            quarantine_seconds=quarantine_seconds,
            max_visits_per_client=max_visits_per_client,
            max_visits_per_network=max_visits_per_network,
            static_number_for_bots=static_number_for_bots,
            remembered_visitors=remembered_visitors,
            clock=clock,
        )
        self.engine = engine
        self.store_client_ip = store_client_ip
        self.store_analytics_ids = store_analytics_ids
        self.linger_seconds = linger_seconds
        self._quarantine_seconds = quarantine_seconds
        self._lock = asyncio.Lock()
        self._batch = OpenBatch()
        self._writer: asyncio.Task[None] | None = None
        self.lookups = NumberLookups(engine, name, self._linger)
        self._more_writes = asyncio.Event()  # for a lingering writer: a batch to write
        self._closing = False
        self._tries: dict[str, int] = {}  # visits whose lease the store refused
        self.refused_leases = 0
        self.stats = WriteStats()

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
            done = self._batch.wait(None)
            self._write_soon()
        await _committed(done)
        log.info("attribution.pool_restored", pool=self.name, live=self.allocator.in_use)

    async def start(self, request: VisitStart, client: str, *, bot: bool = False) -> VisitAnswer:
        if request.pool is not None and request.pool != self.name:
            raise UnknownPool(request.pool)
        if bot and self.static_number_for_bots:
            return self._bot_answer()
        previous = await self._previous_number(request.visitor_id)
        async with self._lock:
            now = self._tick()
            visit = self._resume(request.visitor_id, client, now)
            if visit is not None:
                self._batch.seen(visit.visit_id, now, has_lease=visit.number is not None)
            else:
                visit = self._new_visit(request, client, now, previous)
            done = self._batch.wait(visit.visit_id)
            self._write_soon()
        await _committed(done)
        if _stdlib_log.isEnabledFor(logging.DEBUG):  # structlog's own filter costs more
            log.debug(
                "attribution.visit_started",
                visit_id=visit.visit_id,
                number=visit.number,
                client=client,
            )
        return self._answer(visit)

    async def keep_alive(self, visit_id: str, client: str) -> KeepAliveAnswer | None:
        if visit_id not in self._visits:
            await self._adopt(visit_id, client)
        async with self._lock:
            now = self._tick()
            visit = self._visits.get(visit_id)
            live = visit is not None and (
                visit.number is None or self.allocator.keep_alive(visit_id, now) is not None
            )
            if visit is not None and live:
                self._touch(visit, now)
                self._batch.seen(visit_id, now, has_lease=visit.number is not None)
            elif visit is not None:
                self._drop(visit)
            # gone: the leases that ended are stored before the 404 all the same
            done = self._batch.wait(visit_id if live else None) if self._batch else None
            self._write_soon()
        if visit is None or not live:
            if done is not None:
                with contextlib.suppress(VisitStoreError):  # logged; the visit is gone
                    await _committed(done)
            return None
        if done is not None:
            await _committed(done)
        return KeepAliveAnswer(
            visit_id=visit_id,
            number=visit.number,
            display=self._display(visit.number),
            expires_in=self._hold_seconds,
        )

    async def aclose(self) -> None:
        """Wait until every decided write is committed (or failed): at shutdown, after
        the HTTP server stopped.  The pool still works afterwards."""
        self._closing = True  # lingering tasks end now
        try:
            while self._writer is not None or self.lookups.reader is not None:
                self._more_writes.set()
                self.lookups.wake()
                for task in (self._writer, self.lookups.reader):
                    if task is not None:
                        await asyncio.shield(task)
        finally:
            self._closing = False

    close = aclose

    # internals: decisions

    def _new_visit(
        self, request: VisitStart, client: str, now: datetime, previous: str | None
    ) -> LiveVisit:
        """Choose and reserve (no await), and add the visit and its lease to the batch."""
        network = self._check_caps(client)
        if request.visitor_id is not None:  # memory is never older than the store
            previous = self._last_number.get(request.visitor_id, previous)
        visit_id = secrets.token_urlsafe(16)
        assignment = self.allocator.assign(visit_id, now, previous)
        visit = LiveVisit(visit_id, client, network, request.visitor_id, assignment.number, now)
        self._add(visit)
        lease = self.allocator.lease_of(visit_id) if assignment.started else None
        stored = stored_visit(self.name, visit, request, self.store_client_ip)
        if not self.store_analytics_ids:
            stored = replace(stored, ga_client_id=None, ym_client_id=None)
        self._batch.start(stored, lease)
        self._batch.count(now, assignment, self.allocator.in_use)
        return visit

    def _leases_ended(self, leases: list[Lease]) -> None:
        """Ended leases go into the open batch; a lease started in it is stored ended."""
        batch = self._batch
        for lease in leases:
            at = lease.ends_at(self.allocator.hold)
            started = batch.leases.get(lease.visit_id)
            if started is not None and started.number == lease.number:
                batch.leases[lease.visit_id] = replace(started, released_at=at)
            else:
                batch.end(lease, at)
        if leases:
            self._write_soon()

    async def _previous_number(self, visitor_id: str | None) -> str | None:
        """The visitor's last number: from memory when remembered, else from the store
        (lookups of concurrent requests share one query)."""
        if visitor_id is None:
            return None
        remembered = self._last_number.get(visitor_id)
        if remembered is not None:
            return remembered
        return await self.lookups.last_number(visitor_id)

    async def _restore_visit(self, conn: AsyncConnection, lease: Lease) -> None:
        stored = await get_visit(conn, lease.visit_id)
        client = (stored.client_ip if stored else None) or "unknown"
        visitor_id = stored.visitor_id if stored else None
        seen = lease.last_seen_at
        self._add(
            LiveVisit(lease.visit_id, client, network_of(client), visitor_id, lease.number, seen)
        )

    # internals: several daemons on one store

    async def _adopt(self, visit_id: str, client: str) -> None:
        """Hold a visit this daemon does not know when it is live in the store (another
        daemon started it, or this one before a restart): its keep-alive goes on here."""
        try:
            async with self.engine.connect() as conn:
                stored = await get_visit(conn, visit_id)
                if stored is None or stored.pool != self.name:
                    return
                lease = await live_lease_of(conn, visit_id)
        except Exception as error:  # answered as an unknown visit: the page asks anew
            log.warning(
                "attribution.visit_adopt_failed", pool=self.name, error=describe_error(error)
            )
            return
        async with self._lock:
            now = self._tick()
            hold = self.allocator.hold
            if visit_id in self._visits:
                return
            if lease is not None and lease.last_seen_at + hold > now:
                self._learn([lease], now)
                if self.allocator.lease_of(visit_id) is None:
                    return
                number: str | None = lease.did
                seen = lease.last_seen_at
            elif lease is None and stored.last_seen_at + hold > now:
                number, seen = None, stored.last_seen_at  # shown the fallback there
            else:
                return
            visit = LiveVisit(visit_id, client, network_of(client), stored.visitor_id, number, seen)
            self._add(visit)
            log.info("attribution.visit_adopted", pool=self.name, visit_id=visit_id)

    def _learn(self, live: Iterable[StoredLease], now: datetime) -> set[str]:
        """Hold the numbers the store says are live (other daemons' leases); the local
        visits they displace are decided again (`_redecide`), and returned."""
        displaced = set()
        for stored in live:
            lease = stored.lease()
            if lease.last_seen_at + self.allocator.hold <= now:
                continue  # ran out: closed when its number is next given
            loser = self.allocator.take_over(lease)
            if loser is not None:
                displaced.add(loser)
        for visit_id in displaced:
            self._redecide(visit_id, now)
        return displaced

    def _redecide(self, visit_id: str, now: datetime) -> None:
        """Decide again for a visit whose new lease the store refused: its number again
        when it still holds it here (it was free by then), else another one, or none
        (the fallback) after ``MAX_TRIES``; the new lease goes into the open batch."""
        visit = self._visits.get(visit_id)
        if visit is None:
            return
        tries = self._tries[visit_id] = self._tries.get(visit_id, 0) + 1
        self.refused_leases += 1
        held = self.allocator.lease_of(visit_id)
        if tries >= MAX_TRIES:
            if held is not None:
                self.allocator.release(visit_id, now)
            self.allocator.exhaustions += 1
            assignment = Assignment(None, reused=False, exhausted=True)
        elif held is not None:
            assignment = Assignment(held.number, reused=True, exhausted=False, started=True)
        else:
            assignment = self.allocator.assign(visit_id, now)
        visit.number = assignment.number
        self._batch.leases.pop(visit_id, None)
        lease = self.allocator.lease_of(visit_id) if assignment.started else None
        if lease is not None:
            self._batch.leases[visit_id] = lease
        if visit.visitor_id is not None:
            if visit.number is not None:
                self._last_number[visit.visitor_id] = visit.number
            else:
                self._last_number.pop(visit.visitor_id, None)
        if assignment.exhausted:
            self._tries.pop(visit_id, None)
            self._batch.count(now, assignment, self.allocator.in_use)
        log.info(
            "attribution.pool_number_taken_elsewhere",
            pool=self.name,
            visit_id=visit_id,
            number=visit.number,
        )

    # internals: the writer task

    def _write_soon(self) -> None:
        if self._writer is None and self._batch:
            self._writer = asyncio.create_task(self._write_batches())
        elif self._batch:
            self._more_writes.set()

    async def _linger(self, more: asyncio.Event) -> bool:
        """Out of work: wait up to ``linger_seconds`` for more (True), keeping the task
        and its connection; False at once when closing."""
        if self._closing or self.linger_seconds <= 0:
            return False
        await woken(more, self.linger_seconds)
        return more.is_set() and not self._closing

    async def _write_batches(self) -> None:
        """Write the batches one after the other until none is left (then end), on one
        connection while there are any (a new one after a failure)."""
        batch = OpenBatch()
        conn: AsyncConnection | None = None
        try:
            while True:
                self._more_writes.clear()
                if not self._batch:
                    if await self._linger(self._more_writes) or self._batch:
                        continue
                    break
                batch, self._batch = self._batch, OpenBatch()
                try:
                    conn = conn or await self.engine.connect().start()
                    async with conn.begin():
                        result = await write_visit_batch(
                            conn, batch.stored(self.name, self.allocator.hold)
                        )
                except Exception as error:
                    await close_quietly(conn)
                    conn = None
                    self.stats.failed_batches += 1
                    self._failed(batch, error)
                else:
                    self._answer_batch(batch, result)
                batch = OpenBatch()
        finally:
            self._writer = None
            for _, done in batch.waiting + self._batch.waiting:  # only when cancelled
                fail(done, RuntimeError("the visit pool's writer was cancelled"))
            await close_quietly(conn)

    def _answer_batch(self, batch: OpenBatch, result: BatchResult) -> None:
        """Answer the batch's requests; those whose lease the store refused wait for
        the next batch, with another decision (module docstring)."""
        self.stats.batches += 1
        if result.refused:
            now = self._clock()
            decided = self._learn(result.live, now)
            for visit_id in result.refused - decided:
                self._redecide(visit_id, now)
        for about, done in batch.waiting:
            if about in result.refused and about in self._batch.leases:
                self._batch.waiting.append((about, done))  # answered once stored
                continue
            self.stats.requests += 1
            if not done.done():
                done.set_result(None)
        if self._tries:
            for visit_id in batch.leases.keys() - result.refused:
                self._tries.pop(visit_id, None)

    def _failed(self, batch: OpenBatch, error: Exception) -> None:
        """Fail the batch's requests and undo its new visits in memory (module docstring)."""
        log.error(
            "attribution.pool_write_failed",
            pool=self.name,
            requests=len(batch.waiting),
            error=describe_error(error),
        )
        # with the visits it started, those it decided again (their new number unstored)
        dropped = set(batch.visits) | (batch.leases.keys() & self._tries.keys())
        self._forget(dropped)
        for _, done in batch.waiting:
            fail(done, error)
        self._batch.fail_waiting_on(dropped, error)
        self._batch.carry_over(batch, dropped)

    def _forget(self, visit_ids: Iterable[str]) -> None:
        """Drop visits that were never stored (nor answered) and free their numbers."""
        now = self._clock()
        for visit_id in visit_ids:
            self._tries.pop(visit_id, None)
            visit = self._visits.get(visit_id)
            if visit is None:
                continue
            self._drop(visit)
            if visit.visitor_id and self._last_number.get(visit.visitor_id) == visit.number:
                del self._last_number[visit.visitor_id]
            self.allocator.release(visit_id, now)
        ended = self.allocator.expire(now)
        self._leases_ended([lease for lease in ended if lease.visit_id not in visit_ids])


async def _committed(done: Done) -> None:
    """Wait for the request's batch to be committed (`VisitStoreError` when it failed).

    Each request has a future of its own: a cancelled request cancels only its own,
    and the writer skips futures already done."""
    await done
