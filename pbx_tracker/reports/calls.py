"""Call figures of a report, one SQL aggregate per report over `calls`.

Per group of calls started in the period:

- ``calls``: inbound calls on tracked numbers;
- ``unique_callers``: distinct caller numbers (hidden numbers not counted);
- ``first_time_callers``: calls from a number with no earlier call in the
  ``unique_days`` * 24 hours before (or ever, without ``unique_days``),
  judged now from `calls`, not from the flag stored with the call; a hidden
  number is never first-time.  These calls are the *leads*;
- ``target_calls``: answered calls with talk time >= ``target_seconds``;
- ``answered``, ``missed`` (no manager was ever connected);
- ``wait_seconds``: average ring time of the answered calls (caller's wait);
- ``talk_seconds``: total talk time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from pbx_tracker.reports.dialect import days_before
from pbx_tracker.reports.dimensions import Dimension, ReportScope, calls_table, labelled

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
    """No earlier call from the same number within the unique window (or ever)."""
    calls, earlier = calls_table, calls_table.alias("earlier")
    same_caller = [
        earlier.c.caller == calls.c.caller,
        earlier.c.started_at < calls.c.started_at,
    ]
    if scope.rules.unique_days is not None:
        start = days_before(scope.dialect, calls.c.started_at, scope.rules.unique_days)
        same_caller.append(earlier.c.started_at >= start)
    return and_(calls.c.caller.is_not(None), ~exists().where(*same_caller))


def call_figures_query(
    dimensions: list[Dimension], scope: ReportScope, *, managers_only: bool = False
) -> Select[Any]:
    """Counts, waits and talk per group: one pass over the calls of the period."""
    c = calls_table.c
    answered = c.status == "answered"
    target = and_(answered, c.talk_seconds >= scope.rules.target_seconds)
    keys = labelled(dimensions, scope)
    return (
        select(
            *keys,
            func.count().label("calls"),
            _count(target).label("target_calls"),
            _count(answered).label("answered"),
            _count(c.status == "missed").label("missed"),
            func.avg(case((answered, c.ring_seconds))).label("wait_seconds"),
            func.coalesce(func.sum(c.talk_seconds), 0).label("talk_seconds"),
        )
        .where(*_calls_of(scope, managers_only=managers_only))
        .group_by(*keys)
    )


def _calls_of(scope: ReportScope, *, managers_only: bool) -> list[ColumnElement[bool]]:
    where = scope.in_period(calls_table.c.started_at)
    if managers_only:
        where.append(calls_table.c.answered_by.is_not(None))
    return where


def first_time_query(
    dimensions: list[Dimension], scope: ReportScope, *, managers_only: bool = False
) -> Select[Any]:
    """First-time calls per group: NOT EXISTS in WHERE, so PostgreSQL makes it a hash
    anti-join (in the select list it would run once per call)."""
    keys = labelled(dimensions, scope)
    return (
        select(*keys, func.count().label("first_time_callers"))
        .where(*_calls_of(scope, managers_only=managers_only), first_time_condition(scope))
        .group_by(*keys)
    )


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
    """Every call figure per group (three queries, merged by key)."""
    found: dict[Key, Figures] = {}
    for build in (call_figures_query, first_time_query, unique_callers_query):
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
