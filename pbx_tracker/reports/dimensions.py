"""What a report's rows are grouped by (``--group-by``), as SQL over each fact table.

Source, medium and campaign follow the attribution model of the report: the
``first_touch_*`` or ``last_touch_*`` labels of a call, or, where those are
empty (calls on a static tracked number, calls stored before they existed),
the call's own ``source``/``medium``/``campaign``.  ``keyword`` is the
``utm_term``, ``number`` the tracked number dialled (DID), ``day``/``hour``
the call's start in the report's zone.  ``manager`` depends on the figure:
who answered the call (call figures), whose phone rang (ring attempts), who
resolved the callback task, or while it is open its assignee (callbacks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, func
from sqlalchemy.sql.elements import ColumnElement

from pbx_tracker.reports.dialect import DAY, HOUR, Dialect, local_label
from pbx_tracker.reports.period import Period, offset_steps
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.store.models import CallRow

__all__ = ["Dimension", "GroupingError", "ReportScope", "call_dimension", "parse_group_by"]

calls_table = cast(Table, CallRow.__table__)


class Dimension(StrEnum):
    SOURCE = "source"
    MEDIUM = "medium"
    CAMPAIGN = "campaign"
    KEYWORD = "keyword"
    NUMBER = "number"
    MANAGER = "manager"
    DAY = "day"
    HOUR = "hour"


TIME_DIMENSIONS = frozenset({Dimension.DAY, Dimension.HOUR})
SPEND_DIMENSIONS = frozenset({Dimension.SOURCE, Dimension.CAMPAIGN, Dimension.DAY})


class GroupingError(ValueError):
    """A --group-by the user must correct (one line)."""


def parse_group_by(text: str) -> list[Dimension]:
    """``source,campaign`` -> [SOURCE, CAMPAIGN]; GroupingError for unknown or repeated."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    known = ", ".join(d.value for d in Dimension)
    if not names:
        raise GroupingError(f"--group-by is empty: use one or more of {known}")
    found: list[Dimension] = []
    for name in names:
        if name not in Dimension.__members__.values():
            raise GroupingError(f"--group-by {name!r} is unknown: use {known}")
        if Dimension(name) in found:
            raise GroupingError(f"--group-by names {name} twice")
        found.append(Dimension(name))
    return found


@dataclass(frozen=True, slots=True)
class ReportScope:
    """What every query of one report shares: engine dialect, rules, period."""

    dialect: Dialect
    rules: ReportRules
    period: Period
    steps: list[tuple[datetime | None, int]]

    @classmethod
    def of(cls, dialect: Dialect, rules: ReportRules, period: Period) -> ReportScope:
        return cls(dialect, rules, period, offset_steps(period))

    def in_period(self, moment: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        return [moment >= self.period.start, moment < self.period.end]


def _touch(calls: Any, label: str, rules: ReportRules) -> ColumnElement[Any]:
    touch = "first_touch" if rules.model == "first_touch" else "last_touch"
    return func.coalesce(calls.c[f"{touch}_{label}"], calls.c[label])


def call_dimension(
    dimension: Dimension,
    scope: ReportScope,
    calls: Any = calls_table,
    manager: ColumnElement[Any] | None = None,
    moment: ColumnElement[Any] | None = None,
) -> ColumnElement[Any]:
    """The SQL of ``dimension`` for a call row; ``manager`` overrides who "manager" is,
    ``moment`` the time a day or hour is of (else the call's start)."""
    if dimension in (Dimension.SOURCE, Dimension.MEDIUM, Dimension.CAMPAIGN):
        return _touch(calls, dimension.value, scope.rules)
    if dimension is Dimension.KEYWORD:
        return cast(ColumnElement[Any], calls.c.utm_term)
    if dimension is Dimension.NUMBER:
        return cast(ColumnElement[Any], calls.c.did)
    if dimension is Dimension.MANAGER:
        return manager if manager is not None else cast(ColumnElement[Any], calls.c.answered_by)
    unit = DAY if dimension is Dimension.DAY else HOUR
    started = moment if moment is not None else calls.c.started_at
    return local_label(scope.dialect, started, scope.steps, unit)


def labelled(
    dimensions: list[Dimension],
    scope: ReportScope,
    calls: Any = calls_table,
    manager: ColumnElement[Any] | None = None,
    moment: ColumnElement[Any] | None = None,
) -> list[ColumnElement[Any]]:
    """The dimensions as labelled columns ``d0``, ``d1``, …"""
    return [
        call_dimension(d, scope, calls, manager, moment).label(f"d{i}")
        for i, d in enumerate(dimensions)
    ]
