"""Signing in and out: ``GET /login``, ``POST /login``, ``POST /logout``.

A wrong name or password gives the form again with 401 (one text for both);
too many failures from one client 429 with ``Retry-After``
(`pbx_tracker.web.sessions.LoginThrottle`).  The form carries the token of its
own cookie (double submit: no session yet); without it: 403, logged.
"""

from __future__ import annotations

import asyncio
import secrets
from functools import cache
from urllib.parse import quote, unquote, urlsplit

import structlog
from aiohttp import web

from pbx_tracker.web.auth import hash_password, same_token, verify_password
from pbx_tracker.web.pages.common import (
    EXPIRED_FORM,
    HEADERS,
    PAGES,
    SESSION_COOKIE,
    Pages,
    checked_post,
    client_of,
    form_text,
    html_response,
    redirect,
    signed_in,
    wants_json,
)
from pbx_tracker.web.pages.layout import csrf_field, layout, problem_page
from pbx_tracker.web.pages.layout import escape as _e
from pbx_tracker.web.users import password_stamp

__all__ = ["add_login_routes", "login_page", "safe_next"]

log = structlog.get_logger(__name__)

LOGIN_COOKIE = "pbx_login"  # the login form's CSRF token (double submit: no session yet)
WRONG_LOGIN = "Wrong name or password."
MAX_LOGGED_NAME = 64


@cache
def _dummy_hash() -> str:
    """Checked for unknown names: "no such user" takes as long as a wrong password."""
    return hash_password("not a password of anyone")


_VISIBLE_ASCII = "".join(chr(code) for code in range(0x21, 0x7F))


def safe_next(value: str | None) -> str:
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


async def login_form(request: web.Request) -> web.Response:
    if not await request.app[PAGES].users.any():
        return _nobody_yet()
    if await signed_in(request) is not None:
        return redirect(safe_next(request.query.get("next")))
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
    next_path = safe_next(request.query.get("next"))
    page = login_page(csrf=token, next_path=next_path, name=name, error=error, notice=notice)
    response = html_response(page, status, headers)
    _set_cookie(response, pages, LOGIN_COOKIE, token)
    return response


def _nobody_yet() -> web.Response:
    text = (
        "No one can sign in yet. Add a user on the server: "
        "pbx-tracker web user add NAME --role admin"
    )
    return html_response(problem_page("No users yet", text), 404)


def _new_token() -> str:
    return secrets.token_urlsafe(32)


async def login(request: web.Request) -> web.Response:
    pages = request.app[PAGES]
    client = client_of(request)
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    if not same_token(form_text(form.get("csrf")), request.cookies.get(LOGIN_COOKIE, "")):
        log.warning("web.csrf_refused", path=request.path, client=client)
        text = "The sign-in form was open too long. Reload the page and sign in again."
        return html_response(problem_page(EXPIRED_FORM, text), 403)
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
    response = redirect(safe_next(str(form.get("next", ""))))
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
    current = await signed_in(request)
    if current is None:
        return redirect("/login")
    session, user = current
    refused = await checked_post(request, session, user)
    if refused is not None:
        return refused
    await request.app[PAGES].sessions.drop(session.id)
    log.info("web.logout", user=user.name)
    if wants_json(request):
        response = web.json_response({"ok": True, "message": "Signed out."}, headers=HEADERS)
    else:
        response = redirect("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def add_login_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)


# --- HTML -----------------------------------------------------------------------------------


def login_page(
    *,
    csrf: str,
    next_path: str,
    name: str = "",
    error: str | None = None,
    notice: str | None = None,
) -> str:
    message = ""
    if error:
        message = f'<p class="alert alert-error" role="alert">{_e(error)}</p>'
    elif notice:
        message = f'<p class="alert alert-info" role="status">{_e(notice)}</p>'
    body = (
        '<section class="card login">'
        "<h1>Sign in</h1>"
        f"{message}"
        '<form method="post" action="/login" class="stack">'
        f'{csrf_field(csrf)}<input type="hidden" name="next" value="{_e(next_path)}">'
        '<label>Name<input name="name" autocomplete="username" required autofocus '
        f'value="{_e(name)}" autocapitalize="none" spellcheck="false"></label>'
        '<label>Password<input name="password" type="password" '
        'autocomplete="current-password" required></label>'
        '<button class="btn btn-primary btn-wide" type="submit">Sign in</button>'
        "</form></section>"
    )
    return layout("Sign in", body)
