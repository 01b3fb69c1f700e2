"""A reminder to send in the tests: a customer who tried three times, Cyrillic labels."""

from __future__ import annotations

from datetime import UTC, datetime

from pbx_tracker.callbacks.reminders import Reminder

# Yandex.Direct, the ad source, and a manager called Anna, in Cyrillic
SOURCE = "\u042f\u043d\u0434\u0435\u043a\u0441.\u0414\u0438\u0440\u0435\u043a\u0442"
ANNA = "\u0410\u043d\u043d\u0430"
REMINDER = Reminder(
    task_id=42,
    kind="reminder",
    customer="+79161234501",
    dialable=True,
    tries=3,
    first_missed_at=datetime(2024, 5, 14, 7, 0, tzinfo=UTC),
    last_missed_at=datetime(2024, 5, 14, 7, 20, tzinfo=UTC),
    did="+74951234567",
    source=SOURCE,
    assignee="101",
    assignee_name=ANNA,
    group="sales",
    reminder_number=2,
    link=None,
    now=datetime(2024, 5, 14, 7, 25, tzinfo=UTC),
)
