"""`pbx-tracker report …` and `pbx-tracker spend import`: what the command line runs.

Every problem the user must correct (a bad date, an unknown --group-by, a
bad CSV line, an unreachable database) is a `ReportCommandError`: one line,
exit 1.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbx_tracker.phones import display_number
from pbx_tracker.reports.compute import Report, ReportError, ReportKind, compute
from pbx_tracker.reports.dimensions import Dimension, GroupingError, ReportScope, parse_group_by
from pbx_tracker.reports.period import PeriodError, period_of
from pbx_tracker.reports.render import as_csv, as_json, as_table
from pbx_tracker.reports.spend import SpendFileError, import_spend, read_spend_file
from pbx_tracker.store.engine import in_transaction

if TYPE_CHECKING:
    from pbx_tracker.config import Settings

__all__ = ["ReportCommandError", "import_spend_file", "show_report"]


class ReportCommandError(Exception):
    """What went wrong, in one line for the terminal."""


async def show_report(
    settings: Settings,
    kind: str,
    *,
    start: str,
    end: str,
    group_by: str | None,
    fmt: str,
) -> str:
    """The report of ``kind`` over [--from, --to] as a table, CSV or JSON."""
    rules = settings.report_rules()
    try:
        period = period_of(start, end, rules.zone)
        dimensions = parse_group_by(group_by) if group_by is not None else None
    except (PeriodError, GroupingError) as error:
        raise ReportCommandError(str(error)) from None
    report = await _run(settings, lambda conn: _report(conn, kind, rules, period, dimensions))
    if fmt == "csv":
        return as_csv(report)
    if fmt == "json":
        return as_json(report)
    return as_table(report, _namer(settings))


async def _report(
    conn: Any, kind: str, rules: Any, period: Any, dimensions: list[Dimension] | None
) -> Report:
    scope = ReportScope.of(conn.dialect.name, rules, period)
    try:
        return await compute(conn, ReportKind(kind), scope, dimensions)
    except ReportError as error:
        raise ReportCommandError(str(error)) from None


async def import_spend_file(settings: Settings, path: Path, now: datetime) -> str:
    """Check the whole file, then store it in one transaction."""
    try:
        lines = read_spend_file(path, settings.reports.currency)
    except SpendFileError as error:
        raise ReportCommandError(str(error)) from None
    count = await _run(settings, lambda conn: import_spend(conn, lines, now))
    days = {line.day for line in lines}
    span = f" for {min(days)} to {max(days)}" if days else ""
    return f"{count} ad spend rows imported from {path}{span}"


async def _run(settings: Settings, work: Any) -> Any:
    return await in_transaction(settings.database.url, work)


def _namer(settings: Settings) -> Any:
    """How a table shows a dimension value: manager names, numbers as dialled."""

    def name(dimension: Dimension, value: str | None) -> str:
        if value is None:
            return "(none)"
        if dimension is Dimension.MANAGER:
            manager = settings.manager_for_extension(value)
            return f"{value} {manager.name}" if manager else value
        if dimension is Dimension.NUMBER:
            return display_number(value, settings.phone_region)
        return value

    return name
