"""Reminder due times in working time, and how many reminders a task has due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pbx_tracker.callbacks.schedule import due_reminders, working_time_after
from pbx_tracker.hours import WorkingHours

MOSCOW = ZoneInfo("Europe/Moscow")
OFFICE = WorkingHours.parse(["mon-fri 09:00-18:00"])


def moscow(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of the week of Monday 2026-11-23, Moscow time, as UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=MOSCOW).astimezone(UTC)


def test_without_hours_every_minute_counts() -> None:
    """Without working hours a reminder due 30 minutes after a Saturday-night miss is due 30 minutes
    later, night or weekend."""
    start = moscow(28, 23, 50)  # Saturday night
    assert working_time_after(start, 30, None, MOSCOW) == start + timedelta(minutes=30)


def test_a_call_missed_in_working_hours_is_reminded_of_at_once_and_on_time() -> None:
    """A call missed on a working Tuesday morning is reminded of at once and again 15 minutes later,
    on the clock."""
    start = moscow(24, 10, 0)  # Tuesday 10:00
    assert working_time_after(start, 0, OFFICE, MOSCOW) == start
    assert working_time_after(start, 15, OFFICE, MOSCOW) == moscow(24, 10, 15)


def test_time_outside_working_hours_does_not_count() -> None:
    """A reminder due 30 working minutes after 17:50 on Friday comes at 09:20 on Monday: evenings
    and weekends do not count."""
    friday_evening = moscow(27, 17, 50)
    # 10 minutes left on Friday, the other 20 on Monday morning
    assert working_time_after(friday_evening, 30, OFFICE, MOSCOW) == moscow(30, 9, 20)


def test_first_reminder_of_a_night_call_waits_for_the_morning() -> None:
    """The first reminder of a call missed at 02:13 comes when the office opens at 09:00, not in the
    night."""
    night = moscow(25, 2, 13)  # Wednesday 02:13
    assert working_time_after(night, 0, OFFICE, MOSCOW) == moscow(25, 9, 0)


def test_due_reminders_counts_those_whose_time_has_come() -> None:
    """The number of reminders due grows only as their working-time moments pass, and a night call
    has none due before the office opens."""
    opened = moscow(24, 10, 0)
    schedule = [0, 10, 30, 60]
    assert due_reminders(opened, opened, schedule, OFFICE, MOSCOW) == 1
    assert due_reminders(opened, moscow(24, 10, 29), schedule, OFFICE, MOSCOW) == 2
    assert due_reminders(opened, moscow(24, 12, 0), schedule, OFFICE, MOSCOW) == 4
    night_call = moscow(25, 2, 0)
    assert due_reminders(night_call, moscow(25, 8, 59), schedule, OFFICE, MOSCOW) == 0
