"""What a finished call means for callback tasks: open one, join one, resolve one.

Pure: no database, no clock.  `decide` takes a labelled call record (caller
and DID in E.164, `source` set for tracked numbers) and the open task of the
customer the call concerns (`customer_of`), and answers with one decision:

- a missed inbound call on a tracked number, for a reason in
  ``callbacks.reasons``: `Join` the customer's open task, else `Open` one
  (a hidden or undialable caller always gets a task of its own, not dialable);
  a spam call (`CallRecord.spam`) neither opens nor joins one;
- an answered inbound call from a customer with an open task: `Resolve` it
  (answered_inbound, by whoever talked to them last);
- a call a manager placed to such a customer: `Resolve` it when answered
  (called_back), else it is an `Attempt` (the callback was tried);
  either only when the call was not over before the task's first missed call
  (a record that arrives late cannot resolve a later miss);
- anything else: `Nothing`, with the reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction, SpamReason
from pbx_tracker.phones import is_dialable

__all__ = [
    "Attempt",
    "Decision",
    "EventKind",
    "Join",
    "Nothing",
    "Open",
    "OpenTask",
    "Resolution",
    "Resolve",
    "TaskStatus",
    "assignee_of",
    "customer_of",
    "decide",
]


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    DONE = "done"


class Resolution(enum.StrEnum):
    ANSWERED_INBOUND = "answered_inbound"  # the customer called again and was answered
    CALLED_BACK = "called_back"  # a manager's call to the customer was answered
    CLOSED_BY_MANAGER = "closed_by_manager"


class EventKind(enum.StrEnum):
    OPENED = "opened"
    JOINED = "joined"
    REMINDED = "reminded"
    ESCALATED = "escalated"
    SNOOZED = "snoozed"
    ASSIGNED = "assigned"
    ATTEMPT = "attempt"
    RESOLVED = "resolved"
    CLOSED = "closed"
    NOTIFY_FAILED = "notify_failed"


class OpenTask(Protocol):
    """What the policy needs of the customer's open task."""

    @property
    def id(self) -> int: ...

    @property
    def first_missed_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class Open:
    """A new task for the caller of this missed call."""

    customer: str | None
    dialable: bool
    assignee: str | None
    group: str | None
    did: str | None
    source: str | None


@dataclass(frozen=True, slots=True)
class Join:
    """The customer tried again: one more missed call for their open task."""

    task_id: int


@dataclass(frozen=True, slots=True)
class Resolve:
    """The customer was reached: the task is done."""

    task_id: int
    resolution: Resolution
    by: str | None
    call: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    """A manager called the customer back and nobody answered."""

    task_id: int
    manager: str | None
    call: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Nothing:
    """The call changes no task (why, for the logs)."""

    reason: str


Decision = Open | Join | Resolve | Attempt | Nothing
SPAM_REASONS = {
    SpamReason.BLOCKED: "blocked number",
    SpamReason.HIDDEN: "hidden number",
    SpamReason.REPEAT: "repeat calls",
    SpamReason.MANUAL: "marked by a manager",
}


def customer_of(record: CallRecord) -> str | None:
    """The customer's number (E.164) the call concerns; None when hidden or undialable.

    Inbound calls come from the customer; outbound ones (calls managers place)
    carry the customer they dialled in `caller` too.
    """
    return record.caller if is_dialable(record.caller) else None


def decide(record: CallRecord, task: OpenTask | None, settings: CallbackSettings) -> Decision:
    """What `record` does to callback tasks, given the customer's open `task`."""
    if not settings.enabled:
        return Nothing("callbacks are disabled")
    if record.direction is Direction.OUTBOUND:
        return _callback_call(record, task)
    if record.status is CallStatus.ANSWERED:
        return _answered_inbound(record, task)
    return _missed_inbound(record, task, settings)


def _missed_inbound(
    record: CallRecord, task: OpenTask | None, settings: CallbackSettings
) -> Decision:
    if record.source is None:
        return Nothing("missed on a number that is not tracked")
    reason = record.missed_reason
    if reason is None or reason.value not in settings.reasons:
        return Nothing(f"missed ({reason or 'no reason'}): not a reason to call back")
    if record.spam is not None:
        return Nothing(f"spam: {SPAM_REASONS[record.spam]}")
    customer = customer_of(record)
    if customer is not None and task is not None:
        return Join(task.id)
    assignee, group = assignee_of(record)
    return Open(
        customer=customer,
        dialable=customer is not None,
        assignee=assignee,
        group=group,
        did=record.did,
        source=record.source,
    )


def _answered_inbound(record: CallRecord, task: OpenTask | None) -> Decision:
    if task is None or customer_of(record) is None:
        return Nothing("answered; no open task for the caller")
    if _over_before(record, task):
        return Nothing("answered; the call was over before the task's first miss")
    by = record.transferred_to or record.answered_by
    at = _reached_at(record, task)
    return Resolve(task.id, Resolution.ANSWERED_INBOUND, by, record.linkedid, at)


def _callback_call(record: CallRecord, task: OpenTask | None) -> Decision:
    if task is None or customer_of(record) is None:
        return Nothing("outbound call; no open task for that number")
    if _over_before(record, task):
        return Nothing("outbound call; over before the task's first miss")
    if record.status is CallStatus.ANSWERED:
        at = _reached_at(record, task)
        return Resolve(task.id, Resolution.CALLED_BACK, record.answered_by, record.linkedid, at)
    return Attempt(task.id, _caller_manager(record), record.linkedid, record.started_at)


def _over_before(record: CallRecord, task: OpenTask) -> bool:
    """A call over by the time the first missed call began (a late record) did not reach
    them: only a contact that ends after the miss began can close its task."""
    return record.ended_at <= task.first_missed_at


def _reached_at(record: CallRecord, task: OpenTask) -> datetime:
    """When the customer was reached: the answer, or, for a call already talking when
    the miss began (it ends after it), the miss itself: never before the task began."""
    return max(record.answered_at or record.started_at, task.first_missed_at)


def _caller_manager(record: CallRecord) -> str | None:
    """The manager who placed an outbound call (an unanswered one names none itself)."""
    if record.answered_by:
        return record.answered_by
    managers = _distinct_managers(record)
    return managers[0] if len(managers) == 1 else None


def assignee_of(record: CallRecord) -> tuple[str | None, str | None]:
    """(assignee, group) of a missed call's task.

    The assignee is the manager who should have answered: the only manager
    whose phone rang, else the one ROUTE_MANAGER named; None when several (or
    none) were meant.  The group is the call's ROUTE_GROUP, whoever is assigned.
    """
    group = record.variables.get("ROUTE_GROUP") or None
    rang = _distinct_managers(record)
    if len(rang) == 1:
        return rang[0], group
    routed = [m.strip() for m in record.variables.get("ROUTE_MANAGER", "").split("&")]
    routed = [m for m in routed if m]
    return (routed[0] if len(routed) == 1 else None), group


def _distinct_managers(record: CallRecord) -> list[str]:
    return list(dict.fromkeys(a.manager for a in record.attempts if a.manager))
