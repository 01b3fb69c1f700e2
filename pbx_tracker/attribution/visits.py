"""Store website visits, the pool-number leases shown to them, and pool use.

Every function runs inside the caller's transaction
(``async with engine.begin() as conn``); none commits.  Leases are addressed
by visit: a visit holds at most one live lease, and a DID at most one live
lease (partial unique index ``uq_number_leases_live_did``).

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

Several daemons on one database.  Each keeps its pool's allocator in memory;
the store decides between them: a batch with ``hold`` (`VisitBatch`) inserts
its live leases with ``ON CONFLICT DO NOTHING`` against the partial unique
index, so a number another daemon already shows is never given a second live
lease; the visits whose lease was refused come back in `BatchResult`, with the
pool's live leases for the daemon to learn from.  It closes only the open
leases of its numbers whose hold ran out (left by a daemon that stopped), and
ends a lease that ran out in its memory only when the store knows no later
keep-alive (another daemon may have served one).

Batch variants (`save_visits`, `touch_visits`, `start_leases`, `extend_leases`,
`release_leases`, `last_numbers_of`) do the same for many rows at once, and
`write_visit_batch` writes everything one group commit of a pool decided, in
order.  They bypass SQLAlchemy's statement machinery (its per-row cost was most
of a batch's): plain SQL, one statement per kind, on the driver's connection
inside the caller's transaction.  PostgreSQL: each kind is one statement over
``unnest()`` of one array per column (not one execution per row), the kinds of
a batch sent together in one pipeline (one round trip).  SQLite: one
``executemany`` per kind (SQLite's per-row cost is small in process), the whole
batch in one call on aiosqlite's worker thread (one thread hop, not a few per
statement).  Driver errors are raised as SQLAlchemy's (`DBAPIError` and its
subclasses), like everywhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Dialect, Row, Table, and_, case, exc, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.attribution.pool import Lease
from pbx_tracker.store.models import NumberLeaseRow, PoolStatsRow, VisitRow

__all__ = [
    "BatchResult",
    "PoolUsage",
    "PoolUse",
    "StoredLease",
    "Visit",
    "VisitBatch",
    "extend_lease",
    "extend_leases",
    "get_visit",
    "last_number_of",
    "last_numbers_of",
    "latest_leases",
    "leases_at",
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
    "touch_visit",
    "touch_visits",
    "write_visit_batch",
]

visits_table = cast(Table, VisitRow.__table__)
leases_table = cast(Table, NumberLeaseRow.__table__)
stats_table = cast(Table, PoolStatsRow.__table__)

_IN_CHUNK = 500  # values per IN list: far below every engine's limit on parameters


@dataclass(frozen=True, slots=True)
class Visit:
    """A website visit: where it landed, where it came from, its click and analytics ids."""

    id: str
    pool: str
    started_at: datetime
    last_seen_at: datetime
    landing_page: str | None = None
    referrer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    gclid: str | None = None
    yclid: str | None = None
    fbclid: str | None = None
    ga_client_id: str | None = None
    ym_client_id: str | None = None
    visitor_id: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class StoredLease:
    """A stored lease: `pool.Lease` plus its row id and pool."""

    id: int
    pool: str
    did: str
    visit_id: str
    started_at: datetime
    last_seen_at: datetime
    released_at: datetime | None

    def lease(self) -> Lease:
        """The allocator's view of it (to rebuild a `PoolAllocator`)."""
        return Lease(self.did, self.visit_id, self.started_at, self.last_seen_at, self.released_at)


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """Use of a pool since a given hour."""

    live: int
    peak_in_use: int
    leases_started: int
    exhaustions: int


# --- visits ---------------------------------------------------------------

_VISIT_FIELDS = tuple(field.name for field in fields(Visit))


async def save_visit(conn: AsyncConnection, visit: Visit) -> None:
    """Insert a new visit (its id must be new)."""
    await conn.execute(insert(visits_table).values(**asdict(visit)))


async def save_visits(conn: AsyncConnection, visits: Sequence[Visit]) -> None:
    """Insert new visits (their ids must be new), one statement for all."""
    await _write(conn, [_Step.visits(visits)])


async def touch_visits(conn: AsyncConnection, seen: Mapping[str, datetime]) -> None:
    """`touch_visit` for many visits at once: visit id -> when it was last seen."""
    await _write(conn, [_Step.of(_TOUCH_VISITS, seen)])


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
    await _write(conn, _Step.leases(pool, leases))


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
    await _write(conn, [_Step.of(_EXTEND_LEASES, seen)])


async def release_leases(conn: AsyncConnection, ended: Mapping[str, datetime]) -> None:
    """`release_lease` for many visits at once: visit id -> when its lease ended."""
    await _write(conn, [_Step.of(_RELEASE_LEASES, ended)])


async def live_lease_of(conn: AsyncConnection, visit_id: str) -> StoredLease | None:
    """The visit's lease not yet released, or None."""
    c = leases_table.c
    query = select(leases_table).where(c.visit_id == visit_id, c.released_at.is_(None))
    row = (await conn.execute(query.order_by(c.started_at.desc()).limit(1))).first()
    return None if row is None else _lease(row)


async def live_leases(conn: AsyncConnection, pool: str) -> list[StoredLease]:
    """The pool's leases not yet released, oldest first (partial index on live leases)."""
    c = leases_table.c
    query = (
        select(leases_table)
        .where(c.pool == pool, c.released_at.is_(None))
        .order_by(c.started_at, c.id)
    )
    return [_lease(row) for row in (await conn.execute(query)).all()]


async def latest_leases(conn: AsyncConnection, dids: Iterable[str]) -> list[StoredLease]:
    """The latest lease of each DID that has one: what a `PoolAllocator` needs to
    restart with its holders, LRU order and quarantine.  One index step per DID."""
    found = []
    for did in dids:
        row = (await conn.execute(_latest_started(did, None))).first()
        if row is not None:
            found.append(_lease(row))
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
    found = {row.id: _lease(row) for row in rows}
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
    driver = await _driver(conn)
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
            for first in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[first : first + _IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                sql = query + f"v.visitor_id IN ({marks})" + on_pool.format("?")
                rows += await driver.execute_fetchall(
                    sql, [*chunk, *([] if pool is None else [pool])]
                )
    except Exception as error:
        raise _db_error(conn, sql, error) from error
    # the times compare as stored: timestamptz, or SQLite's fixed-width UTC text
    for visitor_id, started_at, lease_id, did in rows:
        latest = found.get(visitor_id)
        if latest is None or (started_at, lease_id) > latest[:2]:
            found[visitor_id] = (started_at, lease_id, did)
    return {visitor_id: latest[2] for visitor_id, latest in found.items()}


def _lease(row: Row[Any]) -> StoredLease:
    return StoredLease(**row._asdict())


# --- pool use -------------------------------------------------------------


def hour_of(at: datetime) -> datetime:
    """The start of the UTC hour ``at`` falls in: the key of ``pool_stats``."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


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
    await _write(conn, [_Step.use(pool, [PoolUse(at, leases_started, exhaustions, in_use)])])


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


# --- batch writes: plain SQL on the driver's connection (module docstring) -----------


@dataclass(frozen=True, slots=True)
class PoolUse:
    """What `record_pool_use` adds for one hour (``at``: any time in it)."""

    at: datetime
    leases_started: int = 0
    exhaustions: int = 0
    in_use: int = 0


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
        released = _Step.of(_RELEASE_LEASES, batch.released)
    else:
        released = _Step(
            _RELEASE_RUN_OUT, [(at, key, at - hold) for key, at in batch.released.items()]
        )
    inserted = await _write(
        conn,
        [
            _Step.visits(batch.visits),
            _Step.of(_TOUCH_VISITS, batch.touched),
            _Step.of(_EXTEND_LEASES, batch.extended),
            released,
            *_Step.leases(batch.pool, batch.leases, hold),
            _Step.use(batch.pool, batch.use),
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


@dataclass(frozen=True, slots=True)
class _Kind:
    """One kind of batch write: SQLite's statement (executemany, ``?`` per column) and
    PostgreSQL's (``unnest`` of one array per column, in the same order); ``times``:
    the positions of the time columns."""

    sqlite: str
    postgresql: str
    times: tuple[int, ...]


def _insert(table: str, columns: Sequence[str], types: Sequence[str], conflict: str = "") -> _Kind:
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    arrays = ", ".join(f"%s::{kind}[]" for kind in types)
    return _Kind(
        f"INSERT INTO {table} ({names}) VALUES ({marks}){conflict}",
        f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){conflict}",
        tuple(n for n, kind in enumerate(types) if kind == "timestamptz"),
    )


def _update(table: str, sqlite_set: str, pg_set: str, key: str, live_only: bool) -> _Kind:
    """Rows of (time, key value): ``sqlite_set``/``pg_set`` use the time (``?1``, ``v.at``)."""
    live = " AND released_at IS NULL" if live_only else ""
    return _Kind(
        f"UPDATE {table} SET {sqlite_set} WHERE {key} = ?2{live}",
        f"UPDATE {table} AS t SET {pg_set} FROM unnest(%s::timestamptz[], %s::text[])"
        f" AS v(at, key) WHERE t.{key} = v.key{live.replace(' released_at', ' t.released_at')}",
        (0,),
    )


_VISITS, _LEASES, _STATS = visits_table.name, leases_table.name, stats_table.name
_LATER = "max(last_seen_at, ?1)", "last_seen_at = GREATEST(t.last_seen_at, v.at)"
_TOUCH_VISITS = _update(_VISITS, f"last_seen_at = {_LATER[0]}", _LATER[1], "id", False)
_EXTEND_LEASES = _update(_LEASES, f"last_seen_at = {_LATER[0]}", _LATER[1], "visit_id", True)
_RELEASE_LEASES = _update(_LEASES, "released_at = ?1", "released_at = v.at", "visit_id", True)
_CLOSE_DIDS = _update(_LEASES, "released_at = ?1", "released_at = v.at", "did", True)
# rows of (time, key, latest last keep-alive): only leases that ran out by then
_RUN_OUT = (
    " AND last_seen_at <= ?3",
    " AND t.last_seen_at <= v.seen",
    "unnest(%s::timestamptz[], %s::text[], %s::timestamptz[]) AS v(at, key, seen)",
)


def _run_out(kind: _Kind) -> _Kind:
    return _Kind(
        kind.sqlite + _RUN_OUT[0],
        kind.postgresql.replace("unnest(%s::timestamptz[], %s::text[]) AS v(at, key)", _RUN_OUT[2])
        + _RUN_OUT[1],
        (0, 2),
    )


_RELEASE_RUN_OUT = _run_out(_RELEASE_LEASES)
_CLOSE_RUN_OUT = _run_out(_CLOSE_DIDS)
_INSERT_VISITS = _insert(
    _VISITS,
    _VISIT_FIELDS,
    ["timestamptz" if name in ("started_at", "last_seen_at") else "text" for name in _VISIT_FIELDS],
)
_LEASE_COLUMNS = ("pool", "did", "visit_id", "started_at", "last_seen_at", "released_at")
_INSERT_LEASES = _insert(_LEASES, _LEASE_COLUMNS, ["text"] * 3 + ["timestamptz"] * 3)
# several daemons: a live lease on a number live elsewhere is left out; when fewer
# rows went in than were sent, the visits whose live lease is stored are read back
_INSERT_FREE_LEASES = _insert(
    _LEASES, _LEASE_COLUMNS, ["text"] * 3 + ["timestamptz"] * 3, " ON CONFLICT DO NOTHING"
)
_LIVE_OF_VISITS = f"SELECT visit_id FROM {_LEASES} WHERE released_at IS NULL AND visit_id = ANY(%s)"
_ADD_USE = _insert(
    _STATS,
    ("pool", "hour", "leases_started", "exhaustions", "peak_in_use"),
    ("text", "timestamptz", "integer", "integer", "integer"),
    f" ON CONFLICT (pool, hour) DO UPDATE SET"
    f" leases_started = {_STATS}.leases_started + excluded.leases_started,"
    f" exhaustions = {_STATS}.exhaustions + excluded.exhaustions,"
    f" peak_in_use = {{}}({_STATS}.peak_in_use, excluded.peak_in_use)",
)
_ADD_USE = _Kind(
    _ADD_USE.sqlite.format("max"), _ADD_USE.postgresql.format("GREATEST"), _ADD_USE.times
)


@dataclass(frozen=True, slots=True)
class _Step:
    """One statement of a batch write: its kind and its rows (times not yet bound)."""

    kind: _Kind
    rows: Sequence[tuple[Any, ...]]

    @classmethod
    def of(cls, kind: _Kind, times: Mapping[str, datetime]) -> _Step:
        """Rows of (time, key) for an `_update` kind."""
        return cls(kind, [(at, key) for key, at in times.items()])

    @classmethod
    def visits(cls, visits: Sequence[Visit]) -> _Step:
        return cls(_INSERT_VISITS, [_visit_row(visit) for visit in visits])

    @classmethod
    def leases(
        cls, pool: str, leases: Sequence[Lease], hold: timedelta | None = None
    ) -> list[_Step]:
        """Close the numbers' open leases (with ``hold``: those that ran out), then insert
        (with ``hold``: leaving out a live lease on a number live elsewhere)."""
        if not leases:
            return []
        first = min(lease.started_at for lease in leases)
        dids = sorted({le.number for le in leases})
        if hold is None:
            close = cls(_CLOSE_DIDS, [(first, did) for did in dids])
        else:
            close = cls(_CLOSE_RUN_OUT, [(first, did, first - hold) for did in dids])
        rows = [
            (pool, le.number, le.visit_id, le.started_at, le.last_seen_at, le.released_at)
            for le in leases
        ]
        return [close, cls(_INSERT_LEASES if hold is None else _INSERT_FREE_LEASES, rows)]

    @classmethod
    def use(cls, pool: str, use: Sequence[PoolUse]) -> _Step:
        added: dict[datetime, list[int]] = {}  # one row per hour (PostgreSQL upserts a row once)
        for item in use:
            row = added.setdefault(hour_of(item.at), [0, 0, 0])
            row[0] += item.leases_started
            row[1] += item.exhaustions
            row[2] = max(row[2], item.in_use)
        return cls(_ADD_USE, [(pool, hour, *counts) for hour, counts in added.items()])


def _visit_row(visit: Visit) -> tuple[Any, ...]:
    return tuple(getattr(visit, name) for name in _VISIT_FIELDS)


async def _write(conn: AsyncConnection, steps: Sequence[_Step]) -> set[str] | None:
    """Run ``steps`` in order within the caller's transaction (module docstring); with an
    `_INSERT_FREE_LEASES` step, the visits whose live lease it stored (None without)."""
    steps = [step for step in steps if step.rows]
    if not steps:
        return None
    bind = _memo(_time_binder(conn.dialect))
    statements = [
        (step.kind, [_bound(row, step.kind.times, bind) for row in step.rows]) for step in steps
    ]
    driver = await _driver(conn)
    sql = ""
    inserted: set[str] | None = None
    try:
        if conn.dialect.name == "postgresql":
            leases: tuple[Any, list[Any]] | None = None
            async with driver.pipeline():
                for kind, rows in statements:
                    sql = kind.postgresql
                    cursor = await driver.execute(
                        sql, [list(column) for column in zip(*rows, strict=True)]
                    )
                    if kind is _INSERT_FREE_LEASES:
                        leases = (cursor, rows)
            if leases is not None:
                cursor, rows = leases
                inserted = {row[2] for row in rows}  # (pool, did, visit_id, ...)
                if cursor.rowcount < len(rows):
                    sql = _LIVE_OF_VISITS
                    live = [row[2] for row in rows if row[5] is None]
                    found = await (await driver.execute(sql, [live])).fetchall()
                    inserted = {row[2] for row in rows if row[5] is not None}
                    inserted.update(row[0] for row in found)
        else:
            inserted = await _in_sqlite_thread(
                driver, [(kind.sqlite, rows) for kind, rows in statements]
            )
    except Exception as error:
        raise _db_error(
            conn, sql or "; ".join(kind.sqlite for kind, _ in statements), error
        ) from error
    return inserted


def _bound(
    row: tuple[Any, ...], times: tuple[int, ...], bind: Callable[[Any], Any]
) -> tuple[Any, ...]:
    if not times:
        return row
    values = list(row)
    for n in times:
        values[n] = bind(values[n])
    return tuple(values)


def _memo(bind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``bind`` once per distinct time of a batch (most of its rows share a few)."""
    bound: dict[Any, Any] = {}

    def memo(value: Any) -> Any:
        if value in bound:
            return bound[value]
        result = bound[value] = bind(value)
        return result

    return memo


@functools.lru_cache(maxsize=8)
def _time_binder(dialect: Dialect) -> Callable[[Any], Any]:
    """What SQLAlchemy binds for a `UTCDateTime` (naive times refused, UTC; SQLite's text
    form), so rows written here read back and compare like the rest."""
    kind = leases_table.c.started_at.type
    processor = kind.dialect_impl(dialect).bind_processor(dialect)
    return processor if processor is not None else (lambda value: value)


async def _driver(conn: AsyncConnection) -> Any:
    """The driver's own connection under ``conn``: aiosqlite's or psycopg's (async)."""
    name = conn.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database dialect {name!r}")
    return (await conn.get_raw_connection()).driver_connection


async def _in_sqlite_thread(
    driver: Any, statements: Sequence[tuple[str, list[Any]]]
) -> set[str] | None:
    """``executemany`` each statement in one call on aiosqlite's worker thread (its
    internal ``_execute`` and ``_conn``, which SQLAlchemy's adapter uses as well); one
    public call per statement when an aiosqlite version lacks them.  With an
    `_INSERT_FREE_LEASES` statement, the visits whose lease it stored: all of them
    when every row went in, else read back."""
    run = getattr(driver, "_execute", None)
    if run is None or not hasattr(driver, "_conn"):
        found: set[str] | None = None
        for sql, rows in statements:
            await driver.executemany(sql, rows)
            if sql == _INSERT_FREE_LEASES.sqlite:
                found = {row[2] for row in rows if row[5] is not None}
                for query, chunk in _live_reads(rows):
                    cursor = await driver.execute(query, chunk)
                    found.update(row[0] for row in await cursor.fetchall())
        return found

    def write() -> set[str] | None:
        connection = driver._conn
        found: set[str] | None = None
        for sql, rows in statements:
            stored = connection.executemany(sql, rows).rowcount
            if sql != _INSERT_FREE_LEASES.sqlite:
                continue
            found = {row[2] for row in rows}  # (pool, did, visit_id, ...)
            if stored < len(rows):
                found = {row[2] for row in rows if row[5] is not None}
                for query, chunk in _live_reads(rows):
                    found.update(row[0] for row in connection.execute(query, chunk))
        return found

    result: set[str] | None = await run(write)
    return result


def _live_reads(rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[str, list[Any]]]:
    """Queries of the live leases stored for the visits of these lease rows."""
    live = [row[2] for row in rows if row[5] is None]
    for first in range(0, len(live), _IN_CHUNK):
        chunk = live[first : first + _IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        yield (
            f"SELECT visit_id FROM {_LEASES} WHERE released_at IS NULL AND visit_id IN ({marks})",
            chunk,
        )


def _db_error(conn: AsyncConnection, sql: str, error: Exception) -> Exception:
    """A driver's error as SQLAlchemy raises it (`IntegrityError`, `OperationalError`...)."""
    dialect = conn.dialect
    base = dialect.loaded_dbapi.Error
    if not isinstance(error, base):
        return error
    return exc.DBAPIError.instance(sql, None, error, base, hide_parameters=True, dialect=dialect)
