"""The group commit of a stored pool: the open batch of what requests decided, written
as one transaction while the next one fills up.

A request decides in memory, under the pool's lock, with no await between the
allocator's choice and its reservation; it then adds what it changed to the
open batch (`OpenBatch`) and waits for that batch's commit before it answers
(an answered number is stored).  One writer task writes the batches one
after the other, each in one transaction (`write_visit_batch`: one statement per
kind of write, sent in one round trip to PostgreSQL or one hop to SQLite's
thread), while the next batch fills up: under load one commit serves every
request decided during the previous one.  The writer (and the reader of
returning visitors' numbers) keeps its connection while it has work, rather
than taking one from the engine's pool per batch.  A batch holds the net effect
of its requests in decision order (a lease started and ended within the batch is inserted
ended; keep-alives keep the latest time), written as: new visits, keep-alives
of stored visits and leases, ends of stored leases, then the new leases (so a
number's old lease is closed before its new lease starts), then pool use.

A batch that fails (database down, disk full, ...) fails its requests
(`VisitStoreError`, a 500 from the API) and the writer goes on with the next
batch.  Memory is put back in line with the store: the visits the batch
started were never answered, so they are dropped and their leases ended (their
numbers are free again, nobody was shown them), and requests already waiting
in the next batch on one of those visits (a resumed visit) fail too.  The
batch's writes about rows stored earlier (keep-alives, ends of leases) are
idempotent and carried over to the next batch, so the store still learns when
those leases ended; its pool-use counts are lost (hourly statistics only).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.attribution.memory_pool import LiveVisit
from pbx_tracker.attribution.pool import Assignment, Lease
from pbx_tracker.attribution.visit_batches import VisitBatch
from pbx_tracker.attribution.visit_pool import VisitStart
from pbx_tracker.attribution.visit_records import PoolUse, Visit, hour_of
from pbx_tracker.store.engine import describe_error

__all__ = [
    "Done",
    "HourUse",
    "OpenBatch",
    "VisitStoreError",
    "WriteStats",
    "close_quietly",
    "fail",
    "stored_visit",
]

Done = asyncio.Future[None]
_T = TypeVar("_T")
_V = TypeVar("_V")


class VisitStoreError(RuntimeError):
    """The store could not be read or written: the request was not served."""


@dataclass(slots=True)
class WriteStats:
    """Group commit at work: batches committed (and the requests they answered), and
    batches that failed."""

    batches: int = 0
    requests: int = 0
    failed_batches: int = 0


@dataclass(slots=True)
class HourUse:
    """Pool use within one hour of one batch, for `record_pool_use`."""

    leases_started: int = 0
    exhaustions: int = 0
    in_use: int = 0


@dataclass(slots=True)
class OpenBatch:
    """What the requests decided while the previous batch was being written: the net
    effect to store, and the requests waiting for it (with the visits they rely on)."""

    visits: dict[str, Visit] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    touched: dict[str, datetime] = field(default_factory=dict)
    extended: dict[str, datetime] = field(default_factory=dict)
    released: dict[str, datetime] = field(default_factory=dict)
    use: dict[datetime, HourUse] = field(default_factory=dict)
    waiting: list[tuple[str | None, Done]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.waiting or self.visits or self.touched or self.extended or self.released)

    def start(self, visit: Visit, lease: Lease | None) -> None:
        self.visits[visit.id] = visit
        if lease is not None:
            self.leases[visit.id] = lease

    def seen(self, visit_id: str, at: datetime, has_lease: bool) -> None:
        """A keep-alive (or a resumed visit): the latest time wins."""
        self.touched[visit_id] = max(at, self.touched.get(visit_id, at))
        if has_lease:
            self.extended[visit_id] = max(at, self.extended.get(visit_id, at))

    def end(self, lease: Lease, at: datetime) -> None:
        self.released[lease.visit_id] = at

    def count(self, at: datetime, assignment: Assignment, in_use: int) -> None:
        use = self.use.setdefault(hour_of(at), HourUse())
        use.leases_started += int(assignment.started)
        use.exhaustions += int(assignment.exhausted)
        use.in_use = max(use.in_use, in_use)

    def wait(self, visit_id: str | None) -> Done:
        """A future done when this batch is committed (failed with `VisitStoreError`
        when it is not); ``visit_id``: the visit the request answers about."""
        done: Done = asyncio.get_running_loop().create_future()
        self.waiting.append((visit_id, done))
        return done

    def carry_over(self, failed: OpenBatch, dropped: set[str]) -> None:
        """Take the failed batch's idempotent writes about rows stored before it."""
        for visit_id, at in failed.touched.items():
            if visit_id not in dropped:
                self.seen(visit_id, at, has_lease=False)
        for visit_id, at in failed.extended.items():
            if visit_id not in dropped:
                self.extended[visit_id] = max(at, self.extended.get(visit_id, at))
        for visit_id, at in failed.released.items():
            if visit_id not in dropped:
                self.released.setdefault(visit_id, at)

    def fail_waiting_on(self, dropped: set[str], error: BaseException) -> None:
        """Fail the requests that answer about a visit that was never stored."""
        kept = []
        for visit_id, done in self.waiting:
            if visit_id in dropped:
                fail(done, error)
            else:
                kept.append((visit_id, done))
        self.waiting = kept

    def stored(self, pool: str, hold: timedelta) -> VisitBatch:
        """The batch's net effect, in the order `write_visit_batch` keeps consistent."""
        extended = self.extended
        return VisitBatch(
            pool=pool,
            visits=[_seen_at(visit, self.touched.get(visit.id)) for visit in self.visits.values()],
            touched=_without(self.touched, self.visits),
            extended=_without(extended, self.leases),
            released=_without(self.released, self.leases),
            leases=[_kept_at(lease, extended.get(id_)) for id_, lease in self.leases.items()],
            use=[
                PoolUse(hour, use.leases_started, use.exhaustions, use.in_use)
                for hour, use in self.use.items()
            ],
            hold=hold,
        )


async def close_quietly(conn: AsyncConnection | None) -> None:
    """Give ``conn`` back to the engine's pool (after a failure: it may be broken)."""
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close()


def fail(future: asyncio.Future[_T], error: BaseException) -> None:
    """Fail ``future`` with its own `VisitStoreError` (caused by ``error``): each request
    raises its own exception object, not one shared between tasks."""
    if not future.done():
        failure = VisitStoreError(f"the visit store failed: {describe_error(error)}")
        failure.__cause__ = error
        future.set_exception(failure)


def _without(values: dict[str, _V], keys: Mapping[str, object]) -> dict[str, _V]:
    return {key: value for key, value in values.items() if key not in keys} if keys else values


def _seen_at(visit: Visit, at: datetime | None) -> Visit:
    return visit if at is None or at <= visit.last_seen_at else replace(visit, last_seen_at=at)


def _kept_at(lease: Lease, at: datetime | None) -> Lease:
    return lease if at is None or at <= lease.last_seen_at else replace(lease, last_seen_at=at)


def stored_visit(pool: str, visit: LiveVisit, request: VisitStart, store_client_ip: bool) -> Visit:
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
        client_ip=visit.client if store_client_ip else None,
    )
