"""Call figures of a report, one SQL aggregate per report over `calls`.

Per group of calls started in the period:

- ``calls``: inbound calls on tracked numbers;
- ``unique_callers``: distinct caller numbers (hidden numbers not counted);
- ``first_time_callers``: calls from a number with no earlier call in the
  ``unique_days`` * 24 hours before (or ever, without ``unique_days``),
  judged now from the stored fact ``previous_call_at`` (the start of the
  number's previous call, calls ordered by start then id; kept right by
  triggers, migration 0006), not from the flag stored with the call; a
  hidden number is never first-time.  Of two calls from a number at the very
  same moment, the one stored second is a repeat.  These calls are the *leads*;
- ``target_calls``: answered calls with talk time >= ``target_seconds``;
- ``answered``, ``missed`` (no manager was ever connected);
- ``wait_seconds``: average ring time of the answered calls (caller's wait);
- ``talk_seconds``: total talk time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from pbx_tracker.reports.dialect import DAY, HOUR, days_before, local_label
from pbx_tracker.reports.dimensions import (
    TIME_DIMENSIONS,
    Dimension,
    ReportScope,
    calls_table,
    labelled,
)

__all__ = ["Figures", "Key", "call_figures", "fetch_grouped", "unique_callers"]

Key = tuple[str | None, ...]
Figures = dict[str, Any]

CALL_FIGURES = (
    "calls",
    "unique_callers",
    "first_time_callers",
    "target_calls",
    "answered",
    "missed",
    "wait_seconds",
    "talk_seconds",
)


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def first_time_condition(scope: ReportScope) -> ColumnElement[bool]:
    """No earlier call from the same number within the unique window (or ever): the
    stored ``previous_call_at`` (the number's previous call, kept by triggers) is
    empty or older than the window."""
    c = calls_table.c
    if scope.rules.unique_days is None:
        fresh: ColumnElement[bool] = c.previous_call_at.is_(None)
    else:
        start = days_before(scope.dialect, c.started_at, scope.rules.unique_days)
        fresh = or_(c.previous_call_at.is_(None), c.previous_call_at < start)
    return and_(c.caller.is_not(None), fresh)


def first_in_period(scope: ReportScope) -> ColumnElement[bool]:
    """The number's first call of the period (one per number: calls are ordered by
    start, then id, as ``previous_call_at`` is)."""
    c = calls_table.c
    previous = c.previous_call_at
    return and_(c.caller.is_not(None), or_(previous.is_(None), previous < scope.period.start))


def first_in_bucket(dimensions: list[Dimension], scope: ReportScope) -> ColumnElement[bool] | None:
    """Grouped by day and/or hour only: the number's first call of its group (its
    previous call is before the period or in an earlier day or hour); None otherwise."""
    if not dimensions or not set(dimensions) <= TIME_DIMENSIONS:
        return None
    unit = HOUR if Dimension.HOUR in dimensions else DAY
    c = calls_table.c
    bucket = local_label(scope.dialect, c.started_at, scope.steps, unit)
    previous_bucket = local_label(scope.dialect, c.previous_call_at, scope.steps, unit)
    return or_(first_in_period(scope), and_(c.caller.is_not(None), previous_bucket != bucket))


def call_figures_query(
    dimensions: list[Dimension], scope: ReportScope, *, managers_only: bool = False
) -> Select[Any]:
    """Counts, waits, talk and first-time callers per group: one pass over the calls of
    the period.  ``period_firsts`` (first calls of the period) adds up to the distinct
    numbers of the whole report; grouped by time only, ``unique_callers`` too."""
    c = calls_table.c
    answered = c.status == "answered"
    target = and_(answered, c.talk_seconds >= scope.rules.target_seconds)
    keys = labelled(dimensions, scope)
    figures = [
        func.count().label("calls"),
        _count(first_time_condition(scope)).label("first_time_callers"),
        _count(target).label("target_calls"),
        _count(answered).label("answered"),
        _count(c.status == "missed").label("missed"),
        func.avg(case((answered, c.ring_seconds))).label("wait_seconds"),
        func.coalesce(func.sum(c.talk_seconds), 0).label("talk_seconds"),
    ]
    if not managers_only:
        figures.append(_count(first_in_period(scope)).label("period_firsts"))
        in_bucket = first_in_bucket(dimensions, scope)
        if in_bucket is not None:
            figures.append(_count(in_bucket).label("unique_callers"))
    return (
        select(*keys, *figures)
        .where(*_calls_of(scope, managers_only=managers_only))
        .group_by(*keys)
    )


def _calls_of(scope: ReportScope, *, managers_only: bool) -> list[ColumnElement[bool]]:
    where = scope.in_period(calls_table.c.started_at)
    if managers_only:
        where.append(calls_table.c.answered_by.is_not(None))
    return where


def unique_callers_query(
    dimensions: list[Dimension], scope: ReportScope, *, managers_only: bool = False
) -> Select[Any]:
    """Distinct numbers per group, as a DISTINCT subquery (hashed; count(DISTINCT) sorts)."""
    keys = labelled(dimensions, scope)
    pairs = (
        select(*keys, calls_table.c.caller)
        .where(*_calls_of(scope, managers_only=managers_only), calls_table.c.caller.is_not(None))
        .distinct()
        .subquery("pairs")
    )
    grouped = [pairs.c[f"d{i}"] for i in range(len(dimensions))]
    count = func.count().label("unique_callers")
    return select(*grouped, count).select_from(pairs).group_by(*grouped)


async def fetch_grouped(conn: AsyncConnection, query: Select[Any], size: int) -> dict[Key, Figures]:
    """Rows of a grouped query: the first ``size`` columns are the key, the rest figures."""
    found: dict[Key, Figures] = {}
    for row in (await conn.execute(query)).mappings():
        values = list(row.items())
        key = tuple(None if v is None else str(v) for _, v in values[:size])
        found[key] = {name: value for name, value in values[size:]}
    return found


async def call_figures(
    conn: AsyncConnection,
    dimensions: list[Dimension],
    scope: ReportScope,
    *,
    managers_only: bool = False,
) -> dict[Key, Figures]:
    """Every call figure per group: one pass, and the distinct numbers per group
    unless that pass could count them (merged by key)."""
    builds = [call_figures_query]
    if managers_only or first_in_bucket(dimensions, scope) is None:
        builds.append(unique_callers_query)
    found: dict[Key, Figures] = {}
    for build in builds:
        query = build(dimensions, scope, managers_only=managers_only)
        for key, figures in (await fetch_grouped(conn, query, len(dimensions))).items():
            found.setdefault(key, {}).update(figures)
    return found


async def unique_callers(
    conn: AsyncConnection, scope: ReportScope, *, managers_only: bool = False
) -> int:
    """Distinct numbers over the whole report (not a sum of its rows)."""
    found = await fetch_grouped(
        conn, unique_callers_query([], scope, managers_only=managers_only), 0
    )
    return int(found.get((), {}).get("unique_callers") or 0)
