"""Callback figures of a report: the callback tasks whose first missed call is in a group.

A task's first missed call is the call that opened it (``first_call_id``,
migration 0009; later missed calls join it).  Only missed calls open tasks, so
the join looks at missed calls only (a year holds far fewer of them than
calls).  Per group:

- ``callbacks_opened``: tasks;
- ``callbacks_done``: tasks resolved, however (the customer was called back,
  called again and was answered, or a manager closed the task);
- ``callbacks_in_sla``: tasks resolved within ``callbacks.sla_minutes`` of
  the first missed call;
- ``callback_minutes``: median minutes from the first missed call to the
  resolution, over the resolved tasks (the middle one, or the mean of the
  two middle ones).

The ``manager`` of a task is who resolved it, or while it is open its assignee.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Select, Table, and_, case, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from pbx_tracker.reports.calls import Figures, Key, fetch_grouped
from pbx_tracker.reports.dialect import label_text, seconds_between
from pbx_tracker.reports.dimensions import (
    TIME_DIMENSIONS,
    Dimension,
    ReportScope,
    calls_table,
    labelled,
)
from pbx_tracker.store.models import CallbackTaskRow

__all__ = ["callback_figures"]

tasks_table = cast(Table, CallbackTaskRow.__table__)
CALL_LABELS = frozenset(Dimension) - {Dimension.MANAGER, *TIME_DIMENSIONS}  # from the call


def _task_facts(
    dimensions: list[Dimension], scope: ReportScope, *, managers_only: bool
) -> tuple[list[ColumnElement[Any]], Any, list[ColumnElement[bool]]]:
    """(key columns, FROM clause, WHERE) of tasks joined to their first missed call.

    Grouped by nothing but the manager, day and hour, the call is not needed: the
    task's ``first_missed_at`` is that call's start (a year's tasks are read, not
    its calls).
    """
    t, c = tasks_table.c, calls_table.c
    manager = func.coalesce(t.resolved_by, t.assignee)
    joined: Any = tasks_table
    if CALL_LABELS.intersection(dimensions):
        keys = labelled(dimensions, scope, manager=manager)
        joined = tasks_table.join(calls_table, and_(c.id == t.first_call_id, c.status == "missed"))
        where = scope.in_period(c.started_at)
    else:
        keys = labelled(dimensions, scope, manager=manager, moment=t.first_missed_at)
        where = scope.in_period(t.first_missed_at)
    if managers_only:
        where.append(manager.is_not(None))
    return keys, joined, where


def _minutes(scope: ReportScope) -> ColumnElement[Any]:
    """Minutes from the first missed call to the resolution, never below 0 (a task that
    an overlapping call closed before the rule of `callbacks.policy` said otherwise)."""
    t = tasks_table.c
    minutes = seconds_between(scope.dialect, t.resolved_at, t.first_missed_at) / 60.0
    return case((minutes < 0, 0.0), else_=minutes)


def _one(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return case((condition, 1), else_=0)


async def callback_figures(
    conn: AsyncConnection,
    dimensions: list[Dimension],
    scope: ReportScope,
    *,
    managers_only: bool = False,
) -> dict[Key, Figures]:
    """Opened, done, done within the SLA, and the median minutes, in one query; on
    PostgreSQL grouped by something, also those of the whole report under ``()``
    (a median is no sum of the rows)."""
    keys, joined, where = _task_facts(dimensions, scope, managers_only=managers_only)
    if scope.dialect != "postgresql":
        query = _ranked_query(keys, joined, where, scope, len(dimensions))
        return await fetch_grouped(conn, query, len(dimensions))
    size = len(dimensions)
    result = await conn.execute(_percentile_query(keys, joined, where, scope))
    names = list(result.keys())[size + 1 :]  # after the key and ``whole``
    found: dict[Key, Figures] = {}
    for row in result:
        key = () if row[size] else tuple(map(label_text, row[:size]))
        found[key] = dict(zip(names, row[size + 1 :], strict=True))
    return found


def _percentile_query(
    keys: list[ColumnElement[Any]],
    joined: Any,
    where: list[ColumnElement[bool]],
    scope: ReportScope,
) -> Select[Any]:
    """PostgreSQL: the median is ``percentile_cont(0.5)`` over the done tasks; the
    groups and the whole (``whole`` 1) as two grouping sets of one pass."""
    done = tasks_table.c.status == "done"
    minutes = _minutes(scope)
    sets = func.grouping_sets(tuple_(*keys), tuple_()) if keys else None
    whole = func.grouping(*keys) if keys else literal(1)
    return (
        select(
            *keys,
            whole.label("whole"),
            func.count().label("callbacks_opened"),
            func.sum(_one(done)).label("callbacks_done"),
            func.sum(_one(and_(done, minutes <= scope.rules.sla_minutes))).label(
                "callbacks_in_sla"
            ),
            func.percentile_cont(0.5).within_group(minutes).filter(done).label("callback_minutes"),
        )
        .select_from(joined)
        .where(*where)
        .group_by(*([sets] if sets is not None else []))
    )


def _ranked_query(
    keys: list[ColumnElement[Any]],
    joined: Any,
    where: list[ColumnElement[bool]],
    scope: ReportScope,
    size: int,
) -> Select[Any]:
    """SQLite has no percentile function: the median is the middle done task (or the
    mean of the two middle ones) of each group, ranked with window functions."""
    done = tasks_table.c.status == "done"
    minutes = _minutes(scope)
    facts = (
        select(
            *keys,
            _one(done).label("done"),
            _one(and_(done, minutes <= scope.rules.sla_minutes)).label("in_sla"),
            case((done, minutes)).label("minutes"),
        )
        .select_from(joined)
        .where(*where)
        .subquery("facts")
    )
    parts = [facts.c[f"d{i}"] for i in range(size)]
    ranked = select(
        facts,
        func.row_number()
        .over(partition_by=[*parts, facts.c.done], order_by=facts.c.minutes)
        .label("rank"),
        func.count().over(partition_by=[*parts, facts.c.done]).label("size"),
    ).subquery("ranked")
    r = ranked.c
    grouped = [r[f"d{i}"] for i in range(size)]
    middle = and_(r.done == 1, r.rank * 2 >= r.size, r.rank * 2 <= r.size + 2)
    return select(
        *grouped,
        func.count().label("callbacks_opened"),
        func.sum(r.done).label("callbacks_done"),
        func.sum(r.in_sla).label("callbacks_in_sla"),
        func.avg(case((middle, r.minutes))).label("callback_minutes"),
    ).group_by(*grouped)
