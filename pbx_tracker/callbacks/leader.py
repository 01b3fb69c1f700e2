"""Which daemon sends the reminders when several share one PostgreSQL database.

Every daemon opens tasks for the calls it sees, but only one runs the
reminder scheduler: the one holding a PostgreSQL session-level advisory lock
(DESIGN.md: cluster-wide jobs run on the node holding the lock).  The lock
lives as long as the connection that took it, so a leader that dies (even
killed) lets another daemon take over at its next try; that daemon then puts
every open task's jobs back.  With SQLite there is one daemon per file: it
always leads.
"""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["LOCK_KEY", "Leadership"]

log = structlog.get_logger(__name__)

LOCK_KEY = 0x7062_7874_6362_6B31  # "pbxtcbk1": callbacks' advisory lock, any 64-bit number


class Leadership:
    """Holds, or tries to take, the callbacks lock on a connection of its own."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self.shared = engine.dialect.name == "postgresql"
        # reminder jobs due together all ask at once: one at a time on the one connection
        self._asking = asyncio.Lock()

    @property
    def leading(self) -> bool:
        return not self.shared or self._conn is not None

    async def try_lead(self) -> bool:
        """True when this daemon leads (now or already); never raises."""
        if not self.shared:
            return True
        async with self._asking:
            return await self._try_lead()

    async def _try_lead(self) -> bool:
        if self._conn is not None:
            return await self._still_held()
        try:
            conn = await self._engine.connect()
        except Exception as error:
            log.warning("callbacks.leadership_unknown", error=str(error) or type(error).__name__)
            return False
        got = await self._take(conn)
        if got:
            self._conn = conn
            log.info("callbacks.leading")
        else:
            await conn.close()
        return got

    async def _take(self, conn: AsyncConnection) -> bool:
        try:
            result = await conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}
            )
            await conn.commit()  # the lock is the session's; no transaction left open
            return bool(result.scalar())
        except Exception as error:
            log.warning("callbacks.leadership_unknown", error=str(error) or type(error).__name__)
            return False

    async def _still_held(self) -> bool:
        """The connection holding the lock is alive (else the lock is gone with it)."""
        assert self._conn is not None
        try:
            await self._conn.execute(text("SELECT 1"))
            await self._conn.commit()
            return True
        except Exception as error:
            log.warning("callbacks.leadership_lost", error=str(error) or type(error).__name__)
            await self._release()
            return False

    async def release(self) -> None:
        """Let another daemon lead: unlock, and keep the pool from reusing the session."""
        async with self._asking:
            await self._release()

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            await conn.commit()
        except Exception as error:  # a broken session took the lock with it
            log.info("callbacks.release_failed", error=str(error) or type(error).__name__)
        finally:
            await conn.invalidate()  # never back to the pool, whatever the unlock did
            await conn.close()
