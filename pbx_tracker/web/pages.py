"""The pages for people, served by the daemon next to the visits API.

Routes (HTML unless said otherwise):

- ``GET /login``, ``POST /login``: the sign-in form; a wrong name or password
  gives the form again with 401 (one text for both), too many failures from
  one client 429 with ``Retry-After``;
- ``POST /logout``;
- ``GET /callbacks``: a manager's open callback tasks (an admin's: everyone's),
  newest first, with "Call now" and "Done"; ``GET /callbacks/tasks.json`` the
  same rows as JSON, which ``/static/pages.js`` polls to keep the list current;
- ``POST /callbacks/{id}/call``: ring the manager's phone, then the customer
  (`RingMe`, the daemon's AMI connection); ``POST /callbacks/{id}/done``: close it;
- ``GET /calls`` (everyone), ``GET /recordings/{call_id}``: the calls list and a
  call's recording (`pbx_tracker.web.pages_calls`); ``POST /calls/{call_id}/spam``,
  ``POST /calls/{call_id}/not-spam`` (managers, admins): mark a call as spam or
  undo it (`pbx_tracker.web.pages_spam`);
- ``GET /reports``, ``GET /reports.csv`` (marketers, admins): the sources report
  with charts, and its CSV (`pbx_tracker.web.pages_reports`).

Every POST needs the session's CSRF token (the login form: the token of its own
cookie); without it: 403, logged.  A marketer gets 403 on /callbacks, a
manager 403 on another manager's task.  Forms work without JavaScript (303
back to the list, the outcome shown once); the script posts them itself and
shows the outcome without leaving the page.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.ringme import RingMe, RingMeCall, RingMeRefused
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.phones import display_number
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.web import pages_html
from pbx_tracker.web.api import SETTINGS, client_key
from pbx_tracker.web.auth import hash_password, same_token, verify_password
from pbx_tracker.web.pages_settings import WebSettings, WebUser
from pbx_tracker.web.sessions import LoginThrottle, Session, SessionStore
from pbx_tracker.web.users import Users, password_stamp

__all__ = ["PAGES", "Pages", "add_page_routes"]

log = structlog.get_logger(__name__)

SESSION_COOKIE = "pbx_session"
LOGIN_COOKIE = "pbx_login"  # the login form's CSRF token (double submit: no session yet)
WRONG_LOGIN = "Wrong name or password."
FRESH_MINUTES = 5  # callback speed: within 5 minutes is good, after 30 it is late
LATE_MINUTES = 30
MAX_ROWS = 200
MAX_LOGGED_NAME = 64
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Outcome = tuple[bool, str]  # done?, and what to tell the user
MANAGER_ROLES = ("manager", "admin")  # who works the callbacks and marks spam


class Pages:
    """What the pages need: users, the database, the ring-me sender, clocks.

    ``dial``: the channel string to ring a manager's phone (`RoutingPlan.dial_string`);
    ``clock``: wall-clock seconds for sessions and the login brake (both in the
    database, shared by every daemon: `pbx_tracker.web.sessions`); ``now``: wall time
    for the tasks' ages and the close time; ``recordings_dir``: the only folder
    recordings are played from; ``rules``: the reports' rules and time zone
    (`Settings.report_rules`); ``managers``: extension -> name, to show who answered; ``callbacks``:
    the callback policy a call unmarked as spam goes through."""

    def __init__(
        self,
        settings: WebSettings,
        engine: AsyncEngine,
        *,
        region: str,
        ringme: RingMe | None = None,
        dial: Callable[[str], str] = lambda extension: f"PJSIP/{extension}",
        clock: Callable[[], float] = time.time,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll_seconds: float = 5.0,
        recordings_dir: Path | None = None,
        rules: ReportRules | None = None,
        managers: dict[str, str] | None = None,
        callbacks: CallbackSettings | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.region = region
        self.ringme = ringme
        self.dial = dial
        self.now = now
        self.poll_seconds = poll_seconds
        self.recordings_dir = recordings_dir
        self.rules = rules or ReportRules(
            target_seconds=30, unique_days=None, model="last_touch", sla_minutes=15, zone=None
        )
        self.managers = dict(managers or {})
        self.callbacks = callbacks or CallbackSettings()
        self.users = Users(settings, engine)
        self.sessions = SessionStore(engine, settings.session_minutes * 60.0, clock=clock)
        self.throttle = LoginThrottle(engine, clock=clock)


PAGES = web.AppKey("pages", Pages)


@cache
def _dummy_hash() -> str:
    """Checked for unknown names: "no such user" takes as long as a wrong password."""
    return hash_password("not a password of anyone")


@cache
def _asset(name: str) -> bytes:
    return (files("pbx_tracker.web") / "static" / name).read_bytes()


# --- answers ----------------------------------------------------------------------------


def _html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(HEADERS)
    response.headers.update(headers or {})
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **HEADERS})


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept or request.path.endswith(".json")


def _client(request: web.Request) -> str:
    return client_key(request, request.app[SETTINGS].trust_proxy)


_VISIBLE_ASCII = "".join(chr(code) for code in range(0x21, 0x7F))


def _safe_next(value: str | None) -> str:
    r"""Where to go after signing in: a path on this site only, else ``/``.

    A browser drops tab, CR and LF inside a URL and reads ``\`` as ``/`` (so
    ``/\t/evil.example`` leads to ``//evil.example``), and a header cannot carry a
    line break: any control character, whitespace (Unicode's too), backslash,
    scheme or host, or a second leading slash (also percent-encoded) gives ``/``.
    Letters beyond ASCII are percent-encoded, so the header stays ASCII.
    """
    if not value or not value.startswith("/") or "\\" in value:
        return "/"
    if any(char.isspace() or not char.isprintable() for char in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or unquote(value).startswith(("//", "/\\")):
        return "/"
    return quote(value, safe=_VISIBLE_ASCII)


def _set_cookie(response: web.Response, pages: Pages, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=pages.settings.cookie_secure,
    )


# --- who is asking ------------------------------------------------------------------------


async def _current(request: web.Request) -> tuple[Session, WebUser] | None:
    """The signed-in session and its user, looked up again with it in one read (a removed
    user, or one whose password changed since, is signed out)."""
    pages = request.app[PAGES]
    session = await pages.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    user = pages.users.pick(session.user, session.stored_user)
    if user is None or password_stamp(user) != session.stamp:
        await pages.sessions.drop(session.id)
        return None
    return session, user


def _to_login(request: web.Request) -> web.Response:
    expired = "&expired=1" if SESSION_COOKIE in request.cookies else ""
    if _wants_json(request):
        return web.json_response({"error": "login needed"}, status=401, headers=HEADERS)
    back = request.path_qs if request.method == "GET" else "/"
    return _redirect(f"/login?next={quote(back)}{expired}")


def _forbidden(request: web.Request, session: Session, user: WebUser, text: str) -> web.Response:
    log.warning("web.forbidden", user=user.name, role=user.role, path=request.path)
    if _wants_json(request):
        return web.json_response({"error": text}, status=403, headers=HEADERS)
    page = pages_html.problem_page("Not for you", text, user=user, csrf=session.csrf)
    return _html(page, 403)


async def _checked_post(
    request: web.Request, session: Session, user: WebUser
) -> web.Response | None:
    """None when the form carries the session's CSRF token; else the 403 answer."""
    form = await request.post()
    if same_token(_text(form.get("csrf")), session.csrf):
        return None
    log.warning("web.csrf_refused", user=user.name, path=request.path, client=_client(request))
    text = "The form was out of date or not from this site. Reload the page and try again."
    return _forbidden(request, session, user, text)


# --- signing in and out --------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    if not await request.app[PAGES].users.any():
        return _nobody_yet()
    if await _current(request) is not None:
        return _redirect(_safe_next(request.query.get("next")))
    notice = "Your session ended. Please sign in again." if request.query.get("expired") else None
    return _login_answer(request, notice=notice)


def _login_answer(
    request: web.Request,
    *,
    status: int = 200,
    name: str = "",
    error: str | None = None,
    notice: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    pages = request.app[PAGES]
    token = request.cookies.get(LOGIN_COOKIE) or _new_token()
    next_path = _safe_next(request.query.get("next"))
    page = pages_html.login_page(
        csrf=token, next_path=next_path, name=name, error=error, notice=notice
    )
    response = _html(page, status, headers)
    _set_cookie(response, pages, LOGIN_COOKIE, token)
    return response


def _nobody_yet() -> web.Response:
    text = (
        "No one can sign in yet. Add a user on the server: "
        "pbx-tracker web user add NAME --role admin"
    )
    return _html(pages_html.problem_page("No users yet", text), 404)


def _new_token() -> str:
    return secrets.token_urlsafe(32)


async def login(request: web.Request) -> web.Response:
    pages = request.app[PAGES]
    client = _client(request)
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    if not same_token(_text(form.get("csrf")), request.cookies.get(LOGIN_COOKIE, "")):
        log.warning("web.csrf_refused", path=request.path, client=client)
        text = "The sign-in form was out of date. Reload the page and try again."
        return _html(pages_html.problem_page("Not accepted", text), 403)
    wait = await pages.throttle.retry_after(client)
    if wait:
        return _too_many(request, name, client, wait)
    if not await pages.users.any():
        return _nobody_yet()
    user = await pages.users.find(name)
    stored = user.password_hash if user is not None else _dummy_hash()
    if not await asyncio.to_thread(verify_password, password, stored) or user is None:
        wait = await pages.throttle.failed(client)
        log.warning("web.login_failed", user=name[:MAX_LOGGED_NAME], client=client)
        if wait:
            return _too_many(request, name, client, wait)
        return _login_answer(request, status=401, name=name, error=WRONG_LOGIN)
    await pages.throttle.succeeded(client)
    session = await pages.sessions.create(user.name, password_stamp(user))
    log.info("web.login", user=user.name, role=user.role, client=client)
    response = _redirect(_safe_next(str(form.get("next", ""))))
    _set_cookie(response, pages, SESSION_COOKIE, session.id)
    return response


def _too_many(request: web.Request, name: str, client: str, wait: int) -> web.Response:
    log.warning("web.login_locked", user=name[:MAX_LOGGED_NAME], client=client, seconds=wait)
    minutes = max(1, (wait + 59) // 60)
    error = f"Too many failed sign-ins. Try again in {minutes} min."
    return _login_answer(
        request, status=429, name=name, error=error, headers={"Retry-After": str(wait)}
    )


async def logout(request: web.Request) -> web.Response:
    current = await _current(request)
    if current is None:
        return _redirect("/login")
    session, user = current
    refused = await _checked_post(request, session, user)
    if refused is not None:
        return refused
    await request.app[PAGES].sessions.drop(session.id)
    log.info("web.logout", user=user.name)
    response = _redirect("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def home(request: web.Request) -> web.Response:
    current = await _current(request)
    if current is None:
        return _to_login(request)
    session, user = current
    if user.role == "marketer":
        return _html(pages_html.home_page(user=user, csrf=session.csrf))
    return _redirect("/callbacks")


# --- callbacks -------------------------------------------------------------------------------


async def _with_role(
    request: web.Request, roles: tuple[str, ...], because: str
) -> tuple[Session, WebUser] | web.Response:
    """The signed-in session and user when the user's role is one of ``roles``; else the
    way to the login page, or 403 (logged) saying ``because``."""
    current = await _current(request)
    if current is None:
        return _to_login(request)
    session, user = current
    if user.role not in roles:
        return _forbidden(request, session, user, because)
    return current


async def _manager_only(request: web.Request) -> tuple[Session, WebUser] | web.Response:
    return await _with_role(request, MANAGER_ROLES, "This page is for managers.")


async def _posted_with_role(
    request: web.Request, roles: tuple[str, ...], because: str
) -> tuple[Session, WebUser] | web.Response:
    """`_with_role`, for a form posted with the session's CSRF token (else 403)."""
    allowed = await _with_role(request, roles, because)
    if isinstance(allowed, web.Response):
        return allowed
    refused = await _checked_post(request, *allowed)
    return allowed if refused is None else refused


async def _rows(pages: Pages, user: WebUser) -> list[dict[str, Any]]:
    mine = None if user.role == "admin" else user.extension
    async with pages.engine.connect() as conn:
        found = await tasks.list_tasks(conn, status="open", assignee=mine, limit=MAX_ROWS)
    now = pages.now()
    return [task_row(task, now, pages.region, admin=user.role == "admin") for task in found]


def task_row(
    task: tasks.CallbackTask, now: datetime, region: str, *, admin: bool
) -> dict[str, Any]:
    """What a row shows, ready to print (the page and the JSON use the same)."""
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
        "tries": "1 call" if task.tries == 1 else f"{task.tries} calls",
        "did": f"to {display_number(task.did, region)}" if task.did else "",
        "assignee": f"for {task.assignee}" if admin and task.assignee else "",
        "age": age_text(waited),
        "since": f"first missed {task.first_missed_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        "urgency": urgency,
        "can_call": bool(task.dialable and task.customer),
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
    page = pages_html.callbacks_page(
        user=user,
        csrf=session.csrf,
        rows=rows,
        flash=await pages.sessions.take_flash(session),
        poll=pages.poll_seconds,
    )
    return _html(page)


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
    allowed = await _posted_with_role(request, MANAGER_ROLES, "This page is for managers.")
    if isinstance(allowed, web.Response):
        return allowed
    session, user = allowed
    pages = request.app[PAGES]
    task = await _task(pages, request.match_info["task_id"])
    if task is None:
        ok, message = False, "That callback no longer exists."
    elif user.role != "admin" and task.assignee != user.extension:
        return _forbidden(request, session, user, "That callback belongs to another manager.")
    elif not task.is_open:
        ok, message = False, "That callback is already done."
    else:
        ok, message = await act(pages, user, task)
    if _wants_json(request):
        return web.json_response({"ok": ok, "message": message}, headers=HEADERS)
    await pages.sessions.set_flash(session, message)
    return _redirect("/callbacks")


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
    dial = pages.dial(user.extension).split("&")[0]
    call = RingMeCall(
        task.id, user.extension, dial, task.customer, task.did, task.ringme_attempts + 1
    )
    try:
        await pages.ringme.start(call)
    except RingMeRefused as refused:
        return False, f"Could not call: {refused.reason}."
    async with pages.engine.begin() as conn:
        await tasks.record_ringme_attempt(conn, task.id, at=pages.now(), manager=user.extension)
    log.info("web.callback_call", task=task.id, user=user.name, extension=user.extension)
    shown = display_number(task.customer, pages.region)
    return True, f"Your phone rings now. Pick it up and {shown} is dialled."


async def _done(pages: Pages, user: WebUser, task: tasks.CallbackTask) -> Outcome:
    try:
        async with pages.engine.begin() as conn:
            await tasks.close_task(conn, task.id, by=user.name, now=pages.now())
    except tasks.TaskError:
        return False, "That callback is already done."
    log.info("web.callback_done", task=task.id, user=user.name)
    return True, "Marked as done."


async def call_now(request: web.Request) -> web.Response:
    return await _task_action(request, _call_now)


async def done(request: web.Request) -> web.Response:
    return await _task_action(request, _done)


# --- static files and routes ---------------------------------------------------------------


def _static(name: str, content_type: str) -> Handler:
    async def serve(request: web.Request) -> web.Response:
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        return web.Response(
            body=_asset(name), content_type=content_type, charset="utf-8", headers=headers
        )

    return serve


def add_page_routes(app: web.Application, pages: Pages) -> None:
    """The pages' routes on the daemon's application."""
    from pbx_tracker.web.pages_calls import add_calls_routes  # they import this module
    from pbx_tracker.web.pages_reports import add_reports_routes

    app[PAGES] = pages
    app.router.add_get("/", home)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/callbacks", callbacks_page)
    app.router.add_get("/callbacks/tasks.json", callbacks_json)
    app.router.add_post(r"/callbacks/{task_id}/call", call_now)
    app.router.add_post(r"/callbacks/{task_id}/done", done)
    add_calls_routes(app)
    add_reports_routes(app)
    app.router.add_get("/static/pages.css", _static("pages.css", "text/css"))
    app.router.add_get("/static/pages.js", _static("pages.js", "application/javascript"))
