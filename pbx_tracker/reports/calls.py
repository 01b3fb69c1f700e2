"""Call figures of a report: one SQL aggregate per report over `calls`, one pass.

Per group of calls started in the period:

- ``calls``: inbound calls on tracked numbers;
- ``unique_callers``: calls from a number that had not called in the
  ``unique_days`` * 24 hours before (the uniqueness window; without one,
  never before) -- each caller counted once per window, as the call-tracking
  services count unique calls.  A number calling again within the window is a
  repeat call, whichever group it falls in; a hidden number is never unique;
- ``first_time_callers``: calls from a number that had never called before.
  These calls are the *leads*;
- ``spam_calls``: calls marked spam (``calls.spam``: a blocked number, a
  flood of repeat calls, or a manager's mark; `pbx_tracker.spam`).  They are
  counted as calls, answered or missed, but never as unique or first-time
  callers;
- ``target_calls``: answered calls with talk time >= ``target_seconds``;
- ``answered``, ``missed`` (no manager was ever connected);
- ``wait_seconds``: average ring time of the answered calls (caller's wait);
- ``talk_seconds``: total talk time;
- manager view only, over the calls a manager answered: ``answer_seconds``,
  the average seconds their phone rang before they took the call
  (``calls.answer_seconds``, stored with the call), and ``answer_count``, the
  calls that average is over.

Both caller figures are judged now from the stored fact ``previous_call_at``
(the start of the number's previous call, calls ordered by start then id;
kept right by triggers, migration 0006), not from the flag stored with the
call.  Of two calls from a number at the very same moment, the one stored
second is a repeat.  Each is a property of the call, so a total is the sum
of its rows and one pass over the calls gives every figure.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from pbx_tracker.reports.dialect import days_before, label_text
from pbx_tracker.reports.dimensions import (
    TIME_DIMENSIONS,
    Dimension,
    ReportScope,
    calls_table,
    labelled,
)

__all__ = ["CALL_FIGURES", "Figures", "Key", "call_figures", "fetch_grouped", "period_parts"]

Key = tuple[str | None, ...]
Figures = dict[str, Any]

CALL_FIGURES = (
    "calls",
    "unique_callers",
    "first_time_callers",
    "spam_calls",
    "target_calls",
    "answered",
    "missed",
    "wait_seconds",
    "talk_seconds",
)


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """The calls that meet ``condition`` (``count(*) FILTER``: cheaper than a sum of
    CASE on a million rows)."""
    return func.count().filter(condition)


def unique_condition(scope: ReportScope) -> ColumnElement[bool]:
    """No earlier call from the same number within the uniqueness window (or ever):
    the stored ``previous_call_at`` is empty or older than the window."""
    c = calls_table.c
    if scope.rules.unique_days is None:
        return first_time_condition()
    start = days_before(scope.dialect, c.started_at, scope.rules.unique_days)
    fresh = or_(c.previous_call_at.is_(None), c.previous_call_at < start)
    return and_(c.caller.is_not(None), c.spam.is_(False), fresh)


def first_time_condition() -> ColumnElement[bool]:
    """No earlier call from the same number at all."""
    c = calls_table.c
    return and_(c.caller.is_not(None), c.spam.is_(False), c.previous_call_at.is_(None))


def call_figures_query(
    dimensions: list[Dimension], scope: ReportScope, *, managers_only: bool = False
) -> Select[Any]:
    """Counts, callers, waits and talk per group: one pass over the calls of the period
    (the manager view: over the calls a manager answered)."""
    c = calls_table.c
    answered = c.status == "answered"
    target = and_(answered, c.talk_seconds >= scope.rules.target_seconds)
    keys = labelled(dimensions, scope)
    where = scope.in_period(c.started_at)
    if managers_only:
        where.append(c.answered_by.is_not(None))
    figures = [
        func.count().label("calls"),
        _count(unique_condition(scope)).label("unique_callers"),
        _count(first_time_condition()).label("first_time_callers"),
        _count(c.spam.is_(True)).label("spam_calls"),
        _count(target).label("target_calls"),
        _count(answered).label("answered"),
        _count(c.status == "missed").label("missed"),
        func.avg(c.ring_seconds).filter(answered).label("wait_seconds"),
        func.coalesce(func.sum(c.talk_seconds), 0).label("talk_seconds"),
    ]
    if managers_only:
        figures.append(func.avg(c.answer_seconds).label("answer_seconds"))
        figures.append(func.count(c.answer_seconds).label("answer_count"))
    return select(*keys, *figures).where(*where).group_by(*keys)


def period_parts(dimensions: list[Dimension], scope: ReportScope) -> list[ReportScope]:
    """The scopes the call figures are asked in, side by side, then added up by key.

    PostgreSQL runs a pass grouped by day or hour in one process (it cannot tell how
    few groups the expression makes, so it sees no gain in splitting the work): there
    the period is asked in two halves, one per connection.  Otherwise the whole."""
    if scope.dialect != "postgresql" or not TIME_DIMENSIONS.intersection(dimensions):
        return [scope]
    period = scope.period
    middle = period.start + (period.end - period.start) / 2
    return [
        replace(scope, period=replace(period, end=middle)),
        replace(scope, period=replace(period, start=middle)),
    ]


async def fetch_grouped(conn: AsyncConnection, query: Select[Any], size: int) -> dict[Key, Figures]:
    """Rows of a grouped query: the first ``size`` columns are the key, the rest figures."""
    result = await conn.execute(query)
    names = list(result.keys())[size:]
    return {
        tuple(map(label_text, row[:size])): dict(zip(names, row[size:], strict=True))
        for row in result
    }


async def call_figures(
    conn: AsyncConnection,
    dimensions: list[Dimension],
    scope: ReportScope,
    *,
    managers_only: bool = False,
) -> dict[Key, Figures]:
    """Every call figure per group.

    A report's groups are few, but PostgreSQL cannot tell how few a day or hour
    expression makes (it guesses one per call) and would sort a year of calls to
    group them: for this one-table pass it is told to hash instead."""
    query = call_figures_query(dimensions, scope, managers_only=managers_only)
    if scope.dialect != "postgresql":
        return await fetch_grouped(conn, query, len(dimensions))
    await conn.execute(text("SET LOCAL enable_sort = off"))
    found = await fetch_grouped(conn, query, len(dimensions))
    await conn.execute(text("SET LOCAL enable_sort = on"))
    return found
