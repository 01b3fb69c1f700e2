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

from sqlalchemy import Select, Table, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.reports.calls import Figures, Key, fetch_grouped
from pbx_tracker.reports.dialect import seconds_between
from pbx_tracker.reports.dimensions import Dimension, ReportScope, calls_table, labelled
from pbx_tracker.store.models import RingAttemptRow

__all__ = ["AVAILABLE_OUTCOMES", "attempt_figures"]

attempts_table = cast(Table, RingAttemptRow.__table__)
AVAILABLE_OUTCOMES = ("noanswer", "cancel")


async def attempt_figures(
    conn: AsyncConnection, dimensions: list[Dimension], scope: ReportScope
) -> dict[Key, Figures]:
    a, c = attempts_table.c, calls_table.c
    keys = labelled(dimensions, scope, manager=a.manager)
    missed_ring = and_(c.status == "missed", a.outcome.in_(AVAILABLE_OUTCOMES))
    took_it = and_(a.outcome == "answer", a.manager == c.answered_by)
    answer_speed = seconds_between(scope.dialect, c.answered_at, a.rang_at)
    query: Select[Any] = (
        select(
            *keys,
            func.count(case((missed_ring, c.id)).distinct()).label("missed_while_available"),
            func.avg(case((took_it, answer_speed))).label("answer_seconds"),
            func.count(case((took_it, 1))).label("answer_count"),
        )
        .select_from(attempts_table.join(calls_table, c.id == a.call_id))
        .where(*scope.in_period(c.started_at), a.manager.is_not(None))
        .group_by(*keys)
    )
    return await fetch_grouped(conn, query, len(dimensions))
