"""`pbx-tracker report …` and `pbx-tracker spend import`: what the command line runs.

Every problem the user must correct (a bad date, an unknown --group-by, a
bad CSV line) is a `CommandError`, an unreachable database a `DatabaseProblem`:
one line, exit 1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.command_error import CommandError
from pbx_tracker.phones import display_number
from pbx_tracker.reports.compute import Report, ReportError, ReportKind, compute
from pbx_tracker.reports.dimensions import Dimension, GroupingError, ReportScope, parse_group_by
from pbx_tracker.reports.period import Period, PeriodError, period_of
from pbx_tracker.reports.render import Namer, as_csv, as_json, as_table
from pbx_tracker.reports.settings import ReportRules, ReportSettings
from pbx_tracker.reports.spend import SpendFileError, import_spend, read_spend_file
from pbx_tracker.staff import Directory
from pbx_tracker.store.engine import in_transaction

__all__ = ["import_spend_file", "show_report"]

_T = TypeVar("_T")


async def show_report(
    database_url: str,
    rules: ReportRules,
    directory: Directory,
    kind: str,
    *,
    start: str,
    end: str,
    group_by: str | None,
    fmt: str,
) -> str:
    """The report of ``kind`` over [--from, --to] as a table, CSV or JSON; managers and
    numbers in the table as ``directory`` names and dials them."""
    try:
        period = period_of(start, end, rules.zone)
        dimensions = parse_group_by(group_by) if group_by is not None else None
    except (PeriodError, GroupingError) as error:
        raise CommandError(str(error)) from None
    report = await _run(database_url, lambda conn: _report(conn, kind, rules, period, dimensions))
    if fmt == "csv":
        return as_csv(report)
    if fmt == "json":
        return as_json(report)
    return as_table(report, _namer(directory))


async def _report(
    conn: AsyncConnection,
    kind: str,
    rules: ReportRules,
    period: Period,
    dimensions: list[Dimension] | None,
) -> Report:
    scope = ReportScope.of(conn.dialect.name, rules, period)
    try:
        return await compute(conn, ReportKind(kind), scope, dimensions)
    except ReportError as error:
        raise CommandError(str(error)) from None


async def import_spend_file(
    database_url: str, reports: ReportSettings, path: Path, now: datetime
) -> str:
    """Check the whole file (lines without a currency are in ``reports.currency``), then
    store it in one transaction."""
    try:
        lines = read_spend_file(path, reports.currency)
    except SpendFileError as error:
        raise CommandError(str(error)) from None
    count = await _run(database_url, lambda conn: import_spend(conn, lines, now))
    days = {line.day for line in lines}
    span = f" for {min(days)} to {max(days)}" if days else ""
    return f"{count} ad spend rows imported from {path}{span}"


async def _run(database_url: str, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
    return await in_transaction(database_url, work)


def _namer(directory: Directory) -> Namer:
    """How a table shows a dimension value: manager names, numbers as dialled."""

    def name(dimension: Dimension, value: str | None) -> str:
        if value is None:
            return "(none)"
        if dimension is Dimension.MANAGER:
            manager = directory.manager_for_extension(value)
            return f"{value} {manager.name}" if manager else value
        if dimension is Dimension.NUMBER:
            return display_number(value, directory.region)
        return value

    return name
