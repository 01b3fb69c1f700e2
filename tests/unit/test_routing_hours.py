"""Working hours as administrators write them, read at the wall-clock time of the office."""

from __future__ import annotations

from datetime import datetime

import pytest

from pbx_tracker.hours import WorkingHours

# 2026-11-23 is a Monday
MONDAY = 23


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in the week of Monday 2026-11-23 (day 23 = Monday .. 29 = Sunday)."""
    return datetime(2026, 11, day, hour, minute)


OFFICE = WorkingHours.parse(["mon-fri 09:00-18:00", "sat 10:00-14:00"])


@pytest.mark.parametrize(
    ("moment", "open_"),
    [
        (at(MONDAY, 8, 59), False),
        (at(MONDAY, 9, 0), True),
        (at(MONDAY, 17, 59), True),
        (at(MONDAY, 18, 0), False),
        (at(27, 12), True),  # Friday
        (at(28, 9, 59), False),  # Saturday before opening
        (at(28, 13, 30), True),
        (at(28, 14, 0), False),
        (at(29, 12), False),  # Sunday
    ],
)
def test_office_week(moment: datetime, open_: bool) -> None:
    """With office hours Monday to Friday 09:00-18:00 and Saturday 10:00-14:00, managers count as at
    work exactly at those times, the closing minute excluded."""
    assert OFFICE.is_open(moment) is open_


def test_night_shift_runs_past_midnight_into_the_next_day() -> None:
    """A Friday 22:00-06:00 night shift covers Friday night and Saturday early morning, but not
    Sunday night or Friday's own early morning."""
    night = WorkingHours.parse(["fri 22:00-06:00"])
    assert night.is_open(at(27, 23, 30))  # Friday night
    assert night.is_open(at(28, 5, 59))  # Saturday early morning
    assert not night.is_open(at(28, 6, 0))
    assert not night.is_open(at(MONDAY, 1, 0))  # Sunday night is not Friday's shift
    assert not night.is_open(at(27, 5, 0))  # Friday early morning belongs to Thursday


def test_day_range_may_wrap_over_the_weekend() -> None:
    """A day range written fri-mon covers Friday, Saturday, Sunday and Monday."""
    weekend = WorkingHours.parse(["fri-mon 10:00-12:00"])
    open_days = [day for day in range(MONDAY, MONDAY + 7) if weekend.is_open(at(day, 11))]
    assert open_days == [23, 27, 28, 29]


def test_lists_several_ranges_daily_and_whole_days() -> None:
    """Hours may list several days and ranges (with a lunch break), say daily, give a time without
    days for every day, or run 00:00-24:00 for the whole day."""
    split = WorkingHours.parse(["mon,wed 09:00-13:00,14:00-18:00"])
    assert split.is_open(at(25, 10)) and split.is_open(at(25, 15))
    assert not split.is_open(at(25, 13, 30))  # lunch
    assert not split.is_open(at(24, 10))  # Tuesday
    assert WorkingHours.parse(["daily 08:00-20:00"]).is_open(at(29, 8))
    assert WorkingHours.parse(["10:00-11:00"]).is_open(at(29, 10, 30))
    always = WorkingHours.parse(["Saturday 00:00-24:00"])
    assert always.is_open(at(28, 0)) and always.is_open(at(28, 23, 59))
    assert not always.is_open(at(29, 0))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("mon-fri", "is not a time, use HH:MM"),
        ("weekdays 09:00-18:00", "unknown day 'weekdays'"),
        ("mon-fri 9-18", "is not a time, use HH:MM"),
        ("mon 09:00-09:00", "is empty"),
        ("mon 24:00-06:00", "24:00 can only end a range"),
        ("mon 09:60-10:00", "not a time of day"),
        ("mon fri 09:00-10:00", "e.g. 'mon-fri 09:00-18:00'"),
        ("", "e.g. 'mon-fri 09:00-18:00'"),
    ],
)
def test_bad_lines_say_what_is_wrong(line: str, message: str) -> None:
    """A working-hours line an administrator got wrong (no time, an unknown day, 9-18, an empty or
    impossible range) is refused with a message saying what is wrong and how to write it."""
    with pytest.raises(ValueError, match=message):
        WorkingHours.parse([line])
