"""Write everything one group commit of a pool decided, in order: `write_visit_batch`.

Several daemons on one database.  Each keeps its pool's allocator in memory;
the store decides between them: a batch with ``hold`` (`VisitBatch`) inserts
its live leases with ``ON CONFLICT DO NOTHING`` against the partial unique
index, so a number another daemon already shows is never given a second live
lease; the visits whose lease was refused come back in `BatchResult`, with the
pool's live leases for the daemon to learn from.  It closes only the open
leases of its numbers whose hold ran out (left by a daemon that stopped), and
ends a lease that ran out in its memory only when the store knows no later
keep-alive (another daemon may have served one).

Like the batch variants of `visits`, it writes in plain SQL on the driver's
connection inside the caller's transaction (`visit_sql`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.attribution.pool import Lease
from pbx_tracker.attribution.visit_records import PoolUse, StoredLease, Visit
from pbx_tracker.attribution.visit_sql import (
    EXTEND_LEASES,
    RELEASE_LEASES,
    RELEASE_RUN_OUT,
    TOUCH_VISITS,
    Step,
    write_steps,
)
from pbx_tracker.attribution.visits import live_leases

__all__ = ["BatchResult", "VisitBatch", "write_visit_batch"]


@dataclass(frozen=True, slots=True)
class VisitBatch:
    """Everything one group commit of ``pool`` stores, for `write_visit_batch`: new
    visits, keep-alives of stored visits and of their live leases, ends of stored
    leases, new leases (as they are by now), and pool use.

    ``hold``: the pool's hold, when other daemons may share the pool (module
    docstring): ``released`` then ends a lease only if its stored last keep-alive
    is no later than ``hold`` before the end (it ran out), a number's open lease
    is closed only when it ran out, and a new live lease on a number another
    daemon shows is not stored (`BatchResult`).  None: as `start_leases` does."""

    pool: str
    visits: Sequence[Visit] = ()
    touched: Mapping[str, datetime] = field(default_factory=dict)
    extended: Mapping[str, datetime] = field(default_factory=dict)
    released: Mapping[str, datetime] = field(default_factory=dict)
    leases: Sequence[Lease] = ()
    use: Sequence[PoolUse] = ()
    hold: timedelta | None = None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What `write_visit_batch` could not store: the visits whose new live lease was
    refused (their number is live elsewhere), and then the pool's live leases."""

    refused: frozenset[str] = frozenset()
    live: Sequence[StoredLease] = ()


async def write_visit_batch(conn: AsyncConnection, batch: VisitBatch) -> BatchResult:
    """Store ``batch`` in this order: new visits, keep-alives of visits, keep-alives
    and ends of stored leases, then the new leases (`start_leases`: a number's old
    lease is closed before its new one starts), then pool use; one statement per
    kind that has rows, one round trip (PostgreSQL) or thread hop (SQLite) for all.
    With ``batch.hold``, the refused leases (and then the pool's live leases, one
    more query) come back."""
    hold = batch.hold
    if hold is None:
        released = Step.of(RELEASE_LEASES, batch.released)
    else:
        released = Step(
            RELEASE_RUN_OUT, [(at, key, at - hold) for key, at in batch.released.items()]
        )
    inserted = await write_steps(
        conn,
        [
            Step.visits(batch.visits),
            Step.of(TOUCH_VISITS, batch.touched),
            Step.of(EXTEND_LEASES, batch.extended),
            released,
            *Step.leases(batch.pool, batch.leases, hold),
            Step.use(batch.pool, batch.use),
        ],
    )
    if inserted is None:
        return BatchResult()
    refused = frozenset(
        lease.visit_id
        for lease in batch.leases
        if lease.released_at is None and lease.visit_id not in inserted
    )
    if not refused:
        return BatchResult()
    return BatchResult(refused, await live_leases(conn, batch.pool))
