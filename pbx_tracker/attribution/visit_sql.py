"""Plain SQL on the driver's connection: how the batch variants of `visits` and
`visit_batches.write_visit_batch` write many rows at once.

They bypass SQLAlchemy's statement machinery (its per-row cost was most of a
batch's): plain SQL, one statement per kind, on the driver's connection inside
the caller's transaction.  PostgreSQL: each kind is one statement over
``unnest()`` of one array per column (not one execution per row), the kinds of
a batch sent together in one pipeline (one round trip).  SQLite: one
``executemany`` per kind (SQLite's per-row cost is small in process), the whole
batch in one call on aiosqlite's worker thread (one thread hop, not a few per
statement).  Driver errors are raised as SQLAlchemy's (`DBAPIError` and its
subclasses), like everywhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Dialect, exc
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.attribution.pool import Lease
from pbx_tracker.attribution.visit_records import (
    PoolUse,
    Visit,
    hour_of,
    leases_table,
    stats_table,
    visits_table,
)

__all__ = [
    "EXTEND_LEASES",
    "IN_CHUNK",
    "RELEASE_LEASES",
    "RELEASE_RUN_OUT",
    "TOUCH_VISITS",
    "Kind",
    "Step",
    "database_error",
    "driver_of",
    "write_steps",
]

IN_CHUNK = 500  # values per IN list: far below every engine's limit on parameters

_VISIT_FIELDS = tuple(field.name for field in fields(Visit))


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of batch write: SQLite's statement (executemany, ``?`` per column) and
    PostgreSQL's (``unnest`` of one array per column, in the same order); ``times``:
    the positions of the time columns."""

    sqlite: str
    postgresql: str
    times: tuple[int, ...]


def _insert(table: str, columns: Sequence[str], types: Sequence[str], conflict: str = "") -> Kind:
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    arrays = ", ".join(f"%s::{kind}[]" for kind in types)
    return Kind(
        f"INSERT INTO {table} ({names}) VALUES ({marks}){conflict}",
        f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){conflict}",
        tuple(n for n, kind in enumerate(types) if kind == "timestamptz"),
    )


def _update(table: str, sqlite_set: str, pg_set: str, key: str, live_only: bool) -> Kind:
    """Rows of (time, key value): ``sqlite_set``/``pg_set`` use the time (``?1``, ``v.at``)."""
    live = " AND released_at IS NULL" if live_only else ""
    return Kind(
        f"UPDATE {table} SET {sqlite_set} WHERE {key} = ?2{live}",
        f"UPDATE {table} AS t SET {pg_set} FROM unnest(%s::timestamptz[], %s::text[])"
        f" AS v(at, key) WHERE t.{key} = v.key{live.replace(' released_at', ' t.released_at')}",
        (0,),
    )


_VISITS, _LEASES, _STATS = visits_table.name, leases_table.name, stats_table.name
_LATER = "max(last_seen_at, ?1)", "last_seen_at = GREATEST(t.last_seen_at, v.at)"
TOUCH_VISITS = _update(_VISITS, f"last_seen_at = {_LATER[0]}", _LATER[1], "id", False)
EXTEND_LEASES = _update(_LEASES, f"last_seen_at = {_LATER[0]}", _LATER[1], "visit_id", True)
RELEASE_LEASES = _update(_LEASES, "released_at = ?1", "released_at = v.at", "visit_id", True)
_CLOSE_DIDS = _update(_LEASES, "released_at = ?1", "released_at = v.at", "did", True)
# rows of (time, key, latest last keep-alive): only leases that ran out by then
_RUN_OUT = (
    " AND last_seen_at <= ?3",
    " AND t.last_seen_at <= v.seen",
    "unnest(%s::timestamptz[], %s::text[], %s::timestamptz[]) AS v(at, key, seen)",
)


def _run_out(kind: Kind) -> Kind:
    return Kind(
        kind.sqlite + _RUN_OUT[0],
        kind.postgresql.replace("unnest(%s::timestamptz[], %s::text[]) AS v(at, key)", _RUN_OUT[2])
        + _RUN_OUT[1],
        (0, 2),
    )


RELEASE_RUN_OUT = _run_out(RELEASE_LEASES)
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
_ADD_USE = Kind(
    _ADD_USE.sqlite.format("max"), _ADD_USE.postgresql.format("GREATEST"), _ADD_USE.times
)


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a batch write: its kind and its rows (times not yet bound)."""

    kind: Kind
    rows: Sequence[tuple[Any, ...]]

    @classmethod
    def of(cls, kind: Kind, times: Mapping[str, datetime]) -> Step:
        """Rows of (time, key) for an `_update` kind."""
        return cls(kind, [(at, key) for key, at in times.items()])

    @classmethod
    def visits(cls, visits: Sequence[Visit]) -> Step:
        return cls(_INSERT_VISITS, [_visit_row(visit) for visit in visits])

    @classmethod
    def leases(
        cls, pool: str, leases: Sequence[Lease], hold: timedelta | None = None
    ) -> list[Step]:
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
    def use(cls, pool: str, use: Sequence[PoolUse]) -> Step:
        added: dict[datetime, list[int]] = {}  # one row per hour (PostgreSQL upserts a row once)
        for item in use:
            row = added.setdefault(hour_of(item.at), [0, 0, 0])
            row[0] += item.leases_started
            row[1] += item.exhaustions
            row[2] = max(row[2], item.in_use)
        return cls(_ADD_USE, [(pool, hour, *counts) for hour, counts in added.items()])


def _visit_row(visit: Visit) -> tuple[Any, ...]:
    return tuple(getattr(visit, name) for name in _VISIT_FIELDS)


async def write_steps(conn: AsyncConnection, steps: Sequence[Step]) -> set[str] | None:
    """Run ``steps`` in order within the caller's transaction (module docstring); with an
    `_INSERT_FREE_LEASES` step, the visits whose live lease it stored (None without)."""
    steps = [step for step in steps if step.rows]
    if not steps:
        return None
    bind = _memo(_time_binder(conn.dialect))
    statements = [
        (step.kind, [_bound(row, step.kind.times, bind) for row in step.rows]) for step in steps
    ]
    driver = await driver_of(conn)
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
        raise database_error(
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


async def driver_of(conn: AsyncConnection) -> Any:
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
    for first in range(0, len(live), IN_CHUNK):
        chunk = live[first : first + IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        yield (
            f"SELECT visit_id FROM {_LEASES} WHERE released_at IS NULL AND visit_id IN ({marks})",
            chunk,
        )


def database_error(conn: AsyncConnection, sql: str, error: Exception) -> Exception:
    """A driver's error as SQLAlchemy raises it (`IntegrityError`, `OperationalError`...)."""
    dialect = conn.dialect
    base = dialect.loaded_dbapi.Error
    if not isinstance(error, base):
        return error
    return exc.DBAPIError.instance(sql, None, error, base, hide_parameters=True, dialect=dialect)
