"""The pages for people, served by the daemon next to the visits API; one module a page.

Routes (HTML unless said otherwise):

- ``GET /``: the start page (`home`);
- ``GET /login``, ``POST /login``: the sign-in form; a wrong name or password
  gives the form again with 401 (one text for both), too many failures from
  one client 429 with ``Retry-After``; ``POST /logout`` (`login`);
- ``GET /callbacks``: a manager's open callback tasks (an admin: everyone's),
  newest first, with "Call now" and "Done"; ``GET /callbacks/tasks.json`` the
  same rows as JSON, which ``/static/pages.js`` polls to keep the list current;
  ``POST /callbacks/{id}/call``: ring the manager's phone, then the customer
  (`RingMe`, the daemon's AMI connection); ``POST /callbacks/{id}/done``: close
  it (`callbacks`);
- ``GET /calls`` (everyone): the calls list (`calls`, its filters `filters`);
  ``GET /calls/{id}``: one call's card, its timeline, routing, recording,
  callback task and the caller's other calls (`call_card`);
  ``GET /recordings/{call_id}``: a call's recording (`recordings`);
  ``POST /calls/{call_id}/spam``, ``POST /calls/{call_id}/not-spam`` (managers,
  admins): mark a call as spam or undo it (`spam`);
- ``GET /reports``, ``GET /reports.csv`` (marketers, admins): the sources report
  with charts (`charts`), and its CSV (`reports`).

What they share (`Pages`, who is asking, the answers) is `common`; the frame
and shared HTML `layout`; the icon is ``/static/favicon.svg`` (also answered at
``/favicon.ico``).  Every POST needs the session's CSRF token (the login
form: the token of its own cookie); without it: 403, logged.  A marketer gets
403 on /callbacks, a manager 403 on another manager's task.  Forms work without
JavaScript (303 back to the list, the outcome shown once); the script posts
them itself and shows the outcome without leaving the page.  One rule for every
POST button: a request that asks for JSON (``Accept: application/json``) gets
``{"ok": ..., "message": ...}``, any other 303 (`common.outcome`).
"""

from __future__ import annotations

from aiohttp import web

from pbx_tracker.web.pages.call_card import add_call_card_routes
from pbx_tracker.web.pages.callbacks import add_callbacks_routes
from pbx_tracker.web.pages.calls import add_calls_routes
from pbx_tracker.web.pages.common import PAGES, Pages, static_file
from pbx_tracker.web.pages.home import add_home_routes
from pbx_tracker.web.pages.login import add_login_routes
from pbx_tracker.web.pages.recordings import add_recordings_routes
from pbx_tracker.web.pages.reports import add_reports_routes
from pbx_tracker.web.pages.spam import add_spam_routes

__all__ = ["PAGES", "Pages", "add_page_routes"]


def add_page_routes(app: web.Application, pages: Pages) -> None:
    """The pages' routes on the daemon's application."""
    app[PAGES] = pages
    add_home_routes(app)
    add_login_routes(app)
    add_callbacks_routes(app)
    add_calls_routes(app)
    add_call_card_routes(app)
    add_recordings_routes(app)
    add_spam_routes(app)
    add_reports_routes(app)
    app.router.add_get("/static/pages.css", static_file("pages.css", "text/css"))
    app.router.add_get("/static/pages.js", static_file("pages.js", "application/javascript"))
    icon = static_file("favicon.svg", "image/svg+xml")
    app.router.add_get("/static/favicon.svg", icon)
    app.router.add_get("/favicon.ico", icon)  # browsers ask for it without a link; the same icon
