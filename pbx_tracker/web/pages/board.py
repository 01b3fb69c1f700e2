"""The live board, ``GET /board`` (supervisors, admins): the floor now and the day so far.

- ``GET /board``: the page; ``?tv=1`` the same without the header, in large
  type for a wall screen (and a "Full screen" button);
- ``GET /board/events``: the board's document as Server-Sent Events: the
  current one at once, then each new one within a second of the AMI event that
  changed it, a comment every 15 seconds to keep proxies from closing the
  stream, ``retry: 3000`` so the browser comes back 3 s after the daemon went
  away (`/static/board.js` also reconnects by itself when the browser gives up);
- ``GET /board.json``: the current document, for scripts and wall screens of
  one's own.

The document is built by `pbx_tracker.board.feed.BoardFeed`, once per change
for every open board.  A stream checks its session again every minute: a user
removed, signed out or no longer a supervisor stops getting it.  At most
`BoardFeed.max_boards` streams are open at once; more get 503.
"""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from pbx_tracker.board.feed import BoardFeed, BoardsFull
from pbx_tracker.web.pages.common import (
    HEADERS,
    html_response,
    signed_in,
    static_file,
    with_role,
)
from pbx_tracker.web.pages.layout import layout
from pbx_tracker.web.roles import BOARD_ROLES

__all__ = ["BOARD", "add_board_routes", "board_html"]

log = structlog.get_logger(__name__)

BOARD = web.AppKey("board", BoardFeed)
KEEP_ALIVE = 15.0  # seconds between comments on a quiet stream
CHECK_SESSION = 60.0  # seconds between two looks at a stream's session
RETRY_MS = 3000
BECAUSE = "The live board is for supervisors."
STREAM_HEADERS = {
    **HEADERS,
    "Content-Type": "text/event-stream",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


async def board_page(request: web.Request) -> web.Response:
    allowed = await with_role(request, BOARD_ROLES, BECAUSE)
    if isinstance(allowed, web.Response):
        return allowed
    session, user = allowed
    tv = request.query.get("tv") == "1"
    return html_response(board_html(user=user, csrf=session.csrf, tv=tv))


async def board_json(request: web.Request) -> web.Response:
    allowed = await with_role(request, BOARD_ROLES, BECAUSE)
    if isinstance(allowed, web.Response):
        return allowed
    feed = request.app[BOARD]
    if not feed.boards:  # nobody watches, so nothing is kept current: read it now
        await feed.read_day_now()
        feed.build()
    return web.Response(body=feed.document, content_type="application/json", headers=HEADERS)


async def board_events(request: web.Request) -> web.StreamResponse:
    allowed = await with_role(request, BOARD_ROLES, BECAUSE)
    if isinstance(allowed, web.Response):
        return allowed
    feed = request.app[BOARD]
    try:
        watcher = feed.watch()
    except BoardsFull:
        log.warning("web.boards_full", boards=feed.boards, user=allowed[1].name)
        headers = {**HEADERS, "Retry-After": "30"}
        return web.Response(status=503, text="Too many boards are open.\n", headers=headers)
    response = web.StreamResponse(headers=STREAM_HEADERS)
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        checked = time.monotonic()
        while not feed.closed:
            document = await watcher.next(KEEP_ALIVE)
            if document is not None:
                await response.write(b"data: " + document + b"\n\n")
            elif not feed.closed:
                await response.write(b": still here\n\n")
            if time.monotonic() - checked >= CHECK_SESSION:
                if not await _still_allowed(request):
                    break
                checked = time.monotonic()
    except ConnectionError:
        pass  # the browser went away
    finally:
        feed.forget(watcher)
    return response


async def _still_allowed(request: web.Request) -> bool:
    current = await signed_in(request)
    return current is not None and current[1].role in BOARD_ROLES


def add_board_routes(app: web.Application, feed: BoardFeed) -> None:
    app[BOARD] = feed
    app.router.add_get("/board", board_page)
    app.router.add_get("/board/events", board_events)
    app.router.add_get("/board.json", board_json)
    app.router.add_get("/static/board.js", static_file("board.js", "application/javascript"))
    app.router.add_get("/static/board.css", static_file("board.css", "text/css"))


# --- HTML -------------------------------------------------------------------------------


def board_html(*, user: object, csrf: str, tv: bool = False) -> str:
    """The page's frame; `/static/board.js` fills it from the stream (no reload)."""
    tv_link = (
        '<a class="btn btn-quiet" href="/board">Leave wall screen</a>'
        '<button class="btn btn-quiet" type="button" id="board-fullscreen">Full screen</button>'
        if tv
        else '<a class="btn btn-quiet" href="/board?tv=1">Wall screen</a>'
    )
    body = (
        f'<div id="board" class="board" data-tv="{"1" if tv else "0"}" aria-live="off">'
        '<div class="heading"><h1>Live board</h1>'
        f'<div class="board-tools"><span id="board-link" class="board-link" role="status">'
        f"Connecting…</span>{tv_link}</div></div>"
        '<section class="board-today" aria-label="Today so far"><h2>Today so far</h2>'
        '<dl id="board-today" class="kpis"></dl></section>'
        '<section aria-label="Managers"><h2>Managers</h2>'
        '<ul id="board-managers" class="managers"></ul></section>'
        '<section aria-label="Callers waiting"><h2>Callers waiting '
        '<span id="board-waiting-count" class="count"></span></h2>'
        '<ul id="board-waiting" class="waiting"></ul></section>'
        "<noscript><p>The live board needs JavaScript.</p></noscript>"
        "</div>"
        '<link rel="stylesheet" href="/static/board.css">'
        '<script defer src="/static/board.js"></script>'
    )
    return layout("Board", body, user=user, csrf=csrf, wide=True)
