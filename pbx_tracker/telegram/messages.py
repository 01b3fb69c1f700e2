"""What the bot writes: a reminder about an open callback task with its buttons, and the
words that replace it once the task is closed or reminded again.

A reminder travels through the outbox as a JSON payload (`ReminderMessage.payload`)
and is drawn when it is sent, so it is read back with every field checked
(`ReminderMessage.from_payload`: None for a payload of another shape).  Texts
are HTML with everything from outside escaped and no markup of our own, so the
text Telegram gives back with a button press is the text we sent.  A button's
``callback_data`` is ``<action>:<task id>`` (``done:17``), far below Telegram's
64 bytes.  Nothing here does I/O.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

from pbx_tracker.callbacks.policy import Resolution
from pbx_tracker.callbacks.reminders import Reminder, waited_text
from pbx_tracker.callbacks.tasks import CallbackTask
from pbx_tracker.phones import display_number
from pbx_tracker.telegram.api import Keyboard

__all__ = [
    "ACTIONS",
    "Action",
    "ReminderMessage",
    "closed_text",
    "customer_line",
    "read_button",
    "reminded_again_text",
    "ringing_text",
    "task_keyboard",
]

Action = Literal["call", "done", "snooze"]
ACTIONS: tuple[Action, ...] = ("call", "done", "snooze")
_LABELS: dict[Action, str] = {"call": "Call now", "done": "Done", "snooze": "Snooze 15 min"}
_RINGING = "☎ Your phone rings"


@dataclass(frozen=True, slots=True)
class ReminderMessage:
    """One reminder (or escalation) as the chat shows it."""

    task_id: int
    kind: str  # reminder | escalation
    number: int  # 1 for the first reminder
    customer: str | None  # E.164; None: a hidden number
    dialable: bool
    source: str | None
    did: str | None
    tries: int
    waiting_seconds: int
    first_missed_at: str  # ISO 8601 UTC
    assigned: str | None = None  # the assignee's extension: shown on an escalation

    @classmethod
    def of(cls, reminder: Reminder) -> ReminderMessage:
        return cls(
            task_id=reminder.task_id,
            kind=reminder.kind,
            number=reminder.reminder_number,
            customer=reminder.customer,
            dialable=reminder.dialable and reminder.customer is not None,
            source=reminder.source,
            did=reminder.did,
            tries=reminder.tries,
            waiting_seconds=int(reminder.waiting.total_seconds()),
            first_missed_at=_utc(reminder.first_missed_at).isoformat(),
            assigned=reminder.assignee,
        )

    def payload(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "number": self.number,
            "customer": self.customer,
            "dialable": self.dialable,
            "source": self.source,
            "did": self.did,
            "tries": self.tries,
            "waiting_seconds": self.waiting_seconds,
            "first_missed_at": self.first_missed_at,
            "assigned": self.assigned,
        }

    @classmethod
    def from_payload(cls, payload: Any) -> ReminderMessage | None:
        """The message a payload describes; None when any field is missing or of another type."""
        if not isinstance(payload, dict):
            return None
        ints = [payload.get(k) for k in ("task_id", "number", "tries", "waiting_seconds")]
        texts = [payload.get(k) for k in ("kind", "first_missed_at")]
        optional = [payload.get(k) for k in ("customer", "source", "did", "assigned")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            return None
        if not all(isinstance(v, str) for v in texts) or not isinstance(
            payload.get("dialable"), bool
        ):
            return None
        if not all(v is None or isinstance(v, str) for v in optional):
            return None
        if _moment(payload["first_missed_at"]) is None:
            return None
        values: dict[str, Any] = {field.name: payload.get(field.name) for field in fields(cls)}
        return cls(**values)

    def text(self, region: str, zone: tzinfo | None) -> str:
        """The message: whom to call back, from which source, since when, how often."""
        if self.kind == "escalation":
            headline = "⚠ Not called back within the SLA" + (
                f" by {self.assigned}" if self.assigned else ""
            )
        else:
            headline = f"Reminder #{self.number}: please call back"
        missed = _moment(self.first_missed_at)
        since = f", first missed at {_clock(missed, zone)}" if missed else ""
        tried = "once" if self.tries == 1 else f"{self.tries} times"
        waited = waited_text(timedelta(seconds=self.waiting_seconds))
        lines = [
            headline,
            customer_line(self.task_id, self.customer, self.dialable, region),
            f"Source: {self.source or 'none'}" + _called(self.did, region),
            f"Waiting {waited}{since}; called {tried}",
        ]
        return _escaped(lines)

    def keyboard(self) -> Keyboard:
        return task_keyboard(self.task_id, self.dialable)


def task_keyboard(task_id: int, dialable: bool) -> Keyboard:
    """Call now (for a number that can be dialled), then Done and Snooze 15 min."""
    rows = [[_button("call", task_id)]] if dialable else []
    return [*rows, [_button("done", task_id), _button("snooze", task_id)]]


def read_button(data: Any) -> tuple[Action, int] | None:
    """The action and task id of a button's ``callback_data``; None for anything else."""
    if not isinstance(data, str):
        return None
    name, sep, task = data.partition(":")
    if not sep or not (task.isascii() and task.isdigit()) or len(task) > 18:
        return None
    for action in ACTIONS:
        if action == name:
            return action, int(task)
    return None


def customer_line(task_id: int, customer: str | None, dialable: bool, region: str) -> str:
    """``8 (916) 123-45-67 (task 17)``: whom the task is about, plain text."""
    if customer is None:
        who = "Hidden number"
    elif dialable:
        who = display_number(customer, region)
    else:
        who = f"{customer} (cannot be dialled)"
    return f"{who} (task {task_id})"


def closed_text(task: CallbackTask, region: str, zone: tzinfo | None) -> str:
    """``Done by Anna at 14:05`` / ``Called back at 14:05`` under whom it was about."""
    at = f" at {_clock(task.resolved_at, zone)}" if task.resolved_at else ""
    if task.resolution is Resolution.CLOSED_BY_MANAGER:
        what = f"✅ Done by {task.resolved_by or 'a manager'}{at}"
    elif task.resolution is Resolution.CALLED_BACK:
        what = f"✅ Called back{at}"
    elif task.resolution is Resolution.ANSWERED_INBOUND:
        what = f"✅ They called again and were answered{at}"
    else:
        what = f"✅ Closed{at}"
    line = customer_line(task.id, task.customer, task.dialable, region)
    return _escaped([what, line])


def reminded_again_text(message: ReminderMessage, region: str) -> str:
    """What an earlier reminder becomes when a newer one about the task is sent."""
    line = customer_line(message.task_id, message.customer, message.dialable, region)
    return _escaped(["Reminded again below.", line])


def ringing_text(shown: str, customer: str) -> str:
    """The reminder ``shown`` (as the chat has it) with a line saying the call is on."""
    kept = [line for line in shown.splitlines() if not line.startswith(_RINGING)]
    return _escaped([*kept, f"{_RINGING}: pick it up and {customer} is dialled."])


def _button(action: Action, task_id: int) -> tuple[str, str]:
    return _LABELS[action], f"{action}:{task_id}"


def _called(did: str | None, region: str) -> str:
    return f" (they called {display_number(did, region)})" if did else ""


def _escaped(lines: list[str]) -> str:
    return "\n".join(html.escape(line, quote=False) for line in lines)


def _clock(moment: datetime, zone: tzinfo | None) -> str:
    return _utc(moment).astimezone(zone).strftime("%H:%M")


def _moment(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
