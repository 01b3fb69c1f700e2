"""The calls of a period with the website visit each was credited to.

A period is given as two dates (``YYYY-MM-DD``), both included, cut in the
reports' zone (``routing.timezone``, else the machine's zone; see
`pbx_tracker.reports.period`): from 00:00 of the first day to 24:00 of the last
in that zone, so an export and a report over the same days hold the same
calls.  Each call is read with the visit of its ``session_id`` (an outer join:
calls without a visit come too, their visit fields empty), oldest first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.attribution.visits import visits_table
from pbx_tracker.command_error import CommandError
from pbx_tracker.reports.period import in_zone
from pbx_tracker.store.calls import calls_table

__all__ = [
    "ExportedCall",
    "Kept",
    "Period",
    "kept_calls",
    "load_calls",
    "parse_period",
]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class Period:
    """``start`` included, ``end`` excluded: aware UTC moments, the midnights of the
    zone the days are cut in."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class ExportedCall:
    """What the exports need of one stored call and the visit it was credited to."""

    id: int
    started_at: datetime
    caller: str | None
    answered: bool
    ring_seconds: int
    talk_seconds: int
    first_time_caller: bool | None
    source: str | None
    medium: str | None
    campaign: str | None
    utm_term: str | None
    landing_page: str | None = None
    ga_client_id: str | None = None
    ym_client_id: str | None = None
    spam: bool = False  # marked spam (`pbx_tracker.spam`): never sent as a conversion


@dataclass(frozen=True, slots=True)
class Kept:
    """The calls an export sends, each with its visit's client id, and how many it left
    out, by why."""

    calls: list[tuple[str, ExportedCall]]
    spam: int
    without_client_id: int
    too_old: int


def kept_calls(
    calls: Iterable[ExportedCall],
    client_id: Callable[[ExportedCall], str | None],
    *,
    window: timedelta,
    now: datetime,
) -> Kept:
    """``calls`` but spam calls, those without a ``client_id`` and those that started
    more than ``window`` before ``now`` (the platform would refuse them)."""
    kept: list[tuple[str, ExportedCall]] = []
    spam = without_client_id = too_old = 0
    for call in calls:
        client = client_id(call)
        if call.spam:
            spam += 1
        elif client is None:
            without_client_id += 1
        elif call.started_at < now - window:
            too_old += 1
        else:
            kept.append((client, call))
    return Kept(kept, spam, without_client_id, too_old)


def parse_period(first: str, last: str, zone: tzinfo | None) -> Period:
    """The dates ``first`` to ``last`` (both included) as days of ``zone`` (None: the
    machine's zone), as reports cut them; CommandError if bad."""
    start, end = _date("--from", first), _date("--to", last)
    if end < start:
        raise CommandError(f"--to {last} is before --from {first}")
    midnight = datetime.min.time()
    return Period(
        in_zone(datetime.combine(start, midnight), zone),
        in_zone(datetime.combine(end + timedelta(days=1), midnight), zone),
    )


def _date(option: str, text: str) -> date:
    try:
        if _DATE.fullmatch(text.strip()) is None:
            raise ValueError(text)
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"{option} {text!r}: not a date, write YYYY-MM-DD") from None


_CALL_COLUMNS = (
    "id",
    "started_at",
    "caller",
    "status",
    "ring_seconds",
    "talk_seconds",
    "first_time_caller",
    "source",
    "medium",
    "campaign",
    "utm_term",
    "spam",
)
_VISIT_COLUMNS = ("landing_page", "ga_client_id", "ym_client_id")


async def load_calls(conn: AsyncConnection, period: Period) -> list[ExportedCall]:
    """Every inbound call that started in ``period``, oldest first, with its visit."""
    calls, visits = calls_table, visits_table
    query = (
        select(
            *(calls.c[name] for name in _CALL_COLUMNS),
            *(visits.c[name] for name in _VISIT_COLUMNS),
        )
        .select_from(calls.outerjoin(visits, visits.c.id == calls.c.session_id))
        .where(calls.c.started_at >= period.start, calls.c.started_at < period.end)
        .order_by(calls.c.started_at, calls.c.id)
    )
    return [_exported(row) for row in (await conn.execute(query)).all()]


def _exported(row: Row[Any]) -> ExportedCall:
    return ExportedCall(
        id=row.id,
        started_at=row.started_at,
        caller=row.caller,
        answered=row.status == "answered",
        ring_seconds=row.ring_seconds,
        talk_seconds=row.talk_seconds,
        first_time_caller=row.first_time_caller,
        source=row.source,
        medium=row.medium,
        campaign=row.campaign,
        utm_term=row.utm_term,
        landing_page=row.landing_page,
        ga_client_id=_text(row.ga_client_id),
        ym_client_id=_text(row.ym_client_id),
        spam=bool(row.spam),
    )


def _text(value: str | None) -> str | None:
    """``value`` stripped; None when empty."""
    return value.strip() or None if value is not None else None
