"""What every page shares: `Pages` (what the pages need), who is asking, and the answers.

- `signed_in`: the session and its user (looked up again on every request);
  `with_role` / `posted_with_role`: the same when the user's role may open the
  page (and, for a form, it carries the session's CSRF token), else the way to
  the login page or 403 (logged);
- `html_response`, `redirect` with the pages' security headers (`HEADERS`);
  `outcome`: the one answer of every button (a POST action): JSON
  ``{"ok", "message"}`` when the request asks for JSON (`wants_json`), else the
  message shown once and 303 back to the page;
- `static_file`: ``/static/pages.css`` and ``/static/pages.js``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from urllib.parse import quote

import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks.ringme import RingMe
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.web.auth import same_token
from pbx_tracker.web.clients import client_key
from pbx_tracker.web.middleware import SETTINGS, Handler
from pbx_tracker.web.pages.layout import problem_page
from pbx_tracker.web.roles import CALLBACK_ROLES
from pbx_tracker.web.sessions import LoginThrottle, Session, SessionStore
from pbx_tracker.web.settings import WebSettings, WebUser
from pbx_tracker.web.users import Users, password_stamp

__all__ = [
    "EXPIRED_FORM",
    "HEADERS",
    "MANAGER_ROLES",
    "PAGES",
    "SESSION_COOKIE",
    "Pages",
    "checked_post",
    "client_of",
    "forbidden",
    "form_text",
    "html_response",
    "outcome",
    "posted_with_role",
    "redirect",
    "signed_in",
    "static_file",
    "to_login",
    "wants_json",
    "with_role",
]

log = structlog.get_logger(__name__)

SESSION_COOKIE = "pbx_session"

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

EXPIRED_FORM = "This form has expired"  # the title of a refused CSRF token's page

MANAGER_ROLES = CALLBACK_ROLES  # who works the callbacks


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
        crm_targets: Sequence[str] = (),
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
        self.crm_targets = tuple(crm_targets)  # the CRMs told when a manager marks spam
        self.users = Users(settings, engine)
        self.sessions = SessionStore(engine, settings.session_minutes * 60.0, clock=clock)
        self.throttle = LoginThrottle(engine, clock=clock)


PAGES = web.AppKey("pages", Pages)


@cache
def asset(name: str) -> bytes:
    return (files("pbx_tracker.web") / "static" / name).read_bytes()


# --- answers ----------------------------------------------------------------------------


def html_response(
    text: str, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(HEADERS)
    response.headers.update(headers or {})
    return response


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **HEADERS})


async def outcome(
    request: web.Request, session: Session, ok: bool, message: str, back: str
) -> web.Response:
    """What a button's POST answers: ``{"ok": ..., "message": ...}`` when the request asks
    for JSON, else ``message`` shown once on the page ``back`` leads to (303)."""
    if wants_json(request):
        return web.json_response({"ok": ok, "message": message}, headers=HEADERS)
    await request.app[PAGES].sessions.set_flash(session, message)
    return redirect(back)


def form_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept or request.path.endswith(".json")


def client_of(request: web.Request) -> str:
    return client_key(request, request.app[SETTINGS].trust_proxy)


# --- who is asking ------------------------------------------------------------------------


async def signed_in(request: web.Request) -> tuple[Session, WebUser] | None:
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


def to_login(request: web.Request) -> web.Response:
    expired = "&expired=1" if SESSION_COOKIE in request.cookies else ""
    if wants_json(request):
        return web.json_response({"error": "login needed"}, status=401, headers=HEADERS)
    back = request.path_qs if request.method == "GET" else "/"
    return redirect(f"/login?next={quote(back)}{expired}")


def forbidden(
    request: web.Request, session: Session, user: WebUser, text: str, title: str = "Not for you"
) -> web.Response:
    log.warning("web.forbidden", user=user.name, role=user.role, path=request.path)
    if wants_json(request):
        return web.json_response({"error": text}, status=403, headers=HEADERS)
    page = problem_page(title, text, user=user, csrf=session.csrf)
    return html_response(page, 403)


async def checked_post(
    request: web.Request, session: Session, user: WebUser
) -> web.Response | None:
    """None when the form carries the session's CSRF token; else the 403 answer."""
    form = await request.post()
    if same_token(form_text(form.get("csrf")), session.csrf):
        return None
    log.warning("web.csrf_refused", user=user.name, path=request.path, client=client_of(request))
    text = (
        "The page was open too long, or the form did not come from this site, so nothing "
        "was changed. Reload the page and try again."
    )
    return forbidden(request, session, user, text, title=EXPIRED_FORM)


async def with_role(
    request: web.Request, roles: tuple[str, ...], because: str
) -> tuple[Session, WebUser] | web.Response:
    """The signed-in session and user when the user's role is one of ``roles``; else the
    way to the login page, or 403 (logged) saying ``because``."""
    current = await signed_in(request)
    if current is None:
        return to_login(request)
    session, user = current
    if user.role not in roles:
        return forbidden(request, session, user, because)
    return current


async def posted_with_role(
    request: web.Request, roles: tuple[str, ...], because: str
) -> tuple[Session, WebUser] | web.Response:
    """`with_role`, for a form posted with the session's CSRF token (else 403)."""
    allowed = await with_role(request, roles, because)
    if isinstance(allowed, web.Response):
        return allowed
    refused = await checked_post(request, *allowed)
    return allowed if refused is None else refused


def static_file(name: str, content_type: str) -> Handler:
    async def serve(request: web.Request) -> web.Response:
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        return web.Response(
            body=asset(name), content_type=content_type, charset="utf-8", headers=headers
        )

    return serve
