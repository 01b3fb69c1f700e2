"""A report: its kind, grouping and rows, computed from the stored facts.

Each figure comes from one SQL aggregate per source of facts (calls, callback
tasks, ring attempts, ad spend), grouped the same way; the few grouped rows
are then put side by side by their key, and the ratios worked out:

- ``missed_rate``: missed / calls;
- ``callbacks_in_sla_rate``: callbacks done within the SLA / callbacks opened;
- ``cost``: ad spend of the group's source (and campaign, and day), only when
  the report is grouped by nothing but source, campaign and day; a
  whole-source amount (no campaign) sits in the row without a campaign;
- ``cost_per_call``, ``cost_per_target_call``, ``cost_per_lead``: cost /
  calls, / target calls, / first-time callers (a *lead* is a call from a
  first-time caller); in the total line, over the groups with spend only (the
  calls of sources nobody paid for are not what the money bought).

The total line adds up the rows where a figure is a sum (each call, task or
amount is in exactly one row; averages weighted by what they average over)
and asks SQL again for what is not: the median minutes to callback, and
(manager view) distinct calls missed while managers were free.  On
PostgreSQL the queries run side by side on one snapshot (`parallel`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import partial
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.reports.callbacks import callback_figures
from pbx_tracker.reports.calls import CALL_FIGURES, Figures, Key, call_figures, period_parts
from pbx_tracker.reports.dimensions import (
    SPEND_DIMENSIONS,
    TIME_DIMENSIONS,
    Dimension,
    ReportScope,
)
from pbx_tracker.reports.managers import attempt_figures
from pbx_tracker.reports.parallel import Job, run_side_by_side
from pbx_tracker.reports.spend import spend_currencies, spend_figures

__all__ = ["DEFAULT_GROUPING", "Report", "ReportError", "ReportKind", "ReportRow", "compute"]


class ReportKind(StrEnum):
    SOURCES = "sources"
    CAMPAIGNS = "campaigns"
    KEYWORDS = "keywords"
    NUMBERS = "numbers"
    MANAGERS = "managers"
    CALLBACKS = "callbacks"
    DAYS = "days"


DEFAULT_GROUPING: dict[ReportKind, list[Dimension]] = {
    ReportKind.SOURCES: [Dimension.SOURCE],
    ReportKind.CAMPAIGNS: [Dimension.SOURCE, Dimension.CAMPAIGN],
    ReportKind.KEYWORDS: [Dimension.SOURCE, Dimension.KEYWORD],
    ReportKind.NUMBERS: [Dimension.NUMBER],
    ReportKind.MANAGERS: [Dimension.MANAGER],
    ReportKind.CALLBACKS: [Dimension.DAY],
    ReportKind.DAYS: [Dimension.DAY],
}
COUNTS = (
    *(name for name in CALL_FIGURES if name not in ("wait_seconds",)),
    "callbacks_opened",
    "callbacks_done",
    "callbacks_in_sla",
    "missed_while_available",
)
ADDITIVE = (*COUNTS, "answer_count", "cost")  # what the total line adds up over the rows
WEIGHTED = {"wait_seconds": "answered", "answer_seconds": "answer_count"}
PER_PAID = {  # the total's cost per ... over the groups with spend
    "cost_per_call": "calls",
    "cost_per_target_call": "target_calls",
    "cost_per_lead": "first_time_callers",
}
POSTGRESQL_SETTINGS = (
    "work_mem = '256MB'",  # room for the hashes of a year of calls
    "jit = off",  # compiling the expressions costs more than it saves at a million rows
)
_CENT = Decimal("0.01")
Part = dict[Key, Figures]  # one query's figures by key


class ReportError(ValueError):
    """A report that cannot be made as asked (one line)."""


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One group: its key (a value per dimension; None: no value) and its figures."""

    key: Key
    figures: dict[str, Any]


@dataclass(slots=True)
class Report:
    kind: ReportKind
    dimensions: list[Dimension]
    scope: ReportScope
    rows: list[ReportRow] = field(default_factory=list)
    total: ReportRow | None = None
    currency: str | None = None
    with_cost: bool = False


def grouping_of(kind: ReportKind, group_by: list[Dimension] | None) -> list[Dimension]:
    """The report's dimensions; the manager view always starts with the manager."""
    dimensions = list(group_by or DEFAULT_GROUPING[kind])
    if kind is ReportKind.MANAGERS and Dimension.MANAGER not in dimensions:
        dimensions.insert(0, Dimension.MANAGER)
    return dimensions


async def compute(
    conn: AsyncConnection,
    kind: ReportKind,
    scope: ReportScope,
    group_by: list[Dimension] | None = None,
) -> Report:
    dimensions = grouping_of(kind, group_by)
    report = Report(kind, dimensions, scope)
    report.with_cost = kind is not ReportKind.MANAGERS and set(dimensions) <= SPEND_DIMENSIONS
    if report.with_cost:
        report.currency = await _one_currency(conn, scope)
    if scope.dialect == "postgresql":
        for setting in POSTGRESQL_SETTINGS:
            await conn.execute(text(f"SET LOCAL {setting}"))
    calls, grouped, whole = _jobs(report, dimensions)
    found = await run_side_by_side(conn, [*calls, *grouped, *whole], POSTGRESQL_SETTINGS)
    rows: dict[Key, Figures] = _added(found[: len(calls)])
    found = found[len(calls) :]
    whole_report: Figures = {}  # what a part says of the whole report, under ()
    for part in found[: len(grouped)]:
        for key, figures in part.items():
            (rows.setdefault(key, {}) if key else whole_report).update(figures)
    report.rows = _sorted(dimensions, [ReportRow(key, _derived(f)) for key, f in rows.items()])
    totals = _summed(rows.values()) | whole_report
    for part in found[len(grouped) :]:
        totals.update(part.get((), {}))
    report.total = ReportRow((), _derived(totals))
    if report.with_cost:
        _paid_only(report.total.figures, [row.figures for row in report.rows])
    return report


def _paid_only(total: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The total's cost per call, target call and lead over the groups with spend only:
    calls of a source nobody paid for are not what the money bought."""
    paid = [row for row in rows if row["cost"] is not None]
    for name, of in PER_PAID.items():
        total[name] = _per(total["cost"], sum(row[of] for row in paid))


def _summed(groups: Iterable[Figures]) -> Figures:
    """The figures that add up over the rows (each call, task, amount is in one row);
    averages weighted by what they average over."""
    total: Figures = {}
    groups = list(groups)
    for name in ADDITIVE:
        values = [g[name] for g in groups if g.get(name) is not None]
        total[name] = sum(values) if values else None
    for name, weight in WEIGHTED.items():
        pairs = [(g[name], g.get(weight) or 0) for g in groups if g.get(name) is not None]
        count = sum(w for _, w in pairs)
        total[name] = sum(float(v) * w for v, w in pairs) / count if count else None
    return total


async def _one_currency(conn: AsyncConnection, scope: ReportScope) -> str | None:
    currencies = await spend_currencies(conn, scope)
    if len(currencies) > 1:
        raise ReportError(
            f"the ad spend of the period is in several currencies ({', '.join(currencies)}); "
            "import it in one"
        )
    return currencies[0] if currencies else None


def _jobs(
    report: Report, dimensions: list[Dimension]
) -> tuple[list[Job[Part]], list[Job[Part]], list[Job[Part]]]:
    """The queries of the call figures (of parts of the period, added up by key), of
    the rest of the rows (merged by key), and of what the total line cannot add up
    from them: the median minutes to callback and, in the manager view, the distinct
    calls missed while managers were free (a call may ring several)."""
    scope, managers = report.scope, report.kind is ReportKind.MANAGERS
    calls: list[Job[Part]] = [
        partial(call_figures, dimensions=dimensions, scope=part, managers_only=managers)
        for part in period_parts(dimensions, scope)
    ]
    grouped: list[Job[Part]] = [
        partial(callback_figures, dimensions=dimensions, scope=scope, managers_only=managers),
    ]
    whole: list[Job[Part]] = []
    if scope.dialect != "postgresql":  # PostgreSQL's callback figures say it under ()
        whole.append(partial(_median_only, scope=scope, managers_only=managers))
    if managers:  # its rows, and under () the distinct calls of the whole report
        grouped.append(partial(attempt_figures, dimensions=dimensions, scope=scope))
    if report.with_cost:
        grouped.append(partial(spend_figures, dimensions=dimensions, scope=scope))
    return calls, grouped, whole


def _added(parts: list[Part]) -> Part:
    """The call figures of the parts of the period, put together per key (a key in
    one part only, as most are when the parts are halves of the period, as it is)."""
    if len(parts) == 1:
        return parts[0]
    found: dict[Key, list[Figures]] = {}
    for part in parts:
        for key, figures in part.items():
            found.setdefault(key, []).append(figures)
    names = {name for part in parts for figures in part.values() for name in figures}
    return {
        key: pieces[0]
        if len(pieces) == 1
        else {name: value for name, value in _summed(pieces).items() if name in names}
        for key, pieces in found.items()
    }


async def _median_only(
    conn: AsyncConnection, *, scope: ReportScope, managers_only: bool
) -> dict[Key, Figures]:
    found = await callback_figures(conn, [], scope, managers_only=managers_only)
    return {(): {"callback_minutes": found.get((), {}).get("callback_minutes")}}


def _ratio(part: Any, whole: Any) -> float | None:
    return None if not whole else float(part) / float(whole)


def _per(cost: Decimal | None, count: int) -> Decimal | None:
    if cost is None or not count:
        return None
    return (cost / count).quantize(_CENT, rounding=ROUND_HALF_UP)


def _derived(found: Figures) -> dict[str, Any]:
    """Counts (0 when absent), averages (None when nothing to average), ratios, costs."""
    figures: dict[str, Any] = {name: int(found.get(name) or 0) for name in COUNTS}
    for name in ("wait_seconds", "answer_seconds", "callback_minutes"):
        value = found.get(name)
        figures[name] = None if value is None else float(value)
    figures["missed_rate"] = _ratio(figures["missed"], figures["calls"])
    figures["callbacks_in_sla_rate"] = _ratio(
        figures["callbacks_in_sla"], figures["callbacks_opened"]
    )
    cost = found.get("cost")
    figures["cost"] = None if cost is None else Decimal(cost).quantize(_CENT)
    figures["cost_per_call"] = _per(figures["cost"], figures["calls"])
    figures["cost_per_target_call"] = _per(figures["cost"], figures["target_calls"])
    figures["cost_per_lead"] = _per(figures["cost"], figures["first_time_callers"])
    return figures


def _sorted(dimensions: list[Dimension], rows: list[ReportRow]) -> list[ReportRow]:
    """By time when grouped by day or hour, else busiest first; empty keys last."""

    def by_key(row: ReportRow) -> tuple[Any, ...]:
        return tuple((value is None, value or "") for value in row.key)

    if TIME_DIMENSIONS.intersection(dimensions):
        return sorted(rows, key=by_key)
    return sorted(rows, key=lambda row: (-row.figures["calls"], by_key(row)))
