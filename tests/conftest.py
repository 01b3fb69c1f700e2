"""Database fixtures shared by the whole suite: real SQLite files and real PostgreSQL.

`database_url` runs a test on both engines: a SQLite file in tmp_path, and a
fresh PostgreSQL database (dropped afterwards) on the server named by
$PBX_TRACKER_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
Without a reachable server the PostgreSQL runs are skipped with the reason,
except under CI (CI=true), where they fail: CI must run them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ga4_server import Collector, serving
from mailserver import Mailbox
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head

PG_SERVER_ENV = "PBX_TRACKER_TEST_PG_URL"
DEFAULT_PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


class PostgresServer:
    """Creates and drops throw-away databases on one PostgreSQL server."""

    def __init__(self, server_url: str) -> None:
        self._url = make_url(server_url).set(drivername="postgresql")

    def database_url(self, name: str) -> str:
        """A plain URL for `name`, as a user would write it."""
        return self._url.set(database=name).render_as_string(hide_password=False)

    def check(self) -> None:
        with self._admin():
            pass

    def create(self, name: str) -> str:
        self._run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop(self, name: str) -> None:
        query = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
        self._run(sql.SQL(query).format(sql.Identifier(name)))

    def rename(self, old: str, new: str) -> None:
        query = sql.SQL("ALTER DATABASE {} RENAME TO {}")
        self._run(query.format(sql.Identifier(old), sql.Identifier(new)))

    def terminate_connections(self, name: str) -> int:
        """Kill every session on `name`, as a PostgreSQL restart would."""
        query = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()"
        )
        with self._admin() as conn:
            row = conn.execute(query, (name,)).fetchone()
        return int(row[0]) if row else 0

    def _run(self, statement: sql.Composed) -> None:
        with self._admin() as conn:
            conn.execute(statement)

    def _admin(self) -> psycopg.Connection[Any]:
        conninfo = self._url.render_as_string(hide_password=False)
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)


def unique_database_name() -> str:
    return f"pbx_tracker_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The test PostgreSQL server; skips (or fails under CI) when unreachable."""
    server_url = os.environ.get(PG_SERVER_ENV, DEFAULT_PG_SERVER)
    server = PostgresServer(server_url)
    try:
        server.check()
    except psycopg.Error as error:
        shown = make_url(server_url).render_as_string(hide_password=True)
        reason = f"PostgreSQL not reachable at {shown}: {' '.join(str(error).split())}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must run the PostgreSQL tests; set {PG_SERVER_ENV})")
        pytest.skip(reason)
    return server


@pytest.fixture(name="postgres_database")
def _postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (its URL); dropped afterwards."""
    name = unique_database_name()
    url = postgres_server.create(name)
    try:
        yield url
    finally:
        postgres_server.drop(name)


@pytest.fixture(
    name="database_url",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def _database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each engine, as a plain user URL (no schema yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'pbx-tracker.sqlite3'}"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture(scope="session")
def sqlite_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the Alembic head once per run: a test that wants a migrated
    SQLite database gets a copy (a millisecond) instead of running every migration (about
    0.4 s, hundreds of times a run).  The migrations themselves are tested in
    tests/integration/test_migrations.py."""
    path = tmp_path_factory.mktemp("schema") / "head.sqlite3"
    upgrade_to_head(f"sqlite:///{path}")  # closes its connections: the WAL is checkpointed
    return path


@pytest.fixture(name="migrated_url")
async def _migrated_url(database_url: str, request: pytest.FixtureRequest) -> str:
    """`database_url` with the schema at the Alembic head."""
    if database_url.startswith("sqlite:///"):
        target = Path(database_url.removeprefix("sqlite:///"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.getfixturevalue("sqlite_schema"), target)
    else:
        await asyncio.to_thread(upgrade_to_head, database_url)
    return database_url


@pytest.fixture(name="engine")
async def _engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    """An async engine on a migrated database; disposed afterwards."""
    engine = make_async_engine(migrated_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(name="asterisk")
async def _asterisk() -> AsyncIterator[FakeAsterisk]:
    """The simulated Asterisk with the captured PBX's AMI user (tests/data/asterisk-traces).

    `timestampevents = yes`: events carry their own time, so traces play at full speed.
    """
    async with FakeAsterisk(
        username="tracker", secret="tracker-secret", timestamp_events=True
    ) as server:
        yield server


@pytest.fixture(name="mailbox")
def _mailbox() -> Iterator[Mailbox]:
    """A real SMTP server on loopback that keeps every message (tests/mailserver.py)."""
    server = Mailbox()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="collector")
async def _collector() -> AsyncIterator[Collector]:
    """A GA4 Measurement Protocol endpoint on loopback (tests/ga4_server.py)."""
    async with serving() as collector:
        yield collector
