"""A report for people (a rich table) or for tools (CSV, JSON with raw numbers).

Tables show percentages, durations (``m:ss``, talk time ``h:mm:ss``), money
with two decimals, manager names and phone numbers as people read them; an
empty value is ``—``.  CSV and JSON carry plain numbers: seconds, minutes,
rates as fractions (0.25), money as a number with two decimals, times in UTC;
in CSV a label a spreadsheet would run as a formula (a UTM tag starting with
``=``, say) starts with a quote (`pbx_tracker.spreadsheet`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from rich.table import Table

from pbx_tracker.reports.compute import Report, ReportKind, ReportRow
from pbx_tracker.reports.dimensions import Dimension
from pbx_tracker.reports.period import zone_name
from pbx_tracker.spreadsheet import safe_cell
from pbx_tracker.terminal import as_text

__all__ = ["FIGURE_ORDER", "as_csv", "as_json", "as_table"]

FIGURE_ORDER = (
    "calls",
    "unique_callers",
    "first_time_callers",
    "spam_calls",
    "target_calls",
    "answered",
    "missed",
    "missed_rate",
    "wait_seconds",
    "talk_seconds",
    "callbacks_opened",
    "callbacks_done",
    "callbacks_in_sla",
    "callbacks_in_sla_rate",
    "callback_minutes",
    "missed_while_available",
    "answer_seconds",
    "cost",
    "cost_per_call",
    "cost_per_target_call",
    "cost_per_lead",
)
NONE = "—"
Namer = Callable[[Dimension, str | None], str]


def _count(value: Any) -> str:
    return str(value)


def _rate(value: Any) -> str:
    return NONE if value is None else f"{value * 100:.1f}%"


def _short(seconds: Any) -> str:
    if seconds is None:
        return NONE
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _long(seconds: Any) -> str:
    whole = round(seconds or 0)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _minutes(value: Any) -> str:
    return NONE if value is None else f"{value:.1f}"


def _money(value: Any) -> str:
    return NONE if value is None else f"{value:,.2f}".replace(",", " ")


Column = tuple[str, str, Callable[[Any], str]]
_CALLS: list[Column] = [
    ("Calls", "calls", _count),
    ("Unique", "unique_callers", _count),
    ("First-time", "first_time_callers", _count),
    ("Spam", "spam_calls", _count),
    ("Target", "target_calls", _count),
    ("Answered", "answered", _count),
    ("Missed", "missed", _count),
    ("Missed %", "missed_rate", _rate),
    ("Avg wait", "wait_seconds", _short),
    ("Talk", "talk_seconds", _long),
]
_COST: list[Column] = [
    ("Cost", "cost", _money),
    ("Per call", "cost_per_call", _money),
    ("Per target", "cost_per_target_call", _money),
    ("Per lead", "cost_per_lead", _money),
]
_CALLBACKS: list[Column] = [
    ("Calls", "calls", _count),
    ("Missed", "missed", _count),
    ("Missed %", "missed_rate", _rate),
    ("Callbacks", "callbacks_opened", _count),
    ("Done", "callbacks_done", _count),
    ("In SLA", "callbacks_in_sla", _count),
    ("In SLA %", "callbacks_in_sla_rate", _rate),
    ("Median min", "callback_minutes", _minutes),
]
_MANAGERS: list[Column] = [
    ("Answered", "answered", _count),
    ("Missed while free", "missed_while_available", _count),
    ("Answer speed", "answer_seconds", _short),
    ("Talk", "talk_seconds", _long),
    ("Callbacks", "callbacks_opened", _count),
    ("Done", "callbacks_done", _count),
    ("Median min", "callback_minutes", _minutes),
]


def _columns(report: Report) -> list[Column]:
    if report.kind is ReportKind.MANAGERS:
        return _MANAGERS
    if report.kind is ReportKind.CALLBACKS:
        return _CALLBACKS
    return _CALLS + (_COST if report.with_cost else [])


def _shown_period(report: Report) -> str:
    """``2026-11-02 - 2026-11-04`` for whole days, else the two moments, in the zone."""
    period = report.scope.period
    start, end = (
        moment.astimezone(period.zone) if period.zone else moment.astimezone()
        for moment in (period.start, period.end)
    )
    midnight = datetime.min.time()
    if start.time() == midnight and end.time() == midnight:
        days = f"{period.first_day} - {period.last_day}"
    else:
        days = f"{start:%Y-%m-%d %H:%M} - {end:%Y-%m-%d %H:%M}"
    return f"{days} ({zone_name(period.zone)})"


def _title(report: Report) -> str:
    rules = report.scope.rules
    window = f"{rules.unique_days} days" if rules.unique_days else "ever"
    money = f", money in {report.currency}" if report.currency else ""
    return (
        f"Report {report.kind.value}, {_shown_period(report)}; target call ≥ "
        f"{rules.target_seconds} s, unique-caller window {window}, "
        f"{rules.model.replace('_', ' ')}{money}"
    )


def as_table(report: Report, name: Namer) -> str:
    """The report as a table for people."""
    if not report.rows:
        return _title(report) + "\nno calls in this period"
    table = Table(title=_title(report), title_justify="left", show_footer=True)
    columns = _columns(report)
    for index, dimension in enumerate(report.dimensions):
        table.add_column(dimension.value.capitalize(), footer="Total" if index == 0 else "")
    total = report.total.figures if report.total else {}
    for title, figure, show in columns:
        table.add_column(title, justify="right", footer=show(total.get(figure)) if total else "")
    for row in report.rows:
        labels = [name(d, value) for d, value in zip(report.dimensions, row.key, strict=True)]
        table.add_row(*labels, *(show(row.figures[figure]) for _, figure, show in columns))
    return "\n".join(line.rstrip() for line in as_text(table, width=220).splitlines())


def _raw(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def _flat(report: Report, row: ReportRow) -> dict[str, Any]:
    keys = {d.value: value for d, value in zip(report.dimensions, row.key, strict=False)}
    return keys | {figure: _raw(row.figures[figure]) for figure in FIGURE_ORDER}


def as_csv(report: Report) -> str:
    """One line per group: the dimensions, then every figure (no total line); a label a
    spreadsheet would run as a formula starts with a quote (`pbx_tracker.spreadsheet`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([d.value for d in report.dimensions] + list(FIGURE_ORDER))
    for row in report.rows:
        flat = _flat(report, row)
        writer.writerow([safe_cell("" if flat[k] is None else flat[k]) for k in flat])
    return out.getvalue().rstrip("\n")


def as_json(report: Report) -> str:
    """The period, the rules, every row and the total."""
    rules, period = report.scope.rules, report.scope.period
    document = {
        "report": report.kind.value,
        "from": period.start.isoformat().replace("+00:00", "Z"),
        "to": period.end.isoformat().replace("+00:00", "Z"),
        "timezone": zone_name(period.zone),
        "group_by": [d.value for d in report.dimensions],
        "rules": {
            "target_seconds": rules.target_seconds,
            "unique_days": rules.unique_days,
            "model": rules.model,
            "sla_minutes": rules.sla_minutes,
        },
        "currency": report.currency,
        "rows": [_flat(report, row) for row in report.rows],
        "total": _flat(report, report.total) if report.total else None,
    }
    return json.dumps(document, ensure_ascii=False, indent=2)
