"""SQL expressions that differ between SQLite and PostgreSQL, for the report queries.

Times are `UTCDateTime` columns: PostgreSQL ``timestamptz``; SQLite text
``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC.  A call's local day or hour is its UTC
time plus the zone's offset at that moment: a CASE over the offsets in force
in the period (`pbx_tracker.reports.period.offset_steps`; one branch, or a
few around a summer-time change), formatted as ``2026-11-01`` or
``2026-11-01 09:00`` on SQLite.  PostgreSQL groups by the cheaper ``date``
or hour-truncated ``timestamp`` (formatting every row costs more than the
rest of a report's pass); `label_text` formats those few keys.  The same CASE
works on both engines, for any zone, including the machine's own.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Integer, String, case, cast, func, literal, literal_column
from sqlalchemy.sql.elements import ColumnElement

from pbx_tracker.store.models import UTCDateTime

__all__ = ["Dialect", "label_text", "local_label", "seconds_between"]

DAY = "day"
HOUR = "hour"
_SQLITE_FORMAT = {DAY: "%Y-%m-%d", HOUR: "%Y-%m-%d %H:00"}

Dialect = str  # "sqlite" or "postgresql"


def _moment(value: datetime) -> ColumnElement[Any]:
    return literal(value, UTCDateTime())


def _offset_seconds(
    moment: ColumnElement[Any], steps: list[tuple[datetime | None, int]]
) -> ColumnElement[Any]:
    """The zone's offset in seconds at ``moment``, as SQL."""
    if len(steps) == 1:
        return literal(steps[0][1], Integer)
    whens = [(moment < _moment(until), offset) for until, offset in steps if until is not None]
    return case(*whens, else_=steps[-1][1])


def local_label(
    dialect: Dialect,
    moment: ColumnElement[Any],
    steps: list[tuple[datetime | None, int]],
    unit: str,
) -> ColumnElement[Any]:
    """``moment``'s local day (``2026-11-01``) or hour (``2026-11-01 09:00``): text on
    SQLite, a ``date`` or ``timestamp`` on PostgreSQL (see `label_text`)."""
    offset = _offset_seconds(moment, steps)
    if dialect == "postgresql":
        shifted = func.timezone("UTC", moment) + offset * literal_column("interval '1 second'")
        return cast(shifted, Date) if unit == DAY else func.date_trunc("hour", shifted)
    modifier = cast(offset, String) + literal(" seconds")
    return func.strftime(_SQLITE_FORMAT[unit], moment, modifier)


def label_text(value: object) -> str | None:
    """A grouped key as the report shows it: a local hour as ``2026-11-01 09:00``, a
    day as ``2026-11-01``, anything else as text."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(minute=0, tzinfo=None).isoformat(" ", "minutes")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def seconds_between(
    dialect: Dialect, later: ColumnElement[Any], earlier: ColumnElement[Any]
) -> ColumnElement[Any]:
    """``later - earlier`` in seconds (a float)."""
    if dialect == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def days_before(dialect: Dialect, moment: ColumnElement[Any], days: int) -> ColumnElement[Any]:
    """``moment`` minus ``days`` * 24 hours, comparable with a time column."""
    if dialect == "postgresql":
        return moment - literal_column(f"interval '{int(days)} days'")
    return func.strftime("%Y-%m-%d %H:%M:%f", moment, f"-{int(days)} days")
