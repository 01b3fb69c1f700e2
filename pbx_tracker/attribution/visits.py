"""Store website visits, the pool-number leases shown to them, and pool use.

Every function runs inside the caller's transaction
(``async with engine.begin() as conn``); none commits.  Leases are addressed
by visit: a visit holds at most one live lease, and a DID at most one live
lease (partial unique index ``uq_number_leases_live_did``).  The records
(`Visit`, `StoredLease`, `PoolUsage`, `PoolUse`) and tables are
`visit_records`'; they are importable from here too.

Index plan for "who held DID X at time t" (`leases_at`), fast with months of
history: the leases of one DID never overlap (a number is handed on only after
its lease ended), so the holders at t are

1. the latest lease of X started by t: ``did = X AND started_at <= t ORDER BY
   started_at DESC LIMIT 1`` on ``ix_number_leases_did_started_at`` (did,
   started_at): one backward step in the index, whatever the history;
2. the leases of X released within the grace before t: ``did = X AND
   released_at BETWEEN t - grace AND t`` on ``ix_number_leases_did_released_at``
   (did, released_at): a range scan over the grace window only.

The first answers "held at t" (when still live or released after t), the
second "within grace" (more than one candidate: ambiguous).  A single query
``started_at <= t AND (released_at IS NULL OR released_at >= t - grace)`` with
a LIMIT is not bounded: when fewer rows match than the limit, it walks the
DID's whole history.

Pool use (`pool_usage`) comes from ``pool_stats``: one row per pool and hour
with leases started, exhaustions and the peak of numbers in use, added to by
`record_pool_use` (per event or batched by the caller).  Exhaustions leave no
lease, so they cannot be counted from the leases; hourly rows keep the status
query to a few rows however busy the site.

Batch variants (`save_visits`, `touch_visits`, `start_leases`, `extend_leases`,
`release_leases`, `last_numbers_of`) do the same for many rows at once, in
plain SQL on the driver's connection (`visit_sql`); everything one group
commit of a pool decided is written by `visit_batches.write_visit_batch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.attribution.pool import Lease
from pbx_tracker.attribution.visit_records import (
    PoolUsage,
    PoolUse,
    StoredLease,
    Visit,
    hour_of,
    leases_table,
    stats_table,
    stored_lease,
    visits_table,
)
from pbx_tracker.attribution.visit_sql import (
    EXTEND_LEASES,
    IN_CHUNK,
    RELEASE_LEASES,
    TOUCH_VISITS,
    Step,
    database_error,
    driver_of,
    write_steps,
)

__all__ = [
    "PoolUsage",
    "PoolUse",
    "StoredLease",
    "Visit",
    "extend_lease",
    "extend_leases",
    "get_visit",
    "hour_of",
    "last_number_of",
    "last_numbers_of",
    "latest_leases",
    "leases_at",
    "leases_table",
    "live_lease_of",
    "live_leases",
    "pool_usage",
    "record_pool_use",
    "release_lease",
    "release_leases",
    "save_visit",
    "save_visits",
    "start_lease",
    "start_leases",
    "stats_table",
    "touch_visit",
    "touch_visits",
    "visits_table",
]

_VISITS, _LEASES = visits_table.name, leases_table.name


# --- visits ---------------------------------------------------------------


async def save_visit(conn: AsyncConnection, visit: Visit) -> None:
    """Insert a new visit (its id must be new)."""
    await conn.execute(insert(visits_table).values(**asdict(visit)))


async def save_visits(conn: AsyncConnection, visits: Sequence[Visit]) -> None:
    """Insert new visits (their ids must be new), one statement for all."""
    await write_steps(conn, [Step.visits(visits)])


async def touch_visits(conn: AsyncConnection, seen: Mapping[str, datetime]) -> None:
    """`touch_visit` for many visits at once: visit id -> when it was last seen."""
    await write_steps(conn, [Step.of(TOUCH_VISITS, seen)])


async def get_visit(conn: AsyncConnection, visit_id: str) -> Visit | None:
    """The visit with this id, or None."""
    row = (await conn.execute(select(visits_table).where(visits_table.c.id == visit_id))).first()
    return None if row is None else Visit(**row._asdict())


async def touch_visit(conn: AsyncConnection, visit_id: str, at: datetime) -> bool:
    """The visit was seen at ``at`` (never moves back); False for an unknown visit."""
    v = visits_table.c
    query = (
        update(visits_table)
        .where(v.id == visit_id)
        .values(last_seen_at=case((v.last_seen_at < at, at), else_=v.last_seen_at))
    )
    return (await conn.execute(query)).rowcount > 0


# --- leases ---------------------------------------------------------------


async def start_lease(
    conn: AsyncConnection, pool: str, did: str, visit_id: str, at: datetime
) -> int:
    """Record that ``did`` is shown to ``visit_id`` from ``at``; the lease id.

    A lease of ``did`` still open in the store (left by a daemon that stopped
    before storing its end) is closed at ``at`` first: the allocator hands a
    number on only when its lease ended, so that one ended by now.  Store the
    allocator's ended leases (`release_lease`) before starting new ones to keep
    their exact ends.
    """
    c = leases_table.c
    await conn.execute(
        update(leases_table).where(c.did == did, c.released_at.is_(None)).values(released_at=at)
    )
    values = {"pool": pool, "did": did, "visit_id": visit_id, "started_at": at, "last_seen_at": at}
    result = await conn.execute(insert(leases_table).values(**values).returning(c.id))
    return int(result.scalar_one())


async def start_leases(conn: AsyncConnection, pool: str, leases: Sequence[Lease]) -> None:
    """`start_lease` for many leases at once, each stored as it is by now (its last
    keep-alive, its release when it already ended).

    At most one of them may be live per DID.  Live leases of their DIDs still open
    in the store (left by a daemon that stopped before storing their end) are closed
    first, at the earliest start among ``leases``: before any of them began.
    """
    await write_steps(conn, Step.leases(pool, leases))


async def extend_lease(conn: AsyncConnection, visit_id: str, at: datetime) -> bool:
    """A keep-alive at ``at`` for the visit's live lease; False when it has none."""
    c = leases_table.c
    query = (
        update(leases_table)
        .where(c.visit_id == visit_id, c.released_at.is_(None))
        .values(last_seen_at=case((c.last_seen_at < at, at), else_=c.last_seen_at))
    )
    return (await conn.execute(query)).rowcount > 0


async def release_lease(conn: AsyncConnection, visit_id: str, at: datetime) -> bool:
    """End the visit's live lease at ``at``; False when it has none."""
    c = leases_table.c
    query = (
        update(leases_table)
        .where(c.visit_id == visit_id, c.released_at.is_(None))
        .values(released_at=at)
    )
    return (await conn.execute(query)).rowcount > 0


async def extend_leases(conn: AsyncConnection, seen: Mapping[str, datetime]) -> None:
    """`extend_lease` for many visits at once: visit id -> its last keep-alive."""
    await write_steps(conn, [Step.of(EXTEND_LEASES, seen)])


async def release_leases(conn: AsyncConnection, ended: Mapping[str, datetime]) -> None:
    """`release_lease` for many visits at once: visit id -> when its lease ended."""
    await write_steps(conn, [Step.of(RELEASE_LEASES, ended)])


async def live_lease_of(conn: AsyncConnection, visit_id: str) -> StoredLease | None:
    """The visit's lease not yet released, or None."""
    c = leases_table.c
    query = select(leases_table).where(c.visit_id == visit_id, c.released_at.is_(None))
    row = (await conn.execute(query.order_by(c.started_at.desc()).limit(1))).first()
    return None if row is None else stored_lease(row)


async def live_leases(conn: AsyncConnection, pool: str) -> list[StoredLease]:
    """The pool's leases not yet released, oldest first (partial index on live leases)."""
    c = leases_table.c
    query = (
        select(leases_table)
        .where(c.pool == pool, c.released_at.is_(None))
        .order_by(c.started_at, c.id)
    )
    return [stored_lease(row) for row in (await conn.execute(query)).all()]


async def latest_leases(conn: AsyncConnection, dids: Iterable[str]) -> list[StoredLease]:
    """The latest lease of each DID that has one: what a `PoolAllocator` needs to
    restart with its holders, LRU order and quarantine.  One index step per DID."""
    found = []
    for did in dids:
        row = (await conn.execute(_latest_started(did, None))).first()
        if row is not None:
            found.append(stored_lease(row))
    return found


async def leases_at(
    conn: AsyncConnection,
    did: str,
    t: datetime,
    grace: timedelta = timedelta(0),
    *,
    hold: timedelta | None = None,
) -> list[StoredLease]:
    """The leases of ``did`` held at ``t`` or released within ``grace`` before it,
    newest first; more than one = ambiguous.  Two bounded index scans (module
    docstring).  ``hold``: a lease never released in the store counts only until
    ``last_seen_at + hold`` (its end when a daemon stopped before storing it)."""
    c = leases_table.c
    graced = select(leases_table).where(
        c.did == did, c.released_at >= t - grace, c.released_at <= t
    )
    rows = list((await conn.execute(_latest_started(did, t))).all())
    rows += (await conn.execute(graced)).all()
    found = {row.id: stored_lease(row) for row in rows}
    held = [lease for lease in found.values() if _held(lease, t, grace, hold)]
    return sorted(held, key=lambda lease: (lease.started_at, lease.id), reverse=True)


def _latest_started(did: str, t: datetime | None) -> Any:
    c = leases_table.c
    query = select(leases_table).where(c.did == did)
    if t is not None:
        query = query.where(c.started_at <= t)
    return query.order_by(c.started_at.desc(), c.id.desc()).limit(1)


def _held(lease: StoredLease, t: datetime, grace: timedelta, hold: timedelta | None) -> bool:
    if lease.released_at is not None:
        end = lease.released_at
    elif hold is not None:
        end = lease.last_seen_at + hold
    else:
        return True
    return lease.started_at <= t <= end + grace


async def last_number_of(
    conn: AsyncConnection, visitor_id: str, pool: str | None = None
) -> str | None:
    """The DID last shown to this visitor (any of their visits), in ``pool`` when given."""
    c, v = leases_table.c, visits_table.c
    query = (
        select(c.did)
        .select_from(leases_table.join(visits_table, c.visit_id == v.id))
        .where(v.visitor_id == visitor_id)
        .order_by(c.started_at.desc(), c.id.desc())
        .limit(1)
    )
    if pool is not None:
        query = query.where(c.pool == pool)
    return (await conn.execute(query)).scalar_one_or_none()


async def last_numbers_of(
    conn: AsyncConnection, visitor_ids: Iterable[str], pool: str | None = None
) -> dict[str, str]:
    """`last_number_of` for many visitors in one query: visitor id -> the DID last shown
    to them (visitors never shown one are left out)."""
    wanted = sorted(set(visitor_ids))
    if not wanted:
        return {}
    query = (
        f"SELECT v.visitor_id, l.started_at, l.id, l.did FROM {_LEASES} AS l"
        f" JOIN {_VISITS} AS v ON l.visit_id = v.id WHERE "
    )
    on_pool = "" if pool is None else " AND l.pool = {}"
    found: dict[str, tuple[Any, int, str]] = {}
    driver = await driver_of(conn)
    sql = ""
    try:
        if conn.dialect.name == "postgresql":
            # per visitor its latest lease: index steps whatever the history (and the
            # planner's statistics), not a join over every lease of the pool
            sql = (
                "SELECT w.visitor_id, l.started_at, l.id, l.did"
                " FROM unnest(%s::text[]) AS w(visitor_id) CROSS JOIN LATERAL"
                f" (SELECT l.started_at, l.id, l.did FROM {_LEASES} AS l"
                f" JOIN {_VISITS} AS v ON l.visit_id = v.id"
                " WHERE v.visitor_id = w.visitor_id" + on_pool.format("%s") + ""
                " ORDER BY l.started_at DESC, l.id DESC LIMIT 1) AS l"
            )
            params: list[Any] = [wanted] if pool is None else [wanted, pool]
            rows = await (await driver.execute(sql, params)).fetchall()
        else:
            rows = []
            for first in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[first : first + IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                sql = query + f"v.visitor_id IN ({marks})" + on_pool.format("?")
                rows += await driver.execute_fetchall(
                    sql, [*chunk, *([] if pool is None else [pool])]
                )
    except Exception as error:
        raise database_error(conn, sql, error) from error
    # the times compare as stored: timestamptz, or SQLite's fixed-width UTC text
    for visitor_id, started_at, lease_id, did in rows:
        latest = found.get(visitor_id)
        if latest is None or (started_at, lease_id) > latest[:2]:
            found[visitor_id] = (started_at, lease_id, did)
    return {visitor_id: latest[2] for visitor_id, latest in found.items()}


# --- pool use -------------------------------------------------------------


async def record_pool_use(
    conn: AsyncConnection,
    pool: str,
    at: datetime,
    *,
    leases_started: int = 0,
    exhaustions: int = 0,
    in_use: int = 0,
) -> None:
    """Add to the pool's row for the hour of ``at``: leases started and exhaustions are
    summed, ``in_use`` raises the hour's peak."""
    await write_steps(conn, [Step.use(pool, [PoolUse(at, leases_started, exhaustions, in_use)])])


async def pool_usage(conn: AsyncConnection, pool: str, since: datetime) -> PoolUsage:
    """Use of the pool from the hour of ``since`` on (hour resolution), and its live leases."""
    s, c = stats_table.c, leases_table.c
    totals = select(
        func.coalesce(func.max(s.peak_in_use), 0),
        func.coalesce(func.sum(s.leases_started), 0),
        func.coalesce(func.sum(s.exhaustions), 0),
    ).where(s.pool == pool, s.hour >= hour_of(since))
    peak, started, exhausted = (await conn.execute(totals)).one()
    live_count = select(func.count()).where(and_(c.pool == pool, c.released_at.is_(None)))
    live = (await conn.execute(live_count.select_from(leases_table))).scalar_one()
    return PoolUsage(int(live), int(peak), int(started), int(exhausted))
