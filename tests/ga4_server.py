"""A GA4 Measurement Protocol stand-in on loopback: records each request (its query and
JSON body) and answers from a script, then 204 (what GA4 answers)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from servers import serving_app


@dataclass
class Collector:
    url: str = ""
    answers: list[int] = field(default_factory=list)
    seen: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((dict(request.query), json.loads(await request.read())))
        return web.Response(status=self.answers.pop(0) if self.answers else 204)


@asynccontextmanager
async def serving() -> AsyncIterator[Collector]:
    collector = Collector()
    app = web.Application()
    app.router.add_post("/mp/collect", collector.handle)
    async with serving_app(app) as port:
        collector.url = f"http://127.0.0.1:{port}/mp/collect"
        yield collector
