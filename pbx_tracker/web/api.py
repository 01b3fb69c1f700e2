"""The public visits API the website's snippet talks to, as an aiohttp application.

Routes (all answers JSON):

- ``POST /api/v1/visits``: start a visit, or resume the visitor's live one; the
  number to show (E.164 and formatted for people) and the visit id;
- ``POST /api/v1/visits/{visit_id}/keep-alive``: the page is still open;
- ``GET /api/v1/openapi.json``: the OpenAPI 3.1 description, built from the
  same models the handlers validate with;
- ``GET /healthz``: the daemon's parts (database, AMI, FastAGI, CEL recovery)
  and its self-check's problems; 503 while AMI or the database is down
  (`pbx_tracker.web.health`).

A visit from a known bot (User-Agent of a crawler, headless browser or HTTP
library: `clients.is_bot`) or from a browser that says automation drives it
(``webdriver: true``, sent by the snippet) is answered with the fallback and
no pool number (`NumberPool.static_number_for_bots`).

Every error is ``{"error": "...", "detail": [...]}``: 400 (bad JSON, invalid
field, named in ``detail[].loc``), 403 (an ``Origin`` that is not a configured
site), 404 (unknown pool or visit), 413 (body too large), 415 (not JSON), 429
(rate limit, or too many live visits from one client or its network, with
``Retry-After``), 500
(logged, no traceback shown).  CORS answers only the configured origins, never ``*``.

The handlers call a `VisitPool` (`pbx_tracker.attribution.visit_pool`):
`MemoryVisitPool` keeps one number pool in memory with the real
`PoolAllocator`; the daemon serves its pools from the database
(`configured_pools.VisitPools` of `stored_pool.StoredVisitPool`).  The errors,
CORS and the rate limit are the middleware's (`pbx_tracker.web.middleware`);
the app factory is `pbx_tracker.web.app.make_app`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError

from pbx_tracker.attribution.status import PoolStatus
from pbx_tracker.attribution.visit_pool import (
    VISIT_ID,
    VISIT_ID_PATTERN,
    KeepAliveAnswer,
    TooManyVisits,
    UnknownPool,
    VisitAnswer,
    VisitPool,
    VisitStart,
)
from pbx_tracker.web.clients import client_key, is_bot
from pbx_tracker.web.health import HealthAnswer, healthz
from pbx_tracker.web.middleware import API_PREFIX, SETTINGS, STATS, ApiError, Handler
from pbx_tracker.web.models import ErrorAnswer, ErrorDetail, PoolStatusAnswer
from pbx_tracker.web.openapi import Operation, Parameter, Response, build_document
from pbx_tracker.web.snippet import SNIPPET_OPERATIONS

__all__ = ["OPERATIONS", "PoolStatusSource", "add_api_routes", "openapi_document"]

log = structlog.get_logger(__name__)

PREFLIGHT_MAX_AGE = 600


def _validation_error(error: ValidationError) -> ApiError:
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    detail = [ErrorDetail(loc=list(p["loc"]), msg=p["msg"], type=p["type"]) for p in problems]
    if any(p["type"] == "json_invalid" for p in problems):
        return ApiError(400, "invalid JSON", detail)
    return ApiError(400, "invalid request", detail)


POOL = web.AppKey("pool", VisitPool)
OPENAPI = web.AppKey("openapi", dict[str, Any])
PoolStatusSource = Callable[[], Awaitable[list[PoolStatus]]]
POOL_STATUS = web.AppKey[PoolStatusSource | None]("pool_status")
METRICS = web.AppKey[CollectorRegistry | None]("metrics")


async def _json_body(request: web.Request) -> bytes:
    """The raw JSON body: 415 unless JSON, 413 when larger than allowed."""
    if request.content_type != "application/json":
        raise ApiError(415, "request body must be application/json")
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    return await request.read()


async def start_visit(request: web.Request) -> web.Response:
    try:
        visit = VisitStart.model_validate_json(await _json_body(request))
    except ValidationError as error:
        raise _validation_error(error) from None
    client = client_key(request, request.app[SETTINGS].trust_proxy)
    bot = visit.webdriver is True or is_bot(request.headers.get("User-Agent"))
    try:
        answer = await request.app[POOL].start(visit, client, bot=bot)
    except UnknownPool:
        problem = ErrorDetail(loc=["pool"], msg="unknown pool", type="unknown_pool")
        raise ApiError(404, "unknown pool", [problem]) from None
    except TooManyVisits as error:
        headers = {"Retry-After": str(error.retry_after)}
        raise ApiError(429, str(error), headers=headers) from None
    request.app[STATS].visits_started += 1
    return web.json_response(answer.model_dump(mode="json"))


async def keep_alive(request: web.Request) -> web.Response:
    visit_id = request.match_info["visit_id"]
    client = client_key(request, request.app[SETTINGS].trust_proxy)
    answer = None
    if VISIT_ID.fullmatch(visit_id):
        answer = await request.app[POOL].keep_alive(visit_id, client)
    if answer is None:
        raise ApiError(404, "unknown or expired visit")
    request.app[STATS].keep_alives += 1
    return web.json_response(answer.model_dump(mode="json"))


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight; the `cors` middleware has already refused foreign origins."""
    if "Origin" not in request.headers:
        raise ApiError(400, "a CORS preflight needs an Origin header")
    headers = {
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
    }
    return web.Response(status=204, headers=headers)


def _authorize(request: web.Request) -> None:
    """401 unless ``Authorization: Bearer <http.status_token>``."""
    token = request.app[SETTINGS].status_token
    if token is None:
        raise ApiError(404, "off: set http.status_token")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        log.warning("web.status_refused", client=request.remote, path=request.path)
        challenge = {"WWW-Authenticate": "Bearer"}
        raise ApiError(401, "a valid bearer token is needed", headers=challenge)


async def pool_status_json(request: web.Request) -> web.Response:
    """Each pool's use and attribution; needs ``Authorization: Bearer <status_token>``."""
    token = request.app[SETTINGS].status_token
    status = request.app[POOL_STATUS]
    if token is None or status is None:
        raise ApiError(404, "pool status is off (set http.status_token)")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        log.warning("web.status_refused", client=request.remote)
        raise ApiError(
            401, "a valid bearer token is needed", headers={"WWW-Authenticate": "Bearer"}
        )
    answer = PoolStatusAnswer(pools=await status())
    return web.json_response(answer.model_dump(mode="json"))


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; the same bearer token as the pool status."""
    registry = request.app[METRICS]
    if registry is None:
        raise ApiError(404, "metrics are off (set http.status_token)")
    _authorize(request)
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


# --- routes and their description -------------------------------------------------

_VISITS = f"{API_PREFIX}/visits"
_KEEP_ALIVE = f"{API_PREFIX}/visits/{{visit_id}}/keep-alive"
_BAD = Response("Invalid JSON or an invalid field (named in detail[].loc)", ErrorAnswer)
_FORBIDDEN = Response("The Origin header names a site that is not configured", ErrorAnswer)
_LIMITED = Response(
    "Too many requests (or live visits) from this client or its network",
    ErrorAnswer,
    {"Retry-After": "Seconds to wait"},
)
_TOO_LARGE = Response("Request body too large", ErrorAnswer)
_NOT_JSON = Response("Request body is not application/json", ErrorAnswer)

OPERATIONS: tuple[tuple[Operation, Handler], ...] = (
    (
        Operation(
            "POST",
            _VISITS,
            "startVisit",
            "Start a visit, or resume the visitor's live one: the number to show",
            {
                200: Response("The number to show and the visit id", VisitAnswer),
                400: _BAD,
                404: Response("No pool of that name", ErrorAnswer),
                403: _FORBIDDEN,
                413: _TOO_LARGE,
                415: _NOT_JSON,
                429: _LIMITED,
            },
            request=VisitStart,
        ),
        start_visit,
    ),
    (
        Operation(
            "POST",
            _KEEP_ALIVE,
            "keepAlive",
            "The page is still open: keep the visit's number",
            {
                200: Response("The visit goes on", KeepAliveAnswer),
                403: _FORBIDDEN,
                404: Response("Unknown or expired visit", ErrorAnswer),
                429: _LIMITED,
            },
            parameters=(
                Parameter(
                    "visit_id",
                    "The visit id from startVisit",
                    {"type": "string", "pattern": VISIT_ID_PATTERN},
                ),
            ),
        ),
        keep_alive,
    ),
    (
        Operation(
            "GET",
            f"{API_PREFIX}/pools/status",
            "poolStatus",
            "Each number pool's use, exhaustion, attribution and recommended size "
            "(Authorization: Bearer <http.status_token>)",
            {
                200: Response("The pools' figures", PoolStatusAnswer),
                401: Response("No or a wrong bearer token", ErrorAnswer),
                404: Response("Pool status is off: no http.status_token", ErrorAnswer),
                429: _LIMITED,
            },
        ),
        pool_status_json,
    ),
    (
        Operation(
            "GET",
            "/metrics",
            "metrics",
            "Prometheus metrics (Authorization: Bearer <http.status_token>)",
            {
                200: Response("Prometheus text format"),
                401: Response("No or a wrong bearer token", ErrorAnswer),
                404: Response("Metrics are off: no http.status_token", ErrorAnswer),
            },
        ),
        metrics,
    ),
    (
        Operation(
            "GET",
            f"{API_PREFIX}/openapi.json",
            "openapi",
            "This description",
            {200: Response("The OpenAPI 3.1 document"), 429: _LIMITED},
        ),
        openapi_json,
    ),
    (
        Operation(
            "GET",
            "/healthz",
            "health",
            "Health: each part's state and the config problems found against Asterisk",
            {
                200: Response("Up (status ok, or degraded: a problem to fix)", HealthAnswer),
                503: Response("AMI or the database is down", HealthAnswer),
            },
        ),
        healthz,
    ),
)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route (preflights aside)."""
    operations = [operation for operation, _ in OPERATIONS] + list(SNIPPET_OPERATIONS)
    return build_document(operations, title="pbx-tracker visits API", version="1")


def add_api_routes(
    app: web.Application,
    pool: VisitPool,
    *,
    pool_status: PoolStatusSource | None = None,
    metrics: CollectorRegistry | None = None,
) -> None:
    """The API's routes (and their CORS preflights) on ``app``, answered by ``pool``;
    the pool status with ``pool_status``, ``/metrics`` with ``metrics``."""
    app[POOL] = pool
    app[OPENAPI] = openapi_document()
    app[POOL_STATUS] = pool_status
    app[METRICS] = metrics
    for operation, handler in OPERATIONS:
        app.router.add_route(operation.method, operation.path, handler)
    app.router.add_route("OPTIONS", _VISITS, preflight)
    app.router.add_route("OPTIONS", _KEEP_ALIVE, preflight)
