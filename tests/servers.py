"""Servers started in the test's loop: the daemon's HTTP server as the daemon starts it, and
small aiohttp apps standing in for the services outside (GA4, a CRM, a webhook endpoint, a
company's site)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from pbx_tracker.attribution.visit_pool import NoPools, VisitPool
from pbx_tracker.web.app import HttpServer
from pbx_tracker.web.settings import HttpSettings


@contextlib.asynccontextmanager
async def http_server(
    settings: HttpSettings | None = None, pool: VisitPool | None = None, **parts: Any
) -> AsyncIterator[HttpServer]:
    """The server on a loopback port the system picks (unless ``settings`` say otherwise),
    with ``pool`` (None: no number pools) and ``parts`` (pages, health, landing, clock…),
    listening until the block ends, then stopped."""
    server = HttpServer(
        settings or HttpSettings(port=0), NoPools() if pool is None else pool, **parts
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def serving_app(app: web.Application, **runner_options: Any) -> AsyncIterator[int]:
    """``app`` on 127.0.0.1 and a port the system picks (yielded) until the block ends;
    ``runner_options`` go to aiohttp's AppRunner (e.g. ``handler_cancellation``)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, **runner_options)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
