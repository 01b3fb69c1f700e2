"""The period of a report, and the report's days and hours in its time zone.

The zone is ``routing.timezone`` when set, else the machine's local zone
(its own rules, summer time included).  ``--from``/``--to`` take:

- a date, ``2026-11-01``: a day is [00:00, next day's 00:00) in the zone;
  ``--from`` starts at the day's first moment, ``--to`` ends with the day
  (the day is included);
- a date and time, ``2026-11-01T09:30`` or ``2026-11-01 09:30``: a moment in
  the zone; with ``Z`` or ``+03:00`` a moment at that offset.  ``--to``
  given with a time is the first moment *not* included.

Days and hours of ``--group-by day|hour`` are cut the same way.  The offset
of the zone may change within a period (summer time); `offset_steps` lists
the offsets in force, so SQL can bucket every call with the offset of its own
moment (see `pbx_tracker.reports.dialect`).  When clocks go back, the two
01:00-02:00 hours of that night are one hour in the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

__all__ = [
    "Period",
    "PeriodError",
    "local_date",
    "offset_steps",
    "parse_moment",
    "period_of",
    "zone_name",
]

_HOUR = timedelta(hours=1)
_SECOND = timedelta(seconds=1)


class PeriodError(ValueError):
    """A --from/--to the user must correct (one line)."""


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in UTC, and the zone its days are cut in (None: local zone)."""

    start: datetime
    end: datetime
    zone: tzinfo | None

    @property
    def first_day(self) -> date:
        return local_date(self.start, self.zone)

    @property
    def last_day(self) -> date:
        return local_date(self.end - timedelta(microseconds=1), self.zone)


def in_zone(naive: datetime, zone: tzinfo | None) -> datetime:
    """A wall-clock time of the zone as an aware UTC moment (local zone: system rules)."""
    local = naive.replace(tzinfo=zone) if zone is not None else naive.astimezone()
    return local.astimezone(UTC)


def local_date(moment: datetime, zone: tzinfo | None) -> date:
    """The calendar day of an aware moment in the zone."""
    return moment.astimezone(zone).date() if zone is not None else moment.astimezone().date()


def parse_moment(text: str, zone: tzinfo | None, *, option: str, end: bool) -> datetime:
    """``--from``/``--to`` as an aware UTC moment (a date: its start, or with ``end`` the
    next day's start)."""
    value = text.strip()
    day = _plain_date(value)
    if day is not None:
        day += timedelta(days=1) if end else timedelta(0)
        return in_zone(datetime(day.year, day.month, day.day), zone)
    try:
        moment = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        raise PeriodError(
            f"{option} {text!r}: write a date (2026-11-01) or a date and time (2026-11-01T09:30)"
        ) from None
    return moment.astimezone(UTC) if moment.tzinfo is not None else in_zone(moment, zone)


def _plain_date(value: str) -> date | None:
    if len(value) != len("2026-11-01"):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def days_period(first: date, last: date, zone: tzinfo | None) -> Period:
    """The days ``first`` to ``last`` (both included) of ``zone``: from the first's
    midnight to the midnight after the last."""
    after = last + timedelta(days=1)
    return Period(
        in_zone(datetime(first.year, first.month, first.day), zone),
        in_zone(datetime(after.year, after.month, after.day), zone),
        zone,
    )


def period_of(start_text: str, end_text: str, zone: tzinfo | None) -> Period:
    """The period of ``--from``/``--to``; PeriodError when unreadable or empty."""
    start = parse_moment(start_text, zone, option="--from", end=False)
    end = parse_moment(end_text, zone, option="--to", end=True)
    if end <= start:
        raise PeriodError(f"--to {end_text} is not after --from {start_text}: the period is empty")
    return Period(start, end, zone)


def _offset(moment: datetime, zone: tzinfo | None) -> timedelta:
    local = moment.astimezone(zone) if zone is not None else moment.astimezone()
    offset = local.utcoffset()
    assert offset is not None
    return offset


def offset_steps(period: Period) -> list[tuple[datetime | None, int]]:
    """(until, offset seconds): the zone's UTC offsets in the period, in order; the
    last one's ``until`` is None.  Found hour by hour, each change to the second."""
    steps: list[tuple[datetime | None, int]] = []
    current = _offset(period.start, period.zone)
    moment = period.start
    while moment < period.end:
        after = min(moment + _HOUR, period.end)
        if _offset(after, period.zone) != current and after < period.end:
            change = _first_with_new_offset(moment, after, current, period.zone)
            steps.append((change, int(current.total_seconds())))
            current = _offset(change, period.zone)
        moment = after
    steps.append((None, int(current.total_seconds())))
    return steps


def _first_with_new_offset(
    low: datetime, high: datetime, old: timedelta, zone: tzinfo | None
) -> datetime:
    """The first second in (low, high] whose offset is no longer ``old``."""
    while high - low > _SECOND:
        middle = low + (high - low) / 2
        if _offset(middle, zone) == old:
            low = middle
        else:
            high = middle
    whole = high.replace(microsecond=0)
    return whole if whole > low and _offset(whole, zone) != old else high


def zone_name(zone: tzinfo | None) -> str:
    """``Europe/Moscow``, or ``local`` for the machine's zone."""
    return "local" if zone is None else str(zone)
