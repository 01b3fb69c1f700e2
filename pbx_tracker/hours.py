"""Working hours: ``"mon-fri 09:00-18:00"`` lines, read in the routing time zone.

A line is optional days, then one or more time ranges separated by commas:

- days: ``mon`` .. ``sun`` (or full English names), ranges ``mon-fri`` (may
  wrap: ``fri-mon``), lists ``mon,wed,fri``, or ``daily``; no days = every day;
- times: ``HH:MM-HH:MM``; the end may be ``24:00``; an end before the start
  runs past midnight (``mon-fri 20:00-08:00`` is open from Monday 20:00 to
  Tuesday 08:00).

The config keeps the lines as written (`HoursLine` only checks them);
`WorkingHours.parse` turns them into rules once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator

from pbx_tracker.config_fields import problem

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EVERY_DAY = frozenset(range(7))
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_DAY_MINUTES = 24 * 60
EXAMPLE = "e.g. 'mon-fri 09:00-18:00' (days, then HH:MM-HH:MM)"


@dataclass(frozen=True, slots=True)
class HoursRule:
    """Open on `days` (0 = Monday) from `start` to `end`, minutes after midnight.

    `end <= start` means the range runs past midnight into the next day.
    """

    days: frozenset[int]
    start: int
    end: int

    def covers(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        yesterday = (weekday - 1) % 7
        return (weekday in self.days and minute >= self.start) or (
            yesterday in self.days and minute < self.end
        )


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """The union of some `HoursRule`s; `is_open` takes a wall-clock time."""

    rules: tuple[HoursRule, ...]

    @classmethod
    def parse(cls, lines: Iterable[str]) -> WorkingHours:
        """Rules of config lines; ValueError (with a message) for a bad line."""
        return cls(tuple(rule for line in lines for rule in parse_line(line)))

    def is_open(self, moment: datetime) -> bool:
        """Open at this wall-clock time (already in the routing time zone)?"""
        minute = moment.hour * 60 + moment.minute
        return any(rule.covers(moment.weekday(), minute) for rule in self.rules)


def parse_line(line: str) -> list[HoursRule]:
    """``"mon-fri 09:00-13:00,14:00-18:00"`` -> one rule per time range."""
    parts = line.strip().lower().split()
    if not parts or len(parts) > 2:
        raise ValueError(f"not working hours, {EXAMPLE}")
    days = _EVERY_DAY if len(parts) == 1 else _parse_days(parts[0])
    return [HoursRule(days, *_parse_range(text)) for text in parts[-1].split(",")]


def _parse_days(text: str) -> frozenset[int]:
    if text in ("daily", "all", "*"):
        return _EVERY_DAY
    days: set[int] = set()
    for item in text.split(","):
        first, sep, last = item.partition("-")
        start = _day(first)
        end = _day(last) if sep else start
        days.update((start + offset) % 7 for offset in range((end - start) % 7 + 1))
    return frozenset(days)


def _day(text: str) -> int:
    if text in _DAYS:
        return _DAYS.index(text)
    if text in _FULL_DAYS:
        return _FULL_DAYS.index(text)
    raise ValueError(f"unknown day {text!r}, use mon, tue, wed, thu, fri, sat, sun")


def _parse_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    if not sep:
        raise ValueError(f"time range {text!r}: {EXAMPLE}")
    start, end = _minutes(first), _minutes(last)
    if start == _DAY_MINUTES:
        raise ValueError(f"time range {text!r}: 24:00 can only end a range")
    if start == end:
        raise ValueError(f"time range {text!r} is empty")
    return start, end


def _minutes(text: str) -> int:
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time, use HH:MM")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{text!r} is not a time of day")
    return hours * 60 + minutes


def _check_line(value: str) -> str:
    try:
        parse_line(value)
    except ValueError as exc:
        raise problem("working_hours", str(exc)) from None
    return value.strip()


HoursLine = Annotated[str, AfterValidator(_check_line)]
