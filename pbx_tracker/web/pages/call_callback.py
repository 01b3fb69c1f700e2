"""The call card's callback task: the task the missed call opened or joined, and its
history in words (opened, reminders and through what, escalations, who called back
when, how it was done) for the timeline.

Who sees what, as on ``/callbacks``: a supervisor or an admin every task and its
history; a manager only their own task's (another's shows "assigned to someone
else"); a marketer, who has no callbacks page, whether the task is open or done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pbx_tracker.callbacks import tasks
from pbx_tracker.web.pages.call_record import manager_name, moment
from pbx_tracker.web.pages.call_timeline import Line
from pbx_tracker.web.pages.common import Pages
from pbx_tracker.web.pages.layout import escape as _e
from pbx_tracker.web.roles import sees_every_callback
from pbx_tracker.web.settings import WebUser

__all__ = ["callback_html", "callback_lines", "sees_history"]

RESOLUTIONS = {
    "answered_inbound": "the customer called again and was answered",
    "called_back": "called back",
    "closed_by_manager": "closed by hand",
}


def sees_history(user: WebUser, task: tasks.CallbackTask) -> bool:
    """May ``user`` read the task's history (their own, or they see every task)?"""
    if sees_every_callback(user.role):
        return True
    return user.role == "manager" and bool(task.assignee) and task.assignee == user.extension


def _by(
    detail: Mapping[str, Any], key: str, managers: Mapping[str, str], missing: str = "someone"
) -> str:
    value = detail.get(key)
    return manager_name(str(value), managers) if value else missing


def _channels(detail: Mapping[str, Any]) -> str:
    channels = detail.get("channels")
    if not isinstance(channels, list) or not channels:
        return ""
    return " by " + ", ".join(str(channel) for channel in channels)


def _event_text(event: tasks.TaskEvent, managers: Mapping[str, str]) -> str:
    detail, kind = event.detail, event.kind.value
    if kind == "opened":
        return f"Callback task opened for {_by(detail, 'assignee', managers, 'anyone')}"
    if kind == "joined":
        return "Another missed call of this customer joined the task"
    if kind in ("reminded", "escalated"):
        what = "Reminder sent" if kind == "reminded" else "Escalated to the supervisor"
        return f"{what}{_channels(detail)}"
    if kind == "attempt":
        who = _by(detail, "manager", managers)
        if detail.get("channel") == "ring_me":
            return f"{who} called back from the callbacks page"
        return f"{who} called back: no answer"
    if kind == "resolved":
        how = RESOLUTIONS.get(str(detail.get("resolution")), "done")
        return f"Done: {how} by {_by(detail, 'by', managers)}"
    if kind == "closed":
        return f"Done: closed by hand by {detail.get('by') or 'someone'}"
    if kind == "snoozed":
        return f"Snoozed by {detail.get('by') or 'someone'} until {detail.get('until', '')}"
    if kind == "assigned":
        return f"Given to {_by(detail, 'to', managers)} by {detail.get('by') or 'someone'}"
    if kind == "notify_failed":
        return f"A reminder by {detail.get('channel')} failed: {detail.get('reason')}"
    return kind


def callback_lines(
    task: tasks.CallbackTask, events: Iterable[tasks.TaskEvent], managers: Mapping[str, str]
) -> list[Line]:
    """The task's history as timeline steps, in the order it happened (the opening at the
    time the task was opened, not the missed call's start it is recorded with)."""
    return [
        Line(
            task.created_at if event.kind.value == "opened" else event.at,
            f"task task-{event.kind.value}",
            _event_text(event, managers),
        )
        for event in events
    ]


def _summary(task: tasks.CallbackTask, pages: Pages) -> list[tuple[str, str]]:
    status = "open"
    if not task.is_open:
        how = RESOLUTIONS.get(task.resolution.value if task.resolution else "", "done")
        status = f"done: {how}"
    reminders = str(task.reminders_sent)
    if task.last_reminder_at is not None:
        reminders += f", the last at {moment(task.last_reminder_at, pages, day=True)}"
    return [
        ("Status", status),
        ("For", manager_name(task.assignee, pages.managers) or task.group_name or "anyone"),
        ("Opened", moment(task.created_at, pages, day=True)),
        ("Missed calls", str(task.tries)),
        ("Reminders sent", reminders),
        ("Escalated", moment(task.escalated_at, pages, day=True)),
        ("Done at", moment(task.resolved_at, pages, day=True)),
    ]


def callback_html(task: tasks.CallbackTask | None, user: WebUser, pages: Pages) -> str:
    """The task's summary, or what the reader may know of it."""
    if task is None:
        inner = '<p class="muted" id="callback-none">No callback task for this call.</p>'
    elif sees_history(user, task):
        facts = "".join(
            f'<div class="fact"><dt>{_e(label)}</dt><dd>{_e(text)}</dd></div>'
            for label, text in _summary(task, pages)
            if text
        )
        link = ""
        if task.is_open:
            link = '<p><a class="btn btn-quiet" href="/callbacks">Open the callbacks</a></p>'
        inner = f'<dl class="facts" id="callback-facts">{facts}</dl>{link}'
    else:
        status = "open" if task.is_open else "done"
        whose = "assigned to someone else" if user.role == "manager" else "for the managers"
        inner = (
            f'<p class="muted" id="callback-hidden">A callback task ({status}), {whose}: '
            "its history is not shown to you.</p>"
        )
    return (
        '<section class="card card-part" aria-labelledby="callback-title" id="callback">'
        f'<h2 id="callback-title">Callback</h2>{inner}</section>'
    )
