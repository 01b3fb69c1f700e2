"""The calls list, ``GET /calls``: anyone signed in may open it.

The list shows the inbound calls of a period (default: today in the reports'
zone, ``routing.timezone`` or the machine's), newest first, 50 a page, filtered
by the query string (`pbx_tracker.web.pages.filters`, which also finds them).
A bad value is refused with 400 and logged (which filter, the value cut short);
no call is shown then.  Values go into SQL only as bound parameters.

Each row shows the caller's name under their number when their phone sent one
(CallerIDName; not when it is only the number again), the call's id (``#12``,
what ``pbx-tracker spam mark`` takes), a
"Spam" badge with the reason on spam calls and, for managers and admins, a
"Spam" / "Not spam" button (`pbx_tracker.web.pages.spam`).  A call a manager
answered on an external number (their mobile, by follow-me or forwarding) shows
that number under the manager; one answered by a phone or number no manager
declared shows "answered: " and it.  A call's recording is
`pbx_tracker.web.pages.recordings`; "Play" opens a player in a row under the call
(``/static/pages.js``), so the columns keep their widths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web

from pbx_tracker.phones import display_number, is_dialable
from pbx_tracker.web.pages.common import PAGES, Pages, html_response, signed_in, to_login
from pbx_tracker.web.pages.filters import (
    MAX_LOGGED,
    PER_PAGE,
    CallFilters,
    FilterError,
    find_calls,
    known_sources,
    local_today,
    parse_filters,
)
from pbx_tracker.web.pages.layout import csrf_field, layout, plural
from pbx_tracker.web.pages.layout import escape as _e
from pbx_tracker.web.roles import SPAM_ROLES

__all__ = ["add_calls_routes", "call_row", "calls_html", "shown_caller_name"]

log = structlog.get_logger(__name__)


REASONS = {
    "no_answer": "no answer",
    "abandoned": "caller hung up",
    "busy": "busy",
    "unavailable": "nobody available",
    "failed": "failed",
}
SPAM_REASONS = {
    "blocked": "blocked number",
    "hidden": "hidden number",
    "repeat": "repeat calls",
    "manual": "marked by hand",
}
MARKERS = SPAM_ROLES  # who may mark calls as spam


# --- what a row shows -----------------------------------------------------------------------


def _duration(seconds: int | None) -> str:
    whole = max(0, int(seconds or 0))
    return f"{whole // 60}:{whole % 60:02d}"


def _answerer(row: Any, pages: Pages) -> dict[str, str]:
    """Who answered: the manager ("Anna Petrova (101)") and the external number they
    answered on ("on 8 (916) 000-01-03"), or the phone or number no manager declared."""
    number = row.answered_number or ""
    if is_dialable(number):
        number = display_number(number, pages.region)
    manager = row.answered_by or ""
    if not manager:
        return {"manager": "", "answered_on": "", "answered_other": number}
    if manager in pages.managers:
        manager = f"{pages.managers[manager]} ({manager})"
    on = f"on {number}" if number and row.answered_via == "number" else ""
    return {"manager": manager, "answered_on": on, "answered_other": ""}


def shown_caller_name(name: str | None, number: str | None) -> str:
    """The caller's name as their phone sent it (CallerIDName); empty when there is none
    or it is only the number again."""
    name = (name or "").strip()
    digits = "".join(char for char in name if char.isdigit())
    if not name or (digits and digits == "".join(c for c in number or "" if c.isdigit())):
        return ""
    return name


def call_row(row: Any, pages: Pages, *, with_date: bool) -> dict[str, Any]:
    """What one call shows, ready to print."""
    started = row.started_at.astimezone(pages.rules.zone)
    answered = row.status == "answered"
    reason = REASONS.get(row.missed_reason or "", row.missed_reason or "")
    return {
        "id": int(row.id),
        "time": f"{started:%H:%M}",
        "date": f"{started:%a %d %b}" if with_date else "",
        "when": f"{started:%Y-%m-%d %H:%M:%S %Z}".strip(),
        "caller": display_number(row.caller, pages.region) if row.caller else "Hidden number",
        "caller_name": shown_caller_name(row.caller_name, row.caller),
        "did": display_number(row.did, pages.region) if row.did else "",
        "source": row.credited_source or "no source",
        "campaign": row.credited_campaign or "",
        "keyword": row.utm_term or "",
        "status": "answered" if answered else "missed",
        "status_text": "Answered" if answered else "Missed",
        "reason": "" if answered else reason,
        **_answerer(row, pages),
        "ring": _duration(row.ring_seconds),
        "talk": _duration(row.talk_seconds) if answered else "",
        "recording": bool(row.recording_path),
        "inbound": row.direction == "inbound",
        "spam": SPAM_REASONS.get(row.spam_reason or "manual", row.spam_reason) if row.spam else "",
    }


# --- the page -------------------------------------------------------------------------------


async def calls_page(request: web.Request) -> web.Response:
    current = await signed_in(request)
    if current is None:
        return to_login(request)
    session, user = current
    pages = request.app[PAGES]
    today = local_today(pages)
    flash = await pages.sessions.take_flash(session)
    try:
        filters = parse_filters(request.query, today)
    except FilterError as error:
        value = request.query.get(error.field, "")
        log.warning(
            "web.filter_refused", user=user.name, field=error.field, value=value[:MAX_LOGGED]
        )
        shown = {k: v for k, v in request.query.items() if k != error.field}
        try:
            fallback = parse_filters(shown, today)
        except FilterError:
            fallback = CallFilters(today, today)
        page = calls_html(
            user=user,
            csrf=session.csrf,
            filters=fallback,
            rows=[],
            total=0,
            sources=[],
            managers=pages.managers,
            error=f"{error} Nothing was searched.",
        )
        return html_response(page, 400)
    async with pages.engine.connect() as conn:
        found, total = await find_calls(conn, filters, pages)
        sources = await known_sources(conn, filters, pages)
    several_days = filters.first != filters.last
    rows = [call_row(row, pages, with_date=several_days) for row in found]
    page = calls_html(
        user=user,
        csrf=session.csrf,
        filters=filters,
        rows=rows,
        total=total,
        sources=sources,
        managers=pages.managers,
        flash=flash,
    )
    return html_response(page)


def add_calls_routes(app: web.Application) -> None:
    app.router.add_get("/calls", calls_page)


# --- HTML -----------------------------------------------------------------------------------


def _options(values: list[tuple[str, str]], chosen: str | None) -> str:
    return "".join(
        f'<option value="{_e(value)}"{" selected" if value == (chosen or "") else ""}>'
        f"{_e(label)}</option>"
        for value, label in values
    )


def _filters_form(filters: CallFilters, sources: list[str], managers: Mapping[str, str]) -> str:
    statuses = [("", "Any"), ("answered", "Answered"), ("missed", "Missed")]
    people = [("", "Anyone")] + [(ext, f"{name} ({ext})") for ext, name in managers.items()]
    if filters.manager and filters.manager not in managers:
        people.append((filters.manager, filters.manager))
    suggestions = "".join(f'<option value="{_e(source)}">' for source in sources)
    return (
        '<form class="filters card" method="get" action="/calls" role="search">'
        f'<label>From<input type="date" name="from" value="{filters.first}"></label>'
        f'<label>To<input type="date" name="to" value="{filters.last}"></label>'
        '<label>Source<input name="source" list="sources" maxlength="64" '
        f'value="{_e(filters.source or "")}" placeholder="any" autocomplete="off"></label>'
        f'<datalist id="sources">{suggestions}</datalist>'
        f'<label>Status<select name="status">{_options(statuses, filters.status)}</select>'
        "</label>"
        f'<label>Manager<select name="manager">{_options(people, filters.manager)}</select>'
        "</label>"
        '<label>Caller<input name="caller" inputmode="tel" maxlength="24" '
        f'value="{_e(filters.caller or "")}" placeholder="digits"></label>'
        '<label>Tracked number<input name="did" inputmode="tel" maxlength="24" '
        f'value="{_e(filters.did or "")}" placeholder="digits"></label>'
        '<div class="filter-actions"><button class="btn btn-brand" type="submit">Show</button>'
        '<a class="btn btn-quiet" href="/calls">Today</a></div></form>'
    )


def _spam_badge(row: Mapping[str, Any]) -> str:
    if not row["spam"]:
        return ""
    return (
        '<span class="badge badge-spam" title="Left out of leads and callbacks">'
        f'Spam · <span class="spam-reason">{_e(row["spam"])}</span></span>'
    )


def _spam_button(row: Mapping[str, Any], marking: tuple[str, str] | None) -> str:
    """The "Spam" / "Not spam" form of an inbound call (``marking``: csrf, back query)."""
    if marking is None or not row["inbound"]:
        return ""
    csrf, back = marking
    action, label = ("not-spam", "Not spam") if row["spam"] else ("spam", "Spam")
    return (
        f'<form class="spam-form" method="post" action="/calls/{row["id"]}/{action}">'
        f'{csrf_field(csrf)}<input type="hidden" name="back" value="{_e(back)}">'
        f'<button class="btn btn-quiet btn-spam" type="submit" '
        f'aria-label="{label}: call {row["id"]}">{label}</button></form>'
    )


def _manager_cell(row: Mapping[str, Any]) -> str:
    """The manager who answered (and the external number they answered on, under the
    name), else "answered: " and the phone or number no manager declared, else "—"."""
    if row["manager"]:
        on = ""
        if row["answered_on"]:
            on = (
                '<span class="answered-on" title="Answered on an external number: '
                f'follow-me or call forwarding">{_e(row["answered_on"])}</span>'
            )
        return f'<td class="c-manager">{_e(row["manager"])}{on}</td>'
    if row["answered_other"]:
        return (
            '<td class="c-manager" title="No manager declared this phone or number">'
            f'answered: <span class="answered-number">{_e(row["answered_other"])}</span></td>'
        )
    return '<td class="c-manager is-none">—</td>'


def _call_item(row: Mapping[str, Any], marking: tuple[str, str] | None = None) -> str:
    campaign = ""
    if row["campaign"]:  # cut short on screen (pages.css); the whole name in its title
        whole = _e(row["campaign"])
        campaign = f'<span class="meta-item campaign" title="{whole}">{whole}</span>'
    keyword = ""
    if row["keyword"]:
        keyword = f'<span class="meta-item keyword">“{_e(row["keyword"])}”</span>'
    reason = f' <span class="reason">{_e(row["reason"])}</span>' if row["reason"] else ""
    talk = f'<span class="talk">talk {_e(row["talk"])}</span>' if row["talk"] else ""
    play = ""
    if row["recording"]:
        play = (
            f'<a class="btn btn-play" href="/recordings/{row["id"]}" data-play '
            f'aria-label="Play the recording of call {row["id"]}">Play</a>'
        )
    date_part = f'<span class="call-date">{_e(row["date"])}</span>' if row["date"] else ""
    name = ""
    if row["caller_name"]:
        shown = _e(row["caller_name"])
        name = f'<span class="caller-name" title="{shown}">{shown}</span>'
    spam = " is-spam" if row["spam"] else ""
    return (
        f'<tr class="call call-{_e(row["status"])}{spam}" id="call-{row["id"]}" '
        f'data-id="{row["id"]}">'
        f'<td class="c-time" title="{_e(row["when"])}">{date_part}'
        f'<span class="call-time">{_e(row["time"])}</span>'
        f'<a class="call-id" href="/calls/{row["id"]}" title="Open the call card">'
        f"#{row['id']}</a></td>"
        f'<td class="c-caller"><span class="caller">{_e(row["caller"])}</span>{name}'
        f'<span class="did">to {_e(row["did"]) or "—"}</span></td>'
        f'<td class="c-source"><div class="meta"><span class="meta-item source" '
        f'title="{_e(row["source"])}">{_e(row["source"])}'
        f"</span>{campaign}{keyword}</div></td>"
        f'<td class="c-status"><span class="badge badge-{_e(row["status"])}">'
        f"{_e(row['status_text'])}</span>{reason}{_spam_badge(row)}</td>"
        f"{_manager_cell(row)}"
        f'<td class="c-times"><span class="ring">ring {_e(row["ring"])}</span>{talk}</td>'
        f'<td class="c-play">{play}</td>'
        f'<td class="c-spam">{_spam_button(row, marking)}</td></tr>'
    )


def _pager(filters: CallFilters, total: int) -> str:
    if total <= PER_PAGE:
        return ""
    last_page = (total + PER_PAGE - 1) // PER_PAGE
    newer = older = ""
    if filters.page > 1:
        back = _e(filters.query(page=filters.page - 1))
        newer = f'<a class="btn btn-quiet" rel="prev" href="/calls?{back}">← Newer</a>'
    if filters.page < last_page:
        on = _e(filters.query(page=filters.page + 1))
        older = f'<a class="btn btn-quiet" rel="next" href="/calls?{on}">Older →</a>'
    return (
        f'<nav class="pager" aria-label="Pages of calls">{newer}'
        f'<span class="pager-at">Page {filters.page} of {last_page}</span>{older}</nav>'
    )


def calls_html(
    *,
    user: Any,
    csrf: str,
    filters: CallFilters,
    rows: list[dict[str, Any]],
    total: int,
    sources: list[str],
    managers: Mapping[str, str],
    error: str | None = None,
    flash: str | None = None,
) -> str:
    alert = f'<p class="alert alert-error" role="alert">{_e(error)}</p>' if error else ""
    if flash:
        alert += f'<p class="alert alert-info" role="status" id="flash">{_e(flash)}</p>'
    marking = (csrf, filters.query()) if user.role in MARKERS else None
    first = (filters.page - 1) * PER_PAGE + 1
    if filters.first == filters.last:
        period = f"{filters.first:%a %d %b %Y}"
    else:
        period = f"{filters.first:%d %b %Y} &ndash; {filters.last:%d %b %Y}"
    count = plural(total, "call")
    shown = f"{first}&ndash;{first + len(rows) - 1} of {count}" if total > len(rows) else count
    summary = "" if error else f'<p class="summary" id="summary">{period}: {shown}</p>'
    table = ""
    if rows:
        items = "".join(_call_item(row, marking) for row in rows)
        table = (
            '<div class="table-wrap"><table class="calls" id="calls"><thead><tr>'
            '<th scope="col">Time</th><th scope="col">Caller</th>'
            '<th scope="col">Source</th><th scope="col">Status</th>'
            '<th scope="col">Manager</th><th scope="col">Ring / talk</th>'
            '<th scope="col"><span class="sr-only">Recording</span></th>'
            '<th scope="col"><span class="sr-only">Spam</span></th>'
            f"</tr></thead><tbody>{items}</tbody></table></div>"
        )
    elif not error:
        table = '<p class="empty" id="empty">No calls match. Try a longer period.</p>'
    body = (
        '<div class="heading"><h1>Calls</h1></div>'
        f"{_filters_form(filters, sources, managers)}{alert}{summary}{table}"
        f"{_pager(filters, total)}"
    )
    return layout("Calls", body, user=user, csrf=csrf, wide=True)
