"""The pages' HTML: small functions returning escaped strings, no template engine.

Every value from the database or the user goes through `_e` (HTML escaping,
quotes included).  The pages load one stylesheet and one script from
``/static/`` (no inline script or style: the Content-Security-Policy allows none).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "callbacks_page",
    "csrf_field",
    "escape",
    "home_page",
    "layout",
    "login_page",
    "nav_links",
    "problem_page",
]

APP = "pbx-tracker"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _csrf(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{_e(token)}">'


escape = _e
csrf_field = _csrf


# The header's links: (path, label, roles that may open it).
NAV = (
    ("/callbacks", "Callbacks", ("manager", "admin")),
    ("/calls", "Calls", ("manager", "marketer", "admin")),
    ("/reports", "Reports", ("marketer", "admin")),
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
            f'<form method="post" action="/logout">{_csrf(csrf)}'
            '<button class="btn btn-quiet" type="submit">Log out</button></form></div>'
        )
    main = "main main-wide" if wide else "main"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · {APP}</title>"
        '<link rel="stylesheet" href="/static/pages.css">'
        '<script defer src="/static/pages.js"></script></head><body>'
        f'<header class="top"><a class="brand" href="/">{APP}</a>{bar}</header>'
        f'<main class="{main}">{body}</main></body></html>'
    )


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
        f'{_csrf(csrf)}<input type="hidden" name="next" value="{_e(next_path)}">'
        '<label>Name<input name="name" autocomplete="username" required autofocus '
        f'value="{_e(name)}" autocapitalize="none" spellcheck="false"></label>'
        '<label>Password<input name="password" type="password" '
        'autocomplete="current-password" required></label>'
        '<button class="btn btn-primary btn-wide" type="submit">Sign in</button>'
        "</form></section>"
    )
    return layout("Sign in", body)


def problem_page(title: str, text: str, *, user: Any = None, csrf: str = "") -> str:
    body = (
        f'<section class="card problem"><h1>{_e(title)}</h1><p>{_e(text)}</p>'
        '<p><a class="btn btn-quiet" href="/">Back to the start</a></p></section>'
    )
    return layout(title, body, user=user, csrf=csrf)


def home_page(*, user: Any, csrf: str) -> str:
    about = {
        "/callbacks": "Missed calls waiting for a call back.",
        "/calls": "Every call: who, from which ad, answered or not; play the recordings.",
        "/reports": "Calls, leads and their cost by source, with charts and CSV.",
    }
    cards = "".join(
        f'<li><a class="tile" href="{path}"><span class="tile-title">{label}</span>'
        f'<span class="tile-text">{_e(about[path])}</span></a></li>'
        for path, label in nav_links(user.role)
    )
    body = f'<h1>Hello, {_e(user.name)}</h1><ul class="tiles">{cards}</ul>'
    return layout("Start", body, user=user, csrf=csrf)


def task_item(row: Mapping[str, Any], csrf: str) -> str:
    """One open callback; mirrors ``row()`` in static/pages.js."""
    task_id = int(row["id"])
    details = [row["source"], row["tries"], row["did"], row["assignee"]]
    meta = "".join(f'<span class="meta-item">{_e(item)}</span>' for item in details if item)
    call = ""
    if row["can_call"]:
        call = _action(task_id, "call", "Call now", "btn-primary", csrf)
    done = _action(task_id, "done", "Done", "btn-done", csrf)
    return (
        f'<li class="task" id="task-{task_id}" data-id="{task_id}">'
        f'<div class="task-main"><div class="customer">{_e(row["customer"])}</div>'
        f'<div class="meta">{meta}</div></div>'
        f'<div class="age age-{_e(row["urgency"])}" title="{_e(row["since"])}">'
        f"{_e(row['age'])}</div>"
        f'<div class="actions">{call}{done}</div></li>'
    )


def _action(task_id: int, action: str, label: str, style: str, csrf: str) -> str:
    return (
        f'<form method="post" action="/callbacks/{task_id}/{action}" data-ajax>'
        f'{_csrf(csrf)}<button class="btn {style}" type="submit">{_e(label)}</button></form>'
    )


def callbacks_page(
    *, user: Any, csrf: str, rows: Iterable[Mapping[str, Any]], flash: str | None, poll: float
) -> str:
    rows = list(rows)
    items = "".join(task_item(row, csrf) for row in rows)
    whose = "All open callbacks" if user.role == "admin" else "Your callbacks"
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
