"""Returning callers: did this caller call before? (`first_time_caller` of a record).

Runs inside the caller's transaction, as `pbx_tracker.store.calls` does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, func, not_, select

from pbx_tracker.calls.records import CallRecord, Direction
from pbx_tracker.store.calls import Executor, calls_table


async def mark_first_time_callers(
    executor: Executor, records: Sequence[CallRecord]
) -> list[CallRecord]:
    """Fill `first_time_caller` as `caller_has_earlier_call` would, record after record
    (each judged against the database and the records before it), in one query.

    Saving a call again keeps its caller and start (they come from the same
    Linkedid), which is what lets two earliest calls per caller decide.
    """
    judged = [r for r in records if _needs_first_time(r)]
    callers = sorted({r.caller for r in judged if r.caller is not None})
    known = await _earliest_calls(executor, callers) if callers else {}
    marked = []
    for record in records:
        if record.caller is not None and _needs_first_time(record):
            calls = known.setdefault(record.caller, [])
            key = (record.node, record.linkedid)
            earlier = any(start < record.started_at and k != key for start, k in calls)
            record = record.replace(first_time_caller=not earlier)
        if record.caller is not None and record.direction is Direction.INBOUND:
            _remember(known.setdefault(record.caller, []), record)
        marked.append(record)
    return marked


def _needs_first_time(record: CallRecord) -> bool:
    return (
        record.first_time_caller is None
        and record.caller is not None
        and record.direction is Direction.INBOUND
    )


async def _earliest_calls(
    executor: Executor, callers: list[str]
) -> dict[str, list[tuple[datetime, tuple[str, str]]]]:
    """The two earliest stored calls of each caller: enough to tell, for any call of
    theirs, whether another call came before it."""
    c = calls_table.c
    rank = (
        func.row_number().over(partition_by=c.caller, order_by=(c.started_at, c.id)).label("rank")
    )
    ranked = (
        select(c.caller, c.started_at, c.node, c.linkedid, rank)
        .where(c.caller.in_(callers))
        .subquery()
    )
    query = select(ranked).where(ranked.c.rank <= 2)
    known: dict[str, list[tuple[datetime, tuple[str, str]]]] = defaultdict(list)
    for row in (await executor.execute(query)).all():
        known[row.caller].append((row.started_at, (row.node, row.linkedid)))
    return known


def _remember(calls: list[tuple[datetime, tuple[str, str]]], record: CallRecord) -> None:
    """The record is now stored: keep the caller's two earliest calls up to date."""
    key = (record.node, record.linkedid)
    calls[:] = sorted([c for c in calls if c[1] != key] + [(record.started_at, key)])[:2]


async def caller_has_earlier_call(
    executor: Executor,
    caller: str,
    started_at: datetime,
    exclude: tuple[str, str],
    *,
    since: datetime | None = None,
) -> bool:
    """Did `caller` call before `started_at` (and after `since`), other than `exclude`?

    `exclude` is the (node, linkedid) of the call being judged, so saving the
    same call twice does not make its caller a returning one.
    """
    node, linkedid = exclude
    c = calls_table.c
    query = select(c.id).where(
        c.caller == caller,
        c.started_at < started_at,
        not_(and_(c.node == node, c.linkedid == linkedid)),
    )
    if since is not None:
        query = query.where(c.started_at >= since)
    return (await executor.execute(query.limit(1))).first() is not None
