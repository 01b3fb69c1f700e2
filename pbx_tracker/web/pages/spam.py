"""The calls page's "Spam" / "Not spam" buttons (``POST /calls/{call_id}/spam|not-spam``).

Managers and admins may press them; a marketer gets 403.  Every POST needs
the session's CSRF token.  The change is `pbx_tracker.spam.marking`: marking
closes a callback task left with only spam calls, undoing lets a missed call
open or join its customer's callback task.  Each change is logged (who, which
call, from what to what); the answer is 303 back to the same filtered list,
the outcome shown once, or ``{"ok", "message"}`` JSON when the request asks
for JSON (`pbx_tracker.web.pages.common.outcome`, as every button).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import structlog
from aiohttp import web

from pbx_tracker.spam import marking
from pbx_tracker.web.pages.call_facts import call_id_of
from pbx_tracker.web.pages.common import (
    PAGES,
    Pages,
    form_text,
    outcome,
    posted_with_role,
)
from pbx_tracker.web.pages.filters import FilterError, local_today, parse_filters
from pbx_tracker.web.roles import SPAM_ROLES

__all__ = ["add_spam_routes"]

log = structlog.get_logger(__name__)

MAX_BACK = 1000


async def mark(request: web.Request) -> web.Response:
    return await _change(request, spam=True)


async def unmark(request: web.Request) -> web.Response:
    return await _change(request, spam=False)


async def _change(request: web.Request, *, spam: bool) -> web.Response:
    allowed = await posted_with_role(request, SPAM_ROLES, "Only managers and admins mark spam.")
    if isinstance(allowed, web.Response):
        return allowed
    session, user = allowed
    pages = request.app[PAGES]
    form = await request.post()
    back = _back(form_text(form.get("back")), pages)
    call_id = call_id_of(request.match_info["call_id"])
    if call_id is None:
        return await outcome(request, session, False, "There is no such call.", back)
    from_card = form_text(form.get("to")) == "card"  # sent from the call's card: back to it
    back = f"/calls/{call_id}" if from_card else f"{back}#call-{call_id}"
    ok, message = await _apply(pages, call_id, spam=spam, by=user.name)
    return await outcome(request, session, ok, message, back)


async def _apply(pages: Pages, call_id: int, *, spam: bool, by: str) -> tuple[bool, str]:
    """Mark or unmark the call; the outcome for the user (and the log line)."""
    try:
        async with pages.engine.begin() as conn:
            if spam:
                change = await marking.mark_spam(
                    conn, call_id, by=by, now=pages.now(), crm_targets=pages.crm_targets
                )
            else:
                change = await marking.undo_spam(
                    conn,
                    call_id,
                    by=by,
                    now=pages.now(),
                    callbacks=pages.callbacks,
                    crm_targets=pages.crm_targets,
                )
    except marking.SpamError as error:
        log.info("web.spam_refused", user=by, call=call_id, reason=str(error))
        return False, f"Not changed: {error}."
    now = change.call.spam
    log.info(
        "web.spam_changed",
        user=by,
        call=call_id,
        was=change.was.value if change.was else "not spam",
        now=now.value if now else "not spam",
        closed_tasks=list(change.closed_tasks),
        task=change.task.task_id if change.task else None,
    )
    if spam:
        closed = " Its callback is closed." if change.closed_tasks else ""
        return True, f"Call {call_id} is marked as spam.{closed}"
    opened = " It is in the callbacks now." if change.task is not None else ""
    return True, f"Call {call_id} is no spam any more.{opened}"


def _back(query: str | None, pages: Pages) -> str:
    """The calls list with the filters it was sent from (only filters it accepts)."""
    if not query or len(query) > MAX_BACK:
        return "/calls"
    try:
        filters = parse_filters(dict(parse_qsl(query)), local_today(pages))
    except FilterError:
        return "/calls"
    shown = filters.query()
    return f"/calls?{shown}" if shown else "/calls"


def add_spam_routes(app: web.Application) -> None:
    app.router.add_post(r"/calls/{call_id}/spam", mark)
    app.router.add_post(r"/calls/{call_id}/not-spam", unmark)
