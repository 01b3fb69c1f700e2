"""Ring-attempt figures of the manager view, from `ring_attempts` joined to its calls.

Per manager (the extension whose phone rang), for calls started in the period,
``missed_while_available``:

missed calls (nobody was ever connected) on which this manager's phone rang
and the leg ended ``noanswer`` or ``cancel`` — the phone was free and rang,
and nobody took the call — or ``not_accepted`` (their mobile picked up and
never confirmed).  A leg that ended ``busy``/``chanunavail`` (on
another call, offline) does not count, nor a ring of an answered call (a
colleague took it).  The answer speed comes with the call figures
(`pbx_tracker.reports.calls`, from ``calls.answer_seconds``).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import CTE, Table, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.reports.calls import Figures, Key
from pbx_tracker.reports.dialect import label_text
from pbx_tracker.reports.dimensions import Dimension, ReportScope, calls_table, labelled
from pbx_tracker.store.models import RingAttemptRow

__all__ = ["AVAILABLE_OUTCOMES", "attempt_figures"]

attempts_table = cast(Table, RingAttemptRow.__table__)
AVAILABLE_OUTCOMES = ("noanswer", "cancel", "not_accepted")


async def attempt_figures(
    conn: AsyncConnection, dimensions: list[Dimension], scope: ReportScope
) -> dict[Key, Figures]:
    """Distinct missed calls per group that rang a free phone (a phone may ring twice),
    and under the key ``()`` those of the whole report (a call may ring several
    managers' phones: not the sum of the rows), from one pass over the rings."""
    rings = _rings(dimensions, scope)
    grouped = [rings.c[f"d{i}"] for i in range(len(dimensions))]
    count = func.count().label("missed_while_available")
    per_group = select(literal(0).label("whole"), *grouped, count).group_by(*grouped)
    blanks = [literal(None).label(f"d{i}") for i in range(len(dimensions))]
    whole = select(literal(1), *blanks, func.count(rings.c.call_id.distinct()))
    found: dict[Key, Figures] = {}
    for row in (await conn.execute(union_all(per_group, whole))).mappings():
        keys = tuple(label_text(row[f"d{i}"]) for i in range(len(dimensions)))
        found[() if row["whole"] else keys] = {"missed_while_available": row[count.name]}
    return found


def _rings(dimensions: list[Dimension], scope: ReportScope) -> CTE:
    """(keys, call id) of every ring of a free phone on a missed call, once each."""
    a, c = attempts_table.c, calls_table.c
    keys = labelled(dimensions, scope, manager=a.manager)
    return (
        select(*keys, a.call_id)
        .select_from(attempts_table.join(calls_table, c.id == a.call_id))
        .where(
            *scope.in_period(c.started_at),
            c.status == "missed",
            a.outcome.in_(AVAILABLE_OUTCOMES),
            a.manager.is_not(None),
        )
        .distinct()
        .cte("rings")
    )
