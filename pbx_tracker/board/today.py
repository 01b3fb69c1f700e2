"""The day so far, from the database: the board's figures of today (the reports' zone).

The figures are the reports' (`pbx_tracker.reports.compute`) for today: of
the days report calls, answered, missed, the answer rate, the average ring
time of the answered calls (the caller's wait); of the managers report, per
manager, answered, missed while free (their phone rang and nobody took the
call) and callbacks done; plus the
missed calls still not called back (open callback tasks) and since when the
oldest of them waits (and the call that opened it, for its card).  One read
costs the same however many boards are open.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx_tracker.reports.compute import ReportKind, compute
from pbx_tracker.reports.dimensions import ReportScope
from pbx_tracker.reports.period import Period, days_period, local_date
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.store.models import CallbackTaskRow

__all__ = ["today_figures"]

Json = dict[str, Any]
tasks_table = cast(Table, CallbackTaskRow.__table__)
PER_MANAGER = {
    "answered": "answered",
    "missed_while_free": "missed_while_available",
    "callbacks_done": "callbacks_done",
}


def today_period(now: datetime, rules: ReportRules) -> Period:
    """Today in the reports' zone, [midnight, next midnight) as UTC moments."""
    day = local_date(now, rules.zone)
    return days_period(day, day, rules.zone)


async def today_figures(engine: AsyncEngine, rules: ReportRules, now: datetime) -> Json:
    """Today's figures as the board shows them (JSON values; times in epoch seconds)."""
    period = today_period(now, rules)
    async with engine.connect() as conn:
        scope = ReportScope.of(conn.dialect.name, rules, period)
        day = await compute(conn, ReportKind.DAYS, scope)
        report = await compute(conn, ReportKind.MANAGERS, scope)
        waiting, oldest, oldest_call = await _open_callbacks(conn)
    total = day.total.figures if day.total is not None else {}
    calls, answered = int(total.get("calls", 0)), int(total.get("answered", 0))
    managers = {
        str(row.key[0]): {name: int(row.figures.get(key) or 0) for name, key in PER_MANAGER.items()}
        for row in report.rows
        if row.key and row.key[0] is not None
    }
    return {
        "day": period.first_day.isoformat(),
        "calls": calls,
        "answered": answered,
        "missed": int(total.get("missed", 0)),
        "answer_rate": None if calls == 0 else answered / calls,
        "wait_seconds": total.get("wait_seconds"),
        "open_callbacks": waiting,
        "oldest_callback_since": None if oldest is None else oldest.timestamp(),
        "oldest_callback_call": oldest_call,
        "managers": managers,
    }


async def _open_callbacks(conn: AsyncConnection) -> tuple[int, datetime | None, int | None]:
    """How many callback tasks are open; the first missed call of the oldest: when, and
    its id (for its call card)."""
    t = tasks_table.c
    is_open = t.status == "open"
    count = await conn.scalar(select(func.count()).where(is_open))
    oldest = (
        await conn.execute(
            select(t.first_missed_at, t.first_call_id)
            .where(is_open)
            .order_by(t.first_missed_at, t.id)
            .limit(1)
        )
    ).first()
    if oldest is None:
        return int(count or 0), None, None
    return int(count or 0), oldest.first_missed_at, oldest.first_call_id
