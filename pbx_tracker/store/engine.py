"""Engines for the URLs users write: `sqlite:///path` and `postgresql://…`.

Users (and the config file) give plain URLs; we pick the drivers:
aiosqlite / pysqlite for SQLite, psycopg 3 for PostgreSQL (sync and async).
SQLite connections get WAL, a busy timeout and foreign keys on every connect.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, create_engine, event, exc, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

T = TypeVar("T")
SQLITE_BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 10

_ASYNC_DRIVERS = {"sqlite": ("aiosqlite",), "postgresql": ("psycopg", "psycopg_async", "asyncpg")}
_SYNC_DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg", "psycopg2", "pg8000")}
_DEFAULT_DRIVER = {
    (True, "sqlite"): "sqlite+aiosqlite",
    (True, "postgresql"): "postgresql+psycopg",
    (False, "sqlite"): "sqlite",
    (False, "postgresql"): "postgresql+psycopg",
}
_SECRET_QUERY_KEYS = re.compile(r"pass|secret|token|key", re.IGNORECASE)
# TCP keepalives notice a PostgreSQL server that vanished without closing the socket.
_PG_CONNECT_DEFAULTS = {
    "connect_timeout": PG_CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


# connection exception, insufficient resources (disk full), operator intervention
# (shutdown, restart), system error; PostgreSQL's errcodes.txt
_PG_TRANSIENT_CLASSES = ("08", "53", "57", "58")
# serialization failure, deadlock, read-only transaction (a standby during failover),
# undefined table (the schema is not migrated yet)
_PG_TRANSIENT_STATES = {"40001", "40P01", "25006", "42P01"}


class DatabaseUnavailableError(RuntimeError):
    """The database cannot be reached (the message names it, password masked)."""


def make_async_engine(url: str | URL) -> AsyncEngine:
    """An engine for the daemon: aiosqlite or psycopg (async)."""
    parsed = normalise_url(url, use_async=True)
    engine = create_async_engine(parsed, **_engine_options(parsed))
    _prepare(engine.sync_engine, parsed, foreign_keys=True)
    return engine


def make_sync_engine(url: str | URL, *, foreign_keys: bool = True) -> Engine:
    """A blocking engine for Alembic (and other sync users).

    SQLite gets real transactions for DDL too, so a failed migration rolls
    back; `foreign_keys=False` is what migrations want (batch table copies
    must not cascade deletes).
    """
    parsed = normalise_url(url, use_async=False)
    engine = create_engine(parsed, **_engine_options(parsed))
    _prepare(engine, parsed, foreign_keys=foreign_keys)
    if parsed.get_backend_name() == "sqlite":
        _use_transactional_ddl(engine)
    return engine


async def check_database(engine: AsyncEngine) -> None:
    """Raise DatabaseUnavailableError with a clear reason when unreachable."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (exc.SQLAlchemyError, OSError) as error:
        raise DatabaseUnavailableError(
            f"database {mask_url(engine.url)} is not reachable: {describe_error(error)}"
        ) from error


def normalise_url(url: str | URL, *, use_async: bool) -> URL:
    """Pick our driver unless the URL already names a suitable one."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    backend = "postgresql" if backend == "postgres" else backend
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: "
            "use sqlite:///path/to/file.sqlite3 or postgresql://user@host/dbname"
        )
    drivers = (_ASYNC_DRIVERS if use_async else _SYNC_DRIVERS)[backend]
    if "+" in parsed.drivername and parsed.get_driver_name() in drivers:
        return parsed
    return parsed.set(drivername=_DEFAULT_DRIVER[use_async, backend])


def mask_url(url: str | URL) -> str:
    """The URL for logs and messages: password and secret-looking query values masked."""
    parsed = make_url(url)
    query = {
        key: "***" if _SECRET_QUERY_KEYS.search(key) else value
        for key, value in parsed.query.items()
    }
    return parsed.set(query=query).render_as_string(hide_password=True)


def describe_error(error: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's SQL text and parameters."""
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        error = error.orig
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}".rstrip(": ")


class DatabaseProblem(Exception):
    """A command could not use the database: one line naming it (password masked)."""


async def in_transaction(url: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``work`` in one transaction on an engine of its own, as a command line command uses
    the database; DatabaseProblem (with what to check) when the database fails."""
    engine = make_async_engine(url)
    try:
        async with engine.begin() as conn:
            return await work(conn)
    except (exc.SQLAlchemyError, OSError) as error:
        raise DatabaseProblem(
            f"database {mask_url(url)}: {describe_error(error)}"
            " (is it reachable, and migrated with `pbx-tracker db upgrade`?)"
        ) from None
    finally:
        await engine.dispose()


def is_transient_error(error: BaseException) -> bool:
    """True when the database (not the data) is the problem: retry later."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    transient = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, OSError)
    return isinstance(error, transient) or _pg_transient_state(error)


def _pg_transient_state(error: BaseException) -> bool:
    """PostgreSQL SQLSTATEs that say "not now" rather than "not this row"."""
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None) or ""
    return sqlstate.startswith(_PG_TRANSIENT_CLASSES) or sqlstate in _PG_TRANSIENT_STATES


def _engine_options(url: URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        return {}
    defaults = {k: v for k, v in _PG_CONNECT_DEFAULTS.items() if k not in url.query}
    return {"pool_pre_ping": True, "connect_args": defaults}


def _prepare(engine: Engine, url: URL, *, foreign_keys: bool) -> None:
    if url.get_backend_name() != "sqlite":
        return
    _create_sqlite_folder(url)
    pragmas = (
        "PRAGMA journal_mode=WAL",
        f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}",
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()


def _create_sqlite_folder(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    folder = Path(database).expanduser().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatabaseUnavailableError(
            f"cannot create the folder {folder} for the SQLite database: {error}"
        ) from error


def _use_transactional_ddl(engine: Engine) -> None:
    """SQLAlchemy's recipe: let SQLAlchemy, not pysqlite, emit BEGIN."""

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


_DIALECT_INSERT: dict[str, Callable[[Table], Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def dialect_insert(executor: AsyncConnection | AsyncSession) -> Callable[[Table], Any]:
    """The database's own INSERT (with ``on_conflict_do_*``) for upserts."""
    bind = executor.get_bind() if isinstance(executor, AsyncSession) else executor
    name = bind.dialect.name
    if name not in _DIALECT_INSERT:
        raise ValueError(f"unsupported database dialect {name!r}")
    return _DIALECT_INSERT[name]
