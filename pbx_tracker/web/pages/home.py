"""The start page, ``GET /``: a marketer's tiles of the pages they may open; a
manager or an admin goes to their callbacks."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pbx_tracker.web.pages.common import html_response, redirect, signed_in, to_login
from pbx_tracker.web.pages.layout import escape as _e
from pbx_tracker.web.pages.layout import layout, nav_links

__all__ = ["add_home_routes", "home_page"]


async def home(request: web.Request) -> web.Response:
    current = await signed_in(request)
    if current is None:
        return to_login(request)
    session, user = current
    if user.role == "marketer":
        return html_response(home_page(user=user, csrf=session.csrf))
    return redirect("/callbacks")


def add_home_routes(app: web.Application) -> None:
    app.router.add_get("/", home)


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
