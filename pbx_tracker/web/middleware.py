"""What every request to the daemon's HTTP server goes through, and what the app keeps.

- `cors`: an ``Origin`` that is not a configured site (nor the daemon's own
  pages) is refused with 403 under ``/api/v1``; configured sites may read the
  answers (never ``*``);
- `errors`: every failure as ``{"error": "...", "detail": [...]}`` JSON
  (`ApiError`, aiohttp's own answers such as 404 and 405); unexpected ones are
  logged and shown as 500 without a traceback;
- `rate_limit`: 429 with ``Retry-After`` when a client has used up its requests
  under ``/api/v1``.

``app[SETTINGS]``, ``app[LIMITER]`` and ``app[STATS]`` are set by the app
factory (`pbx_tracker.web.app.make_app`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from aiohttp import web

from pbx_tracker.web.clients import client_key
from pbx_tracker.web.limits import RateLimiter
from pbx_tracker.web.models import ErrorAnswer, ErrorDetail
from pbx_tracker.web.settings import HttpSettings

__all__ = [
    "API_PREFIX",
    "LIMITER",
    "MIDDLEWARES",
    "SETTINGS",
    "STATS",
    "ApiError",
    "ApiStats",
    "Handler",
]

log = structlog.get_logger(__name__)

API_PREFIX = "/api/v1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer with an error status; becomes ``ErrorAnswer`` JSON."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Sequence[ErrorDetail] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = list(detail)
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        body = ErrorAnswer(error=self.error, detail=self.detail).model_dump(mode="json")
        return web.json_response(body, status=self.status, headers=self.headers)


def _from_http(error: web.HTTPException) -> ApiError:
    """aiohttp's own answers (no route, wrong method, body too large) as JSON."""
    headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
    return ApiError(error.status, error.reason.lower(), headers=headers)


@dataclass(slots=True)
class ApiStats:
    """Request counters: started visits, keep-alives, and answers refused or failed."""

    visits_started: int = 0
    keep_alives: int = 0
    rate_limited: int = 0
    rejected: int = 0
    errors: int = 0


SETTINGS = web.AppKey("settings", HttpSettings)
LIMITER = web.AppKey("limiter", RateLimiter)
STATS = web.AppKey("stats", ApiStats)


def _same_origin(request: web.Request, origin: str) -> bool:
    """The daemon's own pages (the demo landing) call the API without being listed."""
    return origin.rstrip("/").lower() == f"{request.scheme}://{request.host}".lower()


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse foreign origins (403); let configured sites read the answers."""
    origin = request.headers.get("Origin")
    if origin is None or not request.path.startswith(API_PREFIX):
        return await handler(request)
    if not (request.app[SETTINGS].allows_origin(origin) or _same_origin(request, origin)):
        request.app[STATS].rejected += 1
        return ApiError(403, "origin not allowed").response()
    response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers.add("Vary", "Origin")
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as ``ErrorAnswer`` JSON; unexpected ones logged, shown as 500."""
    stats = request.app[STATS]
    try:
        return await handler(request)
    except ApiError as error:
        stats.rejected += 1
        return error.response()
    except web.HTTPException as error:
        stats.rejected += 1
        return _from_http(error).response()
    except Exception:
        stats.errors += 1
        log.exception("web.unexpected_error", method=request.method, path=request.path)
        return ApiError(500, "internal error").response()


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """429 with Retry-After when the client has used up its requests."""
    if request.path.startswith(API_PREFIX):
        client = client_key(request, request.app[SETTINGS].trust_proxy)
        wait = request.app[LIMITER].retry_after(client)
        if wait:
            request.app[STATS].rate_limited += 1
            raise ApiError(429, "too many requests", headers={"Retry-After": str(wait)})
    return await handler(request)


MIDDLEWARES = (cors, errors, rate_limit)
