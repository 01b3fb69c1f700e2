"""The daemon's HTTP server: one aiohttp application for everything it serves.

`make_app` puts together the public visits API (`pbx_tracker.web.api`, with
``/healthz``, ``/metrics`` and the OpenAPI document), the website's snippet
``/tracker.js`` and the demo landing page (`pbx_tracker.web.snippet`), and the
pages for people (`pbx_tracker.web.pages`), behind the middleware
(`pbx_tracker.web.middleware`: errors as JSON, CORS, the rate limit).
`HttpServer` runs it inside the daemon's loop; signals are left to the daemon.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from pbx_tracker.attribution.visit_pool import VisitPool
from pbx_tracker.board.feed import BoardFeed
from pbx_tracker.web.api import PoolStatusSource, add_api_routes
from pbx_tracker.web.health import HEALTH, Health
from pbx_tracker.web.limits import RateLimiter
from pbx_tracker.web.middleware import LIMITER, MIDDLEWARES, SETTINGS, STATS, ApiStats
from pbx_tracker.web.pages import Pages, add_page_routes
from pbx_tracker.web.pages.board import add_board_routes
from pbx_tracker.web.settings import HttpSettings
from pbx_tracker.web.snippet import LandingPage, add_snippet_routes

__all__ = ["HttpServer", "make_app"]

log = structlog.get_logger(__name__)


def make_app(
    settings: HttpSettings,
    pool: VisitPool,
    *,
    clock: Callable[[], float] | None = None,
    landing: LandingPage | None = None,
    pool_status: PoolStatusSource | None = None,
    metrics: CollectorRegistry | None = None,
    pages: Pages | None = None,
    health: Health | None = None,
    board: BoardFeed | None = None,
) -> web.Application:
    """The application; ``clock`` (monotonic seconds) drives the rate limiter; the
    snippet ``/tracker.js`` always, and the demo page ``/demo/`` with ``landing``;
    the pages for people (login, callbacks) with ``pages``; ``/healthz`` tells the
    daemon's parts with ``health``; the live board ``/board`` with ``pages`` and ``board``."""
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=settings.max_body_bytes)
    limit = settings.rate_limit
    limiter = (
        RateLimiter(limit.per_minute, limit.burst)
        if clock is None
        else RateLimiter(limit.per_minute, limit.burst, clock=clock)
    )
    app[SETTINGS] = settings
    app[LIMITER] = limiter
    app[STATS] = ApiStats()
    app[HEALTH] = health
    add_api_routes(app, pool, pool_status=pool_status, metrics=metrics)
    add_snippet_routes(app, landing=landing)
    if pages is not None:
        add_page_routes(app, pages)
        if board is not None:
            add_board_routes(app, board)
    return app


class HttpServer:
    """The API on ``settings.host:settings.port`` inside the running loop; signals are
    left to the daemon.  ``port`` is the bound port once started (``settings.port`` may
    be 0)."""

    def __init__(
        self,
        settings: HttpSettings,
        pool: VisitPool,
        *,
        clock: Callable[[], float] | None = None,
        landing: LandingPage | None = None,
        pool_status: PoolStatusSource | None = None,
        metrics: CollectorRegistry | None = None,
        pages: Pages | None = None,
        health: Health | None = None,
        board: BoardFeed | None = None,
    ) -> None:
        self.settings = settings
        self.app = make_app(
            settings,
            pool,
            clock=clock,
            landing=landing,
            pool_status=pool_status,
            metrics=metrics,
            pages=pages,
            health=health,
            board=board,
        )
        self.board = board
        self.port = settings.port
        self._runner: web.AppRunner | None = None

    @property
    def stats(self) -> ApiStats:
        return self.app[STATS]

    async def start(self) -> None:
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.host, self.settings.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("web.listening", host=self.settings.host, port=self.port)

    async def stop(self) -> None:
        """Stop serving; the boards' streams end first (their browsers come back later)."""
        if self.board is not None:
            self.board.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("web.stopped", port=self.port)
