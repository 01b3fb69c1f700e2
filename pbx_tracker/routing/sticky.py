"""Who last talked with a caller: the manager a returning caller rings first.

The last answered conversation with the caller counts: an inbound call (the
manager it was transferred to, else who answered) or a callback the caller
picked up (``outbound_calls``).  Answers are cached per caller in a bounded
LRU, and `remember` updates the cache from every finished call, so a caller's
database row is read at most once while they stay in the cache.  A database
that fails or is slow costs the sticky ring only: the lookup logs and answers
None, routing goes on.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import Table, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ColumnElement

from pbx_tracker.calls.records import CallRecord, CallStatus, Direction
from pbx_tracker.store.calls import calls_table, outbound_table

__all__ = ["CallerHistory", "LastTalk", "StickyMemory"]

log = structlog.get_logger(__name__)

LastTalk = tuple[str, datetime]  # (manager's extension, when the conversation started)


class CallerHistory(Protocol):
    async def last_manager(self, caller: str, since: datetime) -> LastTalk | None:
        """The manager who last talked with ``caller`` (E.164) at or after ``since``."""
        ...


class StickyMemory:
    """`CallerHistory` from the call store, cached; ``engine=None`` keeps only the cache."""

    def __init__(
        self, engine: AsyncEngine | None, *, size: int = 10_000, timeout: float = 1.0
    ) -> None:
        self._engine = engine
        self._size = size
        self._timeout = timeout
        self._cache: OrderedDict[str, LastTalk | None] = OrderedDict()

    async def last_manager(self, caller: str, since: datetime) -> LastTalk | None:
        if caller in self._cache:
            self._cache.move_to_end(caller)
            found = self._cache[caller]
        elif self._engine is None:
            return None
        else:
            try:
                found = await self._read(self._engine, caller)
            except (SQLAlchemyError, OSError, TimeoutError) as error:
                log.warning(
                    "routing.sticky_lookup_failed", error=str(error) or type(error).__name__
                )
                return None
            self._store(caller, found)
        return found if found is not None and found[1] >= since else None

    def remember(self, record: CallRecord) -> None:
        """A call finished: if the caller talked to a manager, they are now the last one."""
        if record.status is not CallStatus.ANSWERED or not record.caller:
            return
        if record.direction is Direction.INBOUND:
            manager = record.transferred_to or record.answered_by
        else:
            manager = record.answered_by
        if manager is None:
            return
        known = self._cache.get(record.caller)
        if known is None or known[1] <= record.started_at:
            self._store(record.caller, (manager, record.started_at))

    def _store(self, caller: str, found: LastTalk | None) -> None:
        self._cache[caller] = found
        self._cache.move_to_end(caller)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    async def _read(self, engine: AsyncEngine, caller: str) -> LastTalk | None:
        async with asyncio.timeout(self._timeout), engine.connect() as conn:
            inbound = await _latest(conn, calls_table, caller, inbound=True)
            outbound = await _latest(conn, outbound_table, caller, inbound=False)
        found = [talk for talk in (inbound, outbound) if talk is not None]
        return max(found, key=lambda talk: talk[1], default=None)


async def _latest(
    conn: AsyncConnection, table: Table, caller: str, *, inbound: bool
) -> LastTalk | None:
    """The newest answered conversation with ``caller`` in one table, as (manager, start)."""
    c = table.c
    manager: ColumnElement[Any]
    if inbound:
        manager = func.coalesce(c.transferred_to, c.answered_by)
        query = select(manager, c.started_at).where(c.caller == caller)
    else:
        manager = c.manager
        query = select(manager, c.started_at).where(c.customer == caller)
    query = (
        query.where(c.status == CallStatus.ANSWERED.value, manager.is_not(None))
        .order_by(c.started_at.desc(), c.id.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    return None if row is None else (str(row[0]), row[1])
