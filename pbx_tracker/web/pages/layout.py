"""The pages' frame and shared HTML: small functions returning escaped strings, no
template engine.

Every value from the database or the user goes through `escape` (HTML escaping,
quotes included).  The pages load one stylesheet and one script from
``/static/`` (no inline script or style: the Content-Security-Policy allows none).
Each page's own HTML is in its module (`pbx_tracker.web.pages.calls`, ...).
"""

from __future__ import annotations

import html
from typing import Any

from pbx_tracker.web.roles import BOARD_ROLES, CALLBACK_ROLES, REPORT_ROLES, ROLES

__all__ = ["APP", "NAV", "csrf_field", "escape", "layout", "nav_links", "plural", "problem_page"]

APP = "pbx-tracker"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def csrf_field(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{_e(token)}">'


escape = _e


def plural(count: int, one: str, many: str | None = None) -> str:
    """``1 call``, ``2 calls``, ``0 calls`` (``many``: when adding "s" is wrong)."""
    return f"{count} {one if count == 1 else many or one + 's'}"


# The header's links: (path, label, roles that may open it).
NAV = (
    ("/board", "Board", BOARD_ROLES),
    ("/callbacks", "Callbacks", CALLBACK_ROLES),
    ("/calls", "Calls", ROLES),
    ("/reports", "Reports", REPORT_ROLES),
)


def nav_links(role: str) -> list[tuple[str, str]]:
    """(path, label) of the pages ``role`` may open, in the header's order."""
    return [(path, label) for path, label, roles in NAV if role in roles]


def layout(title: str, body: str, *, user: Any = None, csrf: str = "", wide: bool = False) -> str:
    """The page around ``body``; a header with the pages the user may open, the user and
    "Log out" when logged in.  ``wide``: room for tables and charts."""
    bar = ""
    if user is not None:
        here = ' aria-current="page"'
        links = "".join(
            f'<a class="nav-link" href="{path}"{here if title.startswith(label) else ""}>'
            f"{label}</a>"
            for path, label in nav_links(user.role)
        )
        bar = (
            f'<nav class="nav" aria-label="Pages">{links}</nav>'
            f'<div class="who"><span class="who-name">{_e(user.name)}</span>'
            f'<span class="who-role">{_e(user.role)}</span>'
            f'<form method="post" action="/logout">{csrf_field(csrf)}'
            '<button class="btn btn-quiet" type="submit">Log out</button></form></div>'
        )
    main = "main main-wide" if wide else "main"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · {APP}</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/pages.css">'
        '<script defer src="/static/pages.js"></script></head><body>'
        f'<header class="top"><a class="brand" href="/">{APP}</a>{bar}</header>'
        f'<main class="{main}">{body}</main></body></html>'
    )


def problem_page(title: str, text: str, *, user: Any = None, csrf: str = "") -> str:
    body = (
        f'<section class="card problem"><h1>{_e(title)}</h1><p>{_e(text)}</p>'
        '<p><a class="btn btn-quiet" href="/">Back to the start</a></p></section>'
    )
    return layout(title, body, user=user, csrf=csrf)
