"""Who last talked with a caller: the manager a returning caller rings first.

The last answered conversation with the caller counts: an inbound call (the
manager it was transferred to, else who answered) or a callback the caller
picked up (``outbound_calls``).  Answers are cached per caller in a bounded
LRU, and `remember` updates the cache from every finished call, so a caller's
database row is read at most once while they stay in the cache.  `preload`
reads the whole sticky window at start: from then on a caller who is not in
memory has no history and routing never waits for the database (unless the
window holds more callers than `preload_limit`); `refresh` picks up calls other
daemons wrote to a shared database since.  A database
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
        self,
        engine: AsyncEngine | None,
        *,
        size: int = 10_000,
        timeout: float = 1.0,
        preload_limit: int = 200_000,
    ) -> None:
        self._engine = engine
        self._size = size
        self._timeout = timeout
        self._preload_limit = preload_limit
        self._cache: OrderedDict[str, LastTalk | None] = OrderedDict()
        self._complete_since: datetime | None = None  # every caller since then is in memory
        self._last_ids = {"calls": 0, "outbound": 0}

    async def last_manager(self, caller: str, since: datetime) -> LastTalk | None:
        if caller in self._cache:
            self._cache.move_to_end(caller)
            found = self._cache[caller]
        elif self._engine is None or self._knows_everyone_since(since):
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

    def _knows_everyone_since(self, since: datetime) -> bool:
        return self._complete_since is not None and since >= self._complete_since

    def _store(self, caller: str, found: LastTalk | None) -> None:
        self._cache[caller] = found
        self._cache.move_to_end(caller)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
            self._complete_since = None  # something was forgotten: ask the database again

    async def preload(self, since: datetime) -> int:
        """Read every answered conversation since ``since``; how many callers are known.

        When they fit in `preload_limit`, a caller not in memory afterwards has
        no conversation since ``since`` and is answered without the database.
        """
        if self._engine is None:
            return 0
        talks = await self._read_since(self._engine, since=since)
        if len(talks) > self._preload_limit:
            log.info("routing.sticky_preload_skipped", callers=len(talks))
            return 0
        self._size = max(self._size, 2 * len(talks), 10_000)
        self._merge(talks)
        self._complete_since = since
        return len(talks)

    async def refresh(self) -> int:
        """Conversations written since the last read (e.g. by another node); how many."""
        if self._engine is None:
            return 0
        talks = await self._read_since(self._engine, since=None)
        self._merge(talks)
        return len(talks)

    def _merge(self, talks: dict[str, LastTalk]) -> None:
        for caller, talk in talks.items():
            known = self._cache.get(caller)
            if known is None or known[1] <= talk[1]:
                self._store(caller, talk)

    async def _read_since(self, engine: AsyncEngine, since: datetime | None) -> dict[str, LastTalk]:
        """Each caller's newest conversation in rows newer than the last read (and ``since``)."""
        talks: dict[str, LastTalk] = {}
        async with engine.connect() as conn:
            for key, table in (("calls", calls_table), ("outbound", outbound_table)):
                rows = await _answered_rows(conn, table, self._last_ids[key], since)
                for row_id, caller, manager, started in rows:
                    self._last_ids[key] = max(self._last_ids[key], row_id)
                    if caller not in talks or talks[caller][1] <= started:
                        talks[caller] = (manager, started)
        return talks

    async def _read(self, engine: AsyncEngine, caller: str) -> LastTalk | None:
        async with asyncio.timeout(self._timeout), engine.connect() as conn:
            inbound = await _latest(conn, calls_table, caller, inbound=True)
            outbound = await _latest(conn, outbound_table, caller, inbound=False)
        found = [talk for talk in (inbound, outbound) if talk is not None]
        return max(found, key=lambda talk: talk[1], default=None)


async def _answered_rows(
    conn: AsyncConnection, table: Table, after_id: int, since: datetime | None
) -> list[tuple[int, str, str, datetime]]:
    """(id, caller, manager, start) of answered conversations with id > ``after_id``."""
    c = table.c
    manager: ColumnElement[Any]
    if table is calls_table:
        manager, caller = func.coalesce(c.transferred_to, c.answered_by), c.caller
    else:
        manager, caller = c.manager, c.customer
    query = select(c.id, caller, manager, c.started_at).where(
        c.id > after_id,
        c.status == CallStatus.ANSWERED.value,
        caller.is_not(None),
        manager.is_not(None),
    )
    if since is not None:
        query = query.where(c.started_at >= since)
    rows = (await conn.execute(query.order_by(c.id))).all()
    return [(int(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]


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
