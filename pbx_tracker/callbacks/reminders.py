"""The reminder about an open callback task, as an email and as a webhook payload.

A `Reminder` holds what a manager needs to know about one open task when it is
sent: who called, how often, since when, which number (and ad source) they
called, who the task is assigned to, and how to act on it.  `render_email()`
makes a plain-text message (with a simple HTML alternative) for people;
`webhook_payload()` makes the JSON-ready dict for machines.  Neither does I/O.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any, Literal

from pbx_tracker.phones import display_number

__all__ = [
    "Reminder",
    "ReminderKind",
    "delivery_id",
    "render_email",
    "subject",
    "waited_text",
    "webhook_payload",
]

ReminderKind = Literal["reminder", "escalation"]
# Delivery ids are UUIDv5 in this namespace: the same reminder always gets the same id.
_DELIVERY_NAMESPACE = uuid.UUID("5b0c7f3e-2a51-4a8e-9d0e-6f1c2b7a9e41")
_HIDDEN = "hidden number: cannot be called back"


@dataclass(frozen=True, slots=True)
class Reminder:
    """One reminder (or SLA escalation) about an open callback task."""

    task_id: int
    kind: ReminderKind
    customer: str | None  # E.164, None for a hidden caller
    dialable: bool
    tries: int  # missed calls from this customer in the task
    first_missed_at: datetime  # UTC
    last_missed_at: datetime
    did: str | None
    source: str | None
    assignee: str | None  # extension
    assignee_name: str | None
    group: str | None
    reminder_number: int  # 1 for the first reminder
    link: str | None  # from callbacks.link_template
    now: datetime  # when the reminder is sent

    @property
    def event(self) -> str:
        """``callback.reminder`` or ``callback.escalation``."""
        return f"callback.{self.kind}"

    @property
    def waiting(self) -> timedelta:
        """How long the customer has been waiting since the first missed call."""
        return max(_utc(self.now) - _utc(self.first_missed_at), timedelta(0))


def render_email(
    reminder: Reminder, *, to: list[str], sender: str, region: str, zone: tzinfo | None
) -> EmailMessage:
    """The reminder as a UTF-8 email to ``to``; times are shown in ``zone`` (None: the host's)."""
    message = EmailMessage()
    message["Subject"] = subject(reminder, region)
    message["From"] = formataddr(("pbx-tracker", sender))
    message["To"] = ", ".join(to)
    message["Date"] = format_datetime(_utc(reminder.now))
    message["Message-ID"] = make_msgid("callback", domain=_domain(sender))
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message["X-PBX-Tracker-Event"] = reminder.event
    message["X-PBX-Tracker-Task"] = str(reminder.task_id)
    facts = _facts(reminder, region, zone)
    actions = _actions(reminder)
    message.set_content(_text(reminder, facts, actions), cte="quoted-printable")
    message.add_alternative(_html(reminder, facts, actions), subtype="html", cte="quoted-printable")
    return message


def subject(reminder: Reminder, region: str) -> str:
    """``Call back 8 (916) 123-45-01 (tried 3 times, waiting 25 min)``; ``[SLA] …`` escalated."""
    prefix = "[SLA] " if reminder.kind == "escalation" else ""
    if reminder.customer is None:
        what = "Missed call from a hidden number"
    elif reminder.dialable:
        what = f"Call back {display_number(reminder.customer, region)}"
    else:
        what = f"Missed call from {reminder.customer}"
    tried = "tried once" if reminder.tries == 1 else f"tried {reminder.tries} times"
    return " ".join(f"{prefix}{what} ({tried}, waiting {waited_text(reminder.waiting)})".split())


def webhook_payload(reminder: Reminder) -> dict[str, Any]:
    """The reminder as a JSON-ready dict; times in ISO 8601 UTC (``2024-05-14T07:00:00Z``)."""
    return {
        "event": reminder.event,
        "delivery": delivery_id(reminder),
        "task_id": reminder.task_id,
        "customer": reminder.customer,
        "dialable": reminder.dialable,
        "tries": reminder.tries,
        "first_missed_at": _iso(reminder.first_missed_at),
        "last_missed_at": _iso(reminder.last_missed_at),
        "sent_at": _iso(reminder.now),
        "did": reminder.did,
        "source": reminder.source,
        "assignee": reminder.assignee,
        "assignee_name": reminder.assignee_name,
        "group": reminder.group,
        "reminder_number": reminder.reminder_number,
        "link": reminder.link,
    }


def delivery_id(reminder: Reminder) -> str:
    """A stable id of this reminder: equal on every retry, new for the next reminder."""
    key = (
        f"{reminder.task_id}/{reminder.kind}/{reminder.reminder_number}/"
        f"{_iso(reminder.first_missed_at)}"
    )
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, key))


def _facts(reminder: Reminder, region: str, zone: tzinfo | None) -> list[tuple[str, str]]:
    """Label and value pairs shown in both the text and the HTML body."""
    facts = [("Customer", _customer(reminder, region)), ("Missed", _missed(reminder, zone))]
    facts.append(("Waiting", waited_text(reminder.waiting)))
    called = _called(reminder, region)
    if called:
        facts.append(("They called", called))
    facts.append(("Assigned to", _assigned(reminder)))
    if reminder.kind == "escalation":
        facts.append(("Escalated", "not called back within the SLA"))
    else:
        facts.append(("Reminder", f"#{reminder.reminder_number}"))
    facts.append(("Task", str(reminder.task_id)))
    return facts


def _actions(reminder: Reminder) -> list[tuple[str, str]]:
    """What to do about it: the link, else the CLI commands."""
    if reminder.link:
        return [("Open the task", reminder.link)]
    actions = []
    if reminder.dialable:
        call = f"pbx-tracker callbacks call {reminder.task_id}"
        actions.append(("Call back (your phone rings first, then the customer's)", call))
    done = f"pbx-tracker callbacks done {reminder.task_id}"
    actions.append(("Close the task once the customer is taken care of", done))
    return actions


def _headline(reminder: Reminder) -> str:
    if reminder.kind == "escalation":
        return "A missed call has not been called back within the SLA."
    return "A customer called and nobody answered: please call them back."


def _text(reminder: Reminder, facts: list[tuple[str, str]], actions: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in facts) + 2
    lines = [_headline(reminder), ""]
    lines += [f"{label + ':':<{width}}{value}" for label, value in facts]
    for label, value in actions:
        lines += ["", f"{label}:", f"    {value}"]
    return "\n".join(lines) + "\n"


def _html(reminder: Reminder, facts: list[tuple[str, str]], actions: list[tuple[str, str]]) -> str:
    rows = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in facts
    )
    steps = "".join(f"<p>{html.escape(label)}: {_html_action(v)}</p>" for label, v in actions)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
        f"<p>{html.escape(_headline(reminder))}</p><table>{rows}</table>{steps}</body></html>\n"
    )


def _html_action(value: str) -> str:
    if value.startswith(("https://", "http://")):
        return f"<a href='{html.escape(value, quote=True)}'>{html.escape(value)}</a>"
    return f"<code>{html.escape(value)}</code>"


def _customer(reminder: Reminder, region: str) -> str:
    if reminder.customer is None:
        return _HIDDEN
    if not reminder.dialable:
        return f"{reminder.customer}: cannot be called back"
    return display_number(reminder.customer, region)


def _missed(reminder: Reminder, zone: tzinfo | None) -> str:
    first = _utc(reminder.first_missed_at).astimezone(zone)
    if reminder.tries == 1:
        return f"once, at {_clock(first)}"
    last = _utc(reminder.last_missed_at).astimezone(zone)
    last_shown = last.strftime("%H:%M %Z") if last.date() == first.date() else _clock(last)
    return f"{reminder.tries} times, first at {_clock(first)}, last at {last_shown}"


def _called(reminder: Reminder, region: str) -> str:
    parts = [display_number(reminder.did, region)] if reminder.did else []
    if reminder.source:
        parts.append(f"source {reminder.source}")
    return ", ".join(parts)


def _assigned(reminder: Reminder) -> str:
    if reminder.assignee_name and reminder.assignee:
        who = f"{reminder.assignee_name} ({reminder.assignee})"
    else:
        who = reminder.assignee_name or reminder.assignee or ""
    group = f"group {reminder.group}" if reminder.group else ""
    return ", ".join(part for part in (who, group) if part) or "nobody yet"


def waited_text(span: timedelta) -> str:
    """``25 min``, ``2 h 5 min``, ``1 d 3 h``; under a minute: ``<1 min``."""
    minutes = int(span.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else "<1 min"


def _clock(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z")


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")


def _domain(address: str) -> str:
    """The sender's domain for the Message-ID (make_msgid's default asks DNS: blocking)."""
    return address.rpartition("@")[2] or "localhost"
