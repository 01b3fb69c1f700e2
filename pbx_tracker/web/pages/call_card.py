"""The call card, ``GET /calls/{id}``: one call on one page, for anyone signed in.

The record (`call_record`), the timeline and the router's decisions
(`call_timeline`), the recording player (the file served by
`pbx_tracker.web.pages.recordings`, same rule: anyone signed in), the callback
task and its history as the reader's role allows (`call_callback`), and the
caller's other calls, newest first, each linking to its card.  What it reads is
`call_facts`.  An id that is not a stored call's (or no number at all) gives a
404 page, logged as ``web.call_card_not_found``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from aiohttp import web

from pbx_tracker.web.pages.call_callback import callback_html, callback_lines, sees_history
from pbx_tracker.web.pages.call_facts import OTHER_CALLS, CallFacts, call_facts, call_id_of
from pbx_tracker.web.pages.call_record import manager_name, moment, number_text, record_html
from pbx_tracker.web.pages.call_timeline import call_lines, routing_html, timeline_html
from pbx_tracker.web.pages.calls import REASONS, SPAM_REASONS
from pbx_tracker.web.pages.common import PAGES, Pages, html_response, signed_in, to_login
from pbx_tracker.web.pages.layout import csrf_field, layout, problem_page
from pbx_tracker.web.pages.layout import escape as _e
from pbx_tracker.web.roles import SPAM_ROLES
from pbx_tracker.web.settings import WebUser

__all__ = ["add_call_card_routes", "call_card_html"]

log = structlog.get_logger(__name__)

MAX_LOGGED = 40  # characters of a refused id in the log


async def call_card(request: web.Request) -> web.Response:
    current = await signed_in(request)
    if current is None:
        return to_login(request)
    session, user = current
    pages = request.app[PAGES]
    text = request.match_info["call_id"]
    facts, call_id = None, call_id_of(text)
    if call_id is not None:
        async with pages.engine.connect() as conn:
            facts = await call_facts(conn, call_id)
    if facts is None:
        log.warning("web.call_card_not_found", user=user.name, call=text[:MAX_LOGGED])
        why = "There is no call with this number. It may have been typed wrong."
        return html_response(problem_page("No such call", why, user=user, csrf=session.csrf), 404)
    flash = await pages.sessions.take_flash(session)  # e.g. what "Spam" did
    page = call_card_html(facts, user=user, csrf=session.csrf, pages=pages, flash=flash)
    return html_response(page)


def add_call_card_routes(app: web.Application) -> None:
    app.router.add_get(r"/calls/{call_id}", call_card)


# --- HTML -----------------------------------------------------------------------------------


def _heading(call: Any, pages: Pages) -> str:
    answered = call.status == "answered"
    status = "answered" if answered else "missed"
    spam = ""
    if call.spam:
        reason = SPAM_REASONS.get(call.spam_reason or "manual", call.spam_reason or "")
        spam = (
            '<span class="badge badge-spam" title="Left out of leads and callbacks">'
            f'Spam · <span class="spam-reason">{_e(reason)}</span></span>'
        )
    caller = number_text(call.caller, pages.region) or "Hidden number"
    name = f'<span class="card-name">{_e(call.caller_name)}</span>' if call.caller_name else ""
    return (
        f'<div class="heading card-heading"><h1>Call #{int(call.id)}</h1>'
        f'<span class="badge badge-{status}">{status.capitalize()}</span>{spam}</div>'
        f'<p class="card-caller"><span class="caller">{_e(caller)}</span>{name}'
        f'<span class="card-when">{_e(moment(call.started_at, pages, day=True))}</span></p>'
    )


def _spam_button(call: Any, user: WebUser, csrf: str) -> str:
    """ "Spam" / "Not spam" for those who may mark calls; the answer comes back here."""
    if user.role not in SPAM_ROLES:
        return ""
    action, label = ("not-spam", "Not spam") if call.spam else ("spam", "Spam")
    return (
        f'<form class="spam-form card-spam" method="post" '
        f'action="/calls/{int(call.id)}/{action}">{csrf_field(csrf)}'
        '<input type="hidden" name="to" value="card">'
        f'<button class="btn btn-quiet btn-spam" type="submit">{label}</button></form>'
    )


def _player(call: Any) -> str:
    if not call.recording_path:
        return ""
    call_id = int(call.id)
    return (
        '<section class="card card-part" aria-labelledby="recording-title">'
        '<h2 id="recording-title">Recording</h2>'
        f'<audio class="player card-player" id="player" controls preload="metadata" '
        f'src="/recordings/{call_id}" aria-label="The recording of call {call_id}"></audio>'
        f'<p><a class="muted" href="/recordings/{call_id}">Open the recording</a></p></section>'
    )


def _other_item(row: Any, pages: Pages) -> str:
    answered = row.status == "answered"
    if answered:
        what = f"answered by {manager_name(row.answered_by, pages.managers)}".strip()
        what = "answered" if what == "answered by" else what
    else:
        reason = REASONS.get(row.missed_reason or "", row.missed_reason or "")
        what = f"missed: {reason}" if reason else "missed"
    extras = [
        row.source or "no source",
        "spam" if row.spam else "",
        "recorded" if row.recording_path else "",
    ]
    meta = "".join(f'<span class="meta-item">{_e(item)}</span>' for item in extras if item)
    return (
        f'<li class="other other-{"answered" if answered else "missed"}">'
        f'<a class="other-link" href="/calls/{int(row.id)}">#{int(row.id)} · '
        f"{_e(moment(row.started_at, pages, day=True))}</a>"
        f'<span class="other-what">{_e(what)}</span><div class="meta">{meta}</div></li>'
    )


def _others(call: Any, rows: Iterable[Any], pages: Pages) -> str:
    rows = list(rows)
    if not call.caller:
        inner = '<p class="muted">A hidden number: its other calls cannot be told apart.</p>'
    elif not rows:
        inner = '<p class="muted" id="others-none">No other calls from this number.</p>'
    else:
        items = "".join(_other_item(row, pages) for row in rows)
        more = f'<p class="muted">The newest {OTHER_CALLS}.</p>' if len(rows) >= OTHER_CALLS else ""
        inner = f'<ol class="others" id="others">{items}</ol>{more}'
    return (
        '<section class="card card-part" aria-labelledby="others-title">'
        f'<h2 id="others-title">Other calls from this number</h2>{inner}</section>'
    )


def call_card_html(
    facts: CallFacts, *, user: WebUser, csrf: str, pages: Pages, flash: str | None = None
) -> str:
    call = facts.call
    lines = call_lines(call, facts.attempts, pages)
    if facts.task is not None and sees_history(user, facts.task):
        lines += callback_lines(facts.task, facts.events, pages.managers)
    toast = f'<p class="alert alert-info" role="status" id="flash">{_e(flash)}</p>' if flash else ""
    body = (
        f'<p class="back"><a href="/calls">← Calls</a></p>{toast}'
        f"{_heading(call, pages)}{_spam_button(call, user, csrf)}{_player(call)}"
        '<div class="card-grid">'
        f"{timeline_html(lines, pages, call.started_at)}{record_html(call, pages)}"
        f"{routing_html(call.variables)}{callback_html(facts.task, user, pages)}"
        f"{_others(call, facts.others, pages)}</div>"
    )
    return layout(f"Calls · #{int(call.id)}", body, user=user, csrf=csrf, wide=True)
