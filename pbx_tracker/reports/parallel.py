"""Run a report's queries side by side on PostgreSQL, all on one snapshot.

A report asks a few independent aggregates (calls, callback tasks, ring
attempts, spend, the total line's medians).  On PostgreSQL each runs on a
connection of its own, at most `WIDTH` at once, inside a REPEATABLE READ
transaction that imports the snapshot the report's own connection exported
(``pg_export_snapshot``): every query sees the same committed calls, as one
query would.  On SQLite, when the report's transaction has written something
(other connections would not see it), or when the snapshot cannot be shared,
they run one after the other on the report's connection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["WIDTH", "run_side_by_side"]

log = structlog.get_logger(__name__)

WIDTH = 3  # connections a report takes from the pool besides its own
_SNAPSHOT = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")

T = TypeVar("T")
Job = Callable[[AsyncConnection], Awaitable[T]]


async def run_side_by_side(
    conn: AsyncConnection, jobs: Sequence[Job[T]], settings: Sequence[str] = ()
) -> list[T]:
    """Each job's answer, in order.  ``settings`` are ``SET LOCAL`` lines for every
    connection that runs a job (the report's own already has them)."""
    snapshot = await _exported_snapshot(conn) if len(jobs) > 1 else None
    if snapshot is None:
        return [await job(conn) for job in jobs]
    gate = asyncio.Semaphore(WIDTH)

    async def run(job: Job[T]) -> T:
        async with gate, conn.engine.connect() as other:
            other = await other.execution_options(isolation_level="REPEATABLE READ")
            await other.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            for setting in settings:
                await other.execute(text(f"SET LOCAL {setting}"))
            return await job(other)

    return list(await asyncio.gather(*(run(job) for job in jobs)))


async def _exported_snapshot(conn: AsyncConnection) -> str | None:
    if conn.dialect.name != "postgresql":
        return None
    try:
        wrote = await conn.execute(text("SELECT txid_current_if_assigned()"))
        if wrote.scalar_one() is not None:
            return None
        snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
    except DBAPIError as error:  # e.g. a server that refuses: one query after another
        log.info("reports.snapshot_not_shared", error=str(error.orig))
        return None
    return str(snapshot) if _SNAPSHOT.match(str(snapshot)) else None
