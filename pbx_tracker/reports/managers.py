"""Ring-attempt figures of the manager view, from `ring_attempts` joined to its calls.

Per manager (the extension whose phone rang), for calls started in the period:

- ``missed_while_available``: missed calls (nobody was ever connected) on
  which this manager's phone rang and the leg ended ``noanswer`` or
  ``cancel`` — the phone was free and rang, and nobody took the call.  A leg
  that ended ``busy``/``chanunavail`` (on another call, offline) does not
  count, nor a ring of an answered call (a colleague took it);
- ``answer_seconds``: average seconds from this manager's phone starting to
  ring to the call being answered, over the calls they answered.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Select, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from pbx_tracker.reports.calls import Figures, Key, fetch_grouped
from pbx_tracker.reports.dialect import seconds_between
from pbx_tracker.reports.dimensions import Dimension, ReportScope, calls_table, labelled
from pbx_tracker.store.models import RingAttemptRow

__all__ = ["AVAILABLE_OUTCOMES", "attempt_figures", "missed_while_available"]

attempts_table = cast(Table, RingAttemptRow.__table__)
AVAILABLE_OUTCOMES = ("noanswer", "cancel")


async def attempt_figures(
    conn: AsyncConnection, dimensions: list[Dimension], scope: ReportScope
) -> dict[Key, Figures]:
    """Both figures, each from the few attempts it needs (missed calls' rings; the
    answering legs), merged by key."""
    found: dict[Key, Figures] = {}
    for query in (_missed_query(dimensions, scope), _answer_query(dimensions, scope)):
        for key, figures in (await fetch_grouped(conn, query, len(dimensions))).items():
            found.setdefault(key, {}).update(figures)
    return found


async def missed_while_available(conn: AsyncConnection, scope: ReportScope) -> int:
    """Distinct missed calls of the whole report that rang a free phone."""
    found = await fetch_grouped(conn, _missed_query([], scope), 0)
    return int(found.get((), {}).get("missed_while_available") or 0)


def _joined(dimensions: list[Dimension], scope: ReportScope) -> list[ColumnElement[Any]]:
    return labelled(dimensions, scope, manager=attempts_table.c.manager)


def _missed_query(dimensions: list[Dimension], scope: ReportScope) -> Select[Any]:
    """Distinct missed calls per group that rang a free phone (a phone may ring twice)."""
    a, c = attempts_table.c, calls_table.c
    rings = (
        select(*_joined(dimensions, scope), a.call_id)
        .select_from(attempts_table.join(calls_table, c.id == a.call_id))
        .where(
            *scope.in_period(c.started_at),
            c.status == "missed",
            a.outcome.in_(AVAILABLE_OUTCOMES),
            a.manager.is_not(None),
        )
        .distinct()
        .subquery("rings")
    )
    grouped = [rings.c[f"d{i}"] for i in range(len(dimensions))]
    count = func.count().label("missed_while_available")
    return select(*grouped, count).select_from(rings).group_by(*grouped)


def _answer_query(dimensions: list[Dimension], scope: ReportScope) -> Select[Any]:
    """Seconds from the answering manager's phone starting to ring to the answer."""
    a, c = attempts_table.c, calls_table.c
    keys = _joined(dimensions, scope)
    speed = seconds_between(scope.dialect, c.answered_at, a.rang_at)
    return (
        select(
            *keys,
            func.avg(speed).label("answer_seconds"),
            func.count().label("answer_count"),
        )
        .select_from(attempts_table.join(calls_table, c.id == a.call_id))
        .where(*scope.in_period(c.started_at), a.outcome == "answer", a.manager == c.answered_by)
        .group_by(*keys)
    )
