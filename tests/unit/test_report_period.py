"""--from/--to and the zone's days: dates, moments, offsets, summer time."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from pbx_tracker.reports.dimensions import Dimension, GroupingError, parse_group_by
from pbx_tracker.reports.period import PeriodError, offset_steps, period_of

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")


def test_dates_are_whole_days_in_the_zone() -> None:
    """A report --from 2026-11-02 --to 2026-11-04 covers those three whole days in Moscow time, the
    last day included."""
    period = period_of("2026-11-02", "2026-11-04", MOSCOW)
    assert period.start == datetime(2026, 11, 1, 21, tzinfo=UTC)
    assert period.end == datetime(2026, 11, 4, 21, tzinfo=UTC)  # the 4th is included
    assert (str(period.first_day), str(period.last_day)) == ("2026-11-02", "2026-11-04")


def test_moments_in_the_zone_or_at_their_own_offset() -> None:
    """A --from or --to with a time is read in the report's zone unless it gives its own offset, and
    the --to moment itself is not included."""
    period = period_of("2026-11-02T09:30", "2026-11-02 18:00:00+00:00", MOSCOW)
    assert period.start == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
    assert period.end == datetime(2026, 11, 2, 18, tzinfo=UTC)  # a moment: not included
    assert period_of("2026-11-02T00:00Z", "2026-11-03", None).start == datetime(
        2026, 11, 2, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-02-30", "2026-03-01", "--from '2026-02-30': write a date (2026-11-01)"),
        ("yesterday", "2026-03-01", "--from 'yesterday': write a date"),
        ("2026-03-01", "1.3.2026", "--to '1.3.2026': write a date"),
        ("2026-03-02", "2026-03-01", "--to 2026-03-01 is not after --from 2026-03-02"),
        ("2026-03-01T10:00", "2026-03-01T10:00", "the period is empty"),
    ],
)
def test_unusable_periods(start: str, end: str, message: str) -> None:
    """A period the report cannot use (no such date, a word, a date in another format, --to before
    --from, an empty period) is refused with a message saying what to write."""
    with pytest.raises(PeriodError, match=message.replace("(", r"\(").replace(")", r"\)")):
        period_of(start, end, MOSCOW)


def test_one_offset_without_a_change() -> None:
    """A year in Moscow, which has no summer time, is grouped by day at one UTC offset of three
    hours."""
    assert offset_steps(period_of("2026-01-01", "2026-12-31", MOSCOW)) == [(None, 3 * 3600)]


def test_summer_time_changes_to_the_second() -> None:
    """Days in a Berlin report switch offset exactly at the spring and autumn clock changes, so no
    call lands on the wrong day."""
    steps = offset_steps(period_of("2026-03-01", "2026-11-30", BERLIN))
    assert steps == [
        (datetime(2026, 3, 29, 1, tzinfo=UTC), 3600),  # 02:00 CET -> 03:00 CEST
        (datetime(2026, 10, 25, 1, tzinfo=UTC), 7200),  # 03:00 CEST -> 02:00 CET
        (None, 3600),
    ]


def test_the_local_zone_has_steps_too() -> None:
    """Without a configured zone the report uses the machine's local zone and still knows its UTC
    offset."""
    steps = offset_steps(period_of("2026-01-01", "2026-01-02", None))
    assert steps[-1][0] is None and isinstance(steps[-1][1], int)


def test_group_by() -> None:
    """--group-by takes dimension names in any case with spaces, and a name that is unknown,
    repeated or missing is refused with a message saying so."""
    assert parse_group_by(" Source , day") == [Dimension.SOURCE, Dimension.DAY]
    with pytest.raises(GroupingError, match="'colour' is unknown"):
        parse_group_by("colour")
    with pytest.raises(GroupingError, match="names day twice"):
        parse_group_by("day,day")
    with pytest.raises(GroupingError, match="is empty"):
        parse_group_by(",")
