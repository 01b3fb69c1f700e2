"""A manager's callbacks: ``GET /callbacks`` and ``GET /callbacks/tasks.json``, and the
buttons ``POST /callbacks/{id}/call`` and ``POST /callbacks/{id}/done``.

A manager sees their open callback tasks (an admin: everyone's), newest first,
with "Call now" and "Done"; ``/callbacks/tasks.json`` gives the same rows as
JSON, which ``/static/pages.js`` polls to keep the list current.  "Call now"
rings the manager's phone, then the customer (`RingMe`, the daemon's AMI
connection); "Done" closes the task.  A marketer gets 403, a manager 403 on
another manager's task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.call_now import call_customer_now
from pbx_tracker.callbacks.ringme import RingMeRefused
from pbx_tracker.callbacks.task_actions import close_task
from pbx_tracker.phones import display_number
from pbx_tracker.web.pages.call_facts import OpeningCall, opening_calls
from pbx_tracker.web.pages.calls import shown_caller_name
from pbx_tracker.web.pages.common import (
    HEADERS,
    MANAGER_ROLES,
    PAGES,
    Pages,
    forbidden,
    html_response,
    outcome,
    posted_with_role,
    with_role,
)
from pbx_tracker.web.pages.layout import csrf_field, layout, plural
from pbx_tracker.web.pages.layout import escape as _e
from pbx_tracker.web.roles import sees_every_callback
from pbx_tracker.web.sessions import Session
from pbx_tracker.web.settings import WebUser

__all__ = ["add_callbacks_routes", "age_text", "callbacks_html", "task_row"]

log = structlog.get_logger(__name__)

FRESH_MINUTES = 5  # callback speed: within 5 minutes is good, after 30 it is late
LATE_MINUTES = 30
MAX_ROWS = 200

Outcome = tuple[bool, str]  # done?, and what to tell the user


async def _manager_only(request: web.Request) -> tuple[Session, WebUser] | web.Response:
    return await with_role(request, MANAGER_ROLES, "This page is for managers.")


async def _rows(pages: Pages, user: WebUser) -> list[dict[str, Any]]:
    mine = None if sees_every_callback(user.role) else user.extension
    async with pages.engine.connect() as conn:
        found = await tasks.list_tasks(conn, status="open", assignee=mine, limit=MAX_ROWS)
        opened = await opening_calls(conn, [t.first_call_id for t in found if t.first_call_id])
    now, everyone = pages.now(), sees_every_callback(user.role)
    return [task_row(task, now, pages.region, admin=everyone, opened=opened) for task in found]


def task_row(
    task: tasks.CallbackTask,
    now: datetime,
    region: str,
    *,
    admin: bool,
    opened: Mapping[int, OpeningCall] | None = None,
) -> dict[str, Any]:
    """What a row shows, ready to print (the page and the JSON use the same); ``call``: the
    id of the call that opened the task (0: none), ``recording``: whether it has one,
    ``caller_name``: the name the caller gave (empty when none, or only the number)."""
    first = (opened or {}).get(task.first_call_id or 0)
    waited = now - task.first_missed_at
    minutes = waited.total_seconds() / 60
    urgency = (
        "fresh" if minutes < FRESH_MINUTES else "late" if minutes < LATE_MINUTES else "overdue"
    )
    customer = display_number(task.customer, region) if task.customer else "Hidden number"
    return {
        "id": task.id,
        "customer": customer,
        "source": task.source or "no source",
        "tries": plural(task.tries, "call"),
        "did": f"to {display_number(task.did, region)}" if task.did else "",
        "assignee": f"for {task.assignee}" if admin and task.assignee else "",
        "age": age_text(waited),
        "since": f"first missed {task.first_missed_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        "urgency": urgency,
        "can_call": bool(task.dialable and task.customer),
        "call": task.first_call_id or 0,
        "recording": first is not None and first.recorded,
        "caller_name": shown_caller_name(first.caller_name if first else None, task.customer),
    }


def age_text(waited: timedelta) -> str:
    """``just now``, ``12 min``, ``2 h 05 min``, ``3 days``."""
    minutes = max(0, int(waited.total_seconds() // 60))
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} days"


async def callbacks_page(request: web.Request) -> web.Response:
    allowed = await _manager_only(request)
    if isinstance(allowed, web.Response):
        return allowed
    session, user = allowed
    pages = request.app[PAGES]
    rows = await _rows(pages, user)
    page = callbacks_html(
        user=user,
        csrf=session.csrf,
        rows=rows,
        flash=await pages.sessions.take_flash(session),
        poll=pages.poll_seconds,
    )
    return html_response(page)


async def callbacks_json(request: web.Request) -> web.Response:
    allowed = await _manager_only(request)
    if isinstance(allowed, web.Response):
        return allowed
    rows = await _rows(request.app[PAGES], allowed[1])
    return web.json_response({"tasks": rows}, headers=HEADERS)


async def _task_action(
    request: web.Request,
    act: Callable[[Pages, WebUser, tasks.CallbackTask], Awaitable[Outcome]],
) -> web.Response:
    """The checks every task button shares, then ``act``; its outcome shown once."""
    allowed = await posted_with_role(request, MANAGER_ROLES, "This page is for managers.")
    if isinstance(allowed, web.Response):
        return allowed
    session, user = allowed
    pages = request.app[PAGES]
    task = await _task(pages, request.match_info["task_id"])
    if task is None:
        ok, message = False, "That callback no longer exists."
    elif not sees_every_callback(user.role) and task.assignee != user.extension:
        return forbidden(request, session, user, "That callback belongs to another manager.")
    elif not task.is_open:
        ok, message = False, "That callback is already done."
    else:
        ok, message = await act(pages, user, task)
    return await outcome(request, session, ok, message, "/callbacks")


async def _task(pages: Pages, task_id: str) -> tasks.CallbackTask | None:
    if not task_id.isdigit() or len(task_id) > 18:
        return None
    async with pages.engine.connect() as conn:
        return await tasks.get_task(conn, int(task_id))


async def _call_now(pages: Pages, user: WebUser, task: tasks.CallbackTask) -> Outcome:
    """Ring the user's phone; once they pick up, Asterisk dials the customer."""
    if pages.ringme is None:
        return False, "Calling from the page is off (callbacks.ring_me.enabled in the config)."
    if user.extension is None:
        return False, "Your user has no extension to ring (web.users[].extension)."
    if not task.dialable or task.customer is None:
        return False, "This number cannot be dialled."
    dial = pages.dial(user.extension)
    try:
        await call_customer_now(
            pages.ringme, pages.engine, task, extension=user.extension, dial=dial, at=pages.now()
        )
    except RingMeRefused as refused:
        return False, f"Could not call: {refused.reason}."
    log.info("web.callback_call", task=task.id, user=user.name, extension=user.extension)
    shown = display_number(task.customer, pages.region)
    return True, f"Your phone rings now. Pick it up and {shown} is dialled."


async def _done(pages: Pages, user: WebUser, task: tasks.CallbackTask) -> Outcome:
    try:
        async with pages.engine.begin() as conn:
            await close_task(conn, task.id, by=user.name, now=pages.now())
    except tasks.TaskError:
        return False, "That callback is already done."
    log.info("web.callback_done", task=task.id, user=user.name)
    return True, "Marked as done."


async def call_now(request: web.Request) -> web.Response:
    return await _task_action(request, _call_now)


async def done(request: web.Request) -> web.Response:
    return await _task_action(request, _done)


def add_callbacks_routes(app: web.Application) -> None:
    app.router.add_get("/callbacks", callbacks_page)
    app.router.add_get("/callbacks/tasks.json", callbacks_json)
    app.router.add_post(r"/callbacks/{task_id}/call", call_now)
    app.router.add_post(r"/callbacks/{task_id}/done", done)


# --- HTML -----------------------------------------------------------------------------------


def task_item(row: Mapping[str, Any], csrf: str) -> str:
    """One open callback; mirrors ``row()`` in static/pages.js."""
    task_id = int(row["id"])
    details = [row["source"], row["tries"], row["did"], row["assignee"]]
    meta = "".join(f'<span class="meta-item">{_e(item)}</span>' for item in details if item)
    meta += _call_links(int(row["call"]), bool(row["recording"]))
    call = ""
    if row["can_call"]:
        call = _action(task_id, "call", "Call now", "btn-primary", csrf)
    done = _action(task_id, "done", "Done", "btn-done", csrf)
    return (
        f'<li class="task" id="task-{task_id}" data-id="{task_id}">'
        f'<div class="task-main"><div class="customer">{_e(row["customer"])}</div>'
        f"{_caller_name(row)}"
        f'<div class="meta">{meta}</div></div>'
        f'<div class="age age-{_e(row["urgency"])}" title="{_e(row["since"])}">'
        f"{_e(row['age'])}</div>"
        f'<div class="actions">{call}{done}</div></li>'
    )


def _caller_name(row: Mapping[str, Any]) -> str:
    name = row.get("caller_name")
    return f'<div class="caller-name">{_e(name)}</div>' if name else ""


def _call_links(call_id: int, recording: bool) -> str:
    """Links to the call card of the call that opened the task, and to its recording."""
    if not call_id:
        return ""
    links = f'<a class="meta-item task-link" href="/calls/{call_id}">Call #{call_id}</a>'
    if recording:
        links += f'<a class="meta-item task-link" href="/recordings/{call_id}">Recording</a>'
    return links


def _action(task_id: int, action: str, label: str, style: str, csrf: str) -> str:
    return (
        f'<form method="post" action="/callbacks/{task_id}/{action}" data-ajax>'
        f'{csrf_field(csrf)}<button class="btn {style}" type="submit">{_e(label)}</button></form>'
    )


def callbacks_html(
    *, user: Any, csrf: str, rows: Iterable[Mapping[str, Any]], flash: str | None, poll: float
) -> str:
    rows = list(rows)
    items = "".join(task_item(row, csrf) for row in rows)
    whose = "All open callbacks" if sees_every_callback(user.role) else "Your callbacks"
    toast = f'<p class="alert alert-info" role="status">{_e(flash)}</p>' if flash else ""
    body = (
        f'<div class="heading"><h1>{whose}</h1>'
        f'<span class="count{"" if rows else " is-zero"}" id="task-count">{len(rows)}</span>'
        "</div>"
        f'<div id="toast" aria-live="polite">{toast}</div>'
        f'<ul class="tasks" id="tasks" data-csrf="{_e(csrf)}" data-poll="{poll:g}">{items}</ul>'
        f'<p class="empty" id="empty"{"" if not rows else " hidden"}>'
        "No callbacks waiting. New missed calls appear here by themselves.</p>"
    )
    return layout(f"Callbacks ({len(rows)})", body, user=user, csrf=csrf)
