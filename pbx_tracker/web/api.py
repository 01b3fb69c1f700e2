"""The public visits API the website's snippet talks to, as an aiohttp application.

Routes (all answers JSON):

- ``POST /api/v1/visits``: start a visit, or resume the visitor's live one; the
  number to show (E.164 and formatted for people) and the visit id;
- ``POST /api/v1/visits/{visit_id}/keep-alive``: the page is still open;
- ``GET /api/v1/openapi.json``: the OpenAPI 3.1 description, built from the
  same models the handlers validate with;
- ``GET /healthz``: ``{"status": "ok"}``.

Every error is ``{"error": "...", "detail": [...]}``: 400 (bad JSON, invalid
field, named in ``detail[].loc``), 403 (an ``Origin`` that is not a configured
site), 404, 413 (body too large), 415 (not JSON), 429 (rate limit or too many
live visits from one client, with ``Retry-After``), 500 (logged, no traceback
shown).  CORS answers only the configured origins, never ``*``.

The handlers call a `VisitPool`; `MemoryVisitPool` keeps one number pool in
memory with the real `PoolAllocator` (the database-backed pool comes later).
"""

from __future__ import annotations

import re
import secrets
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Annotated, Any, Protocol

import structlog
from aiohttp import web
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationError,
)

from pbx_tracker.attribution.pool import PoolAllocator
from pbx_tracker.phones import display_number
from pbx_tracker.web.limits import RateLimiter
from pbx_tracker.web.openapi import Operation, Parameter, Response, build_document
from pbx_tracker.web.settings import HttpSettings

__all__ = [
    "API_PREFIX",
    "ApiStats",
    "ErrorAnswer",
    "ErrorDetail",
    "HttpServer",
    "KeepAliveAnswer",
    "MemoryVisitPool",
    "TooManyVisits",
    "UnknownPool",
    "VisitAnswer",
    "VisitPool",
    "VisitStart",
    "client_key",
    "make_app",
    "openapi_document",
]

log = structlog.get_logger(__name__)

API_PREFIX = "/api/v1"
PREFLIGHT_MAX_AGE = 600
VISIT_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
_VISIT_ID = re.compile(VISIT_ID_PATTERN)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Clock = Callable[[], datetime]


# --- models -----------------------------------------------------------------


def _blank_is_none(value: Any) -> Any:
    """``document.referrer`` is "" when there is none."""
    return None if value == "" else value


_NAME = StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
Name = Annotated[str, _NAME]
Url = Annotated[HttpUrl, Field(max_length=2048)]
OptionalUrl = Annotated[Url | None, BeforeValidator(_blank_is_none)]
Tag = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
ClickId = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9._~-]+$")
]
GaClientId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9.]+$")
]
YmClientId = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^\d+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VisitStart(_Model):
    """A page asks which number to show: where it is, where the visitor came from."""

    pool: Name | None = None
    visitor_id: Name | None = None
    page: Url
    referrer: OptionalUrl = None
    utm_source: Tag | None = None
    utm_medium: Tag | None = None
    utm_campaign: Tag | None = None
    utm_term: Tag | None = None
    utm_content: Tag | None = None
    gclid: ClickId | None = None
    yclid: ClickId | None = None
    fbclid: ClickId | None = None
    ga_client_id: GaClientId | None = None
    ym_client_id: YmClientId | None = None


class VisitAnswer(_Model):
    """The number to show; ``fallback``: the pool is exhausted, ``display`` is the fallback's.

    ``keep_alive_seconds``: how often the page should send a keep-alive.
    """

    visit_id: str
    number: str | None
    display: str
    fallback: bool
    keep_alive_seconds: int


class KeepAliveAnswer(_Model):
    """The visit goes on; its number is held ``expires_in`` seconds past now."""

    visit_id: str
    number: str | None
    display: str
    expires_in: int


class HealthAnswer(_Model):
    status: str


class ErrorDetail(_Model):
    """One problem: where (``loc``, e.g. ``["utm_source"]``), what, and its kind."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorAnswer(_Model):
    error: str
    detail: list[ErrorDetail] = Field(default_factory=list)


# --- the pool the handlers call ------------------------------------------------


class UnknownPool(Exception):
    """The request names a pool this server does not have."""


class TooManyVisits(Exception):
    """The client already holds as many live visits as it may."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many live visits from this client")
        self.retry_after = retry_after


class VisitPool(Protocol):
    """What the handlers need from a number pool."""

    async def start(self, request: VisitStart, client: str) -> VisitAnswer:
        """Start a visit or resume the visitor's live one; raises `UnknownPool`,
        `TooManyVisits`."""
        ...

    async def keep_alive(self, visit_id: str, client: str) -> KeepAliveAnswer | None:
        """Extend a live visit; None when the visit is unknown or has expired."""
        ...


@dataclass(slots=True)
class _LiveVisit:
    visit_id: str
    client: str
    visitor_id: str | None
    number: str | None
    last_seen: datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MemoryVisitPool:
    """One number pool in memory: visits live while kept alive and ``hold_seconds`` after.

    A visit with no number (pool exhausted) shows ``fallback`` and stays so.  A client
    holds at most ``max_visits_per_client`` live visits.  The last number of each of
    the ``remembered_visitors`` most recent visitors is kept for their return.
    """

    def __init__(
        self,
        numbers: Sequence[str],
        *,
        fallback: str,
        name: str = "default",
        region: str = "RU",
        hold_seconds: float = 1800.0,
        quarantine_seconds: float = 0.0,
        max_visits_per_client: int = 5,
        remembered_visitors: int = 10_000,
        clock: Clock = _utc_now,
    ) -> None:
        if max_visits_per_client < 1 or remembered_visitors < 1:
            raise ValueError("max_visits_per_client and remembered_visitors must be positive")
        self.allocator = PoolAllocator(
            numbers, hold_seconds=hold_seconds, quarantine_seconds=quarantine_seconds
        )
        self.name = name
        self.fallback = fallback
        self.region = region
        self.max_visits_per_client = max_visits_per_client
        self._remembered = remembered_visitors
        self._clock = clock
        self._visits: OrderedDict[str, _LiveVisit] = OrderedDict()
        self._by_visitor: dict[str, str] = {}
        self._per_client: Counter[str] = Counter()
        self._last_number: OrderedDict[str, str] = OrderedDict()

    @property
    def live_visits(self) -> int:
        return len(self._visits)

    async def start(self, request: VisitStart, client: str) -> VisitAnswer:
        now = self._tick()
        if request.pool is not None and request.pool != self.name:
            raise UnknownPool(request.pool)
        resumed = self._resume(request.visitor_id, client, now)
        if resumed is not None:
            return self._answer(resumed)
        if self._per_client[client] >= self.max_visits_per_client:
            raise TooManyVisits(retry_after=self._hold_seconds)
        visit_id = secrets.token_urlsafe(16)
        previous = self._last_number.get(request.visitor_id) if request.visitor_id else None
        assignment = self.allocator.assign(visit_id, now, previous)
        visit = _LiveVisit(visit_id, client, request.visitor_id, assignment.number, now)
        self._add(visit)
        log.debug("visit.started", visit_id=visit_id, number=visit.number, client=client)
        return self._answer(visit)

    async def keep_alive(self, visit_id: str, client: str) -> KeepAliveAnswer | None:
        now = self._tick()
        visit = self._visits.get(visit_id)
        if visit is None:
            return None
        if visit.number is not None and self.allocator.keep_alive(visit_id, now) is None:
            self._drop(visit)
            return None
        self._touch(visit, now)
        display = display_number(visit.number or self.fallback, self.region)
        return KeepAliveAnswer(
            visit_id=visit_id, number=visit.number, display=display, expires_in=self._hold_seconds
        )

    # internals

    @property
    def _hold_seconds(self) -> int:
        return int(self.allocator.hold.total_seconds())

    def _tick(self) -> datetime:
        """The time now; ends the visits whose hold ran out."""
        now = self._clock()
        self.allocator.expire(now)
        while self._visits:
            oldest = next(iter(self._visits.values()))
            if oldest.last_seen + self.allocator.hold > now:
                break
            self._drop(oldest)
        return now

    def _resume(self, visitor_id: str | None, client: str, now: datetime) -> _LiveVisit | None:
        visit = self._visits.get(self._by_visitor.get(visitor_id, "")) if visitor_id else None
        if visit is None or visit.client != client:
            return None
        if visit.number is not None:
            self.allocator.assign(visit.visit_id, now)
        self._touch(visit, now)
        return visit

    def _add(self, visit: _LiveVisit) -> None:
        self._visits[visit.visit_id] = visit
        self._per_client[visit.client] += 1
        if visit.visitor_id is None:
            return
        self._by_visitor[visit.visitor_id] = visit.visit_id
        if visit.number is not None:
            self._last_number[visit.visitor_id] = visit.number
            self._last_number.move_to_end(visit.visitor_id)
            while len(self._last_number) > self._remembered:
                self._last_number.popitem(last=False)

    def _touch(self, visit: _LiveVisit, now: datetime) -> None:
        visit.last_seen = max(now, visit.last_seen)
        self._visits.move_to_end(visit.visit_id)

    def _drop(self, visit: _LiveVisit) -> None:
        del self._visits[visit.visit_id]
        self._per_client[visit.client] -= 1
        if self._per_client[visit.client] <= 0:
            del self._per_client[visit.client]
        if visit.visitor_id and self._by_visitor.get(visit.visitor_id) == visit.visit_id:
            del self._by_visitor[visit.visitor_id]

    def _answer(self, visit: _LiveVisit) -> VisitAnswer:
        return VisitAnswer(
            visit_id=visit.visit_id,
            number=visit.number,
            display=display_number(visit.number or self.fallback, self.region),
            fallback=visit.number is None,
            keep_alive_seconds=max(5, self._hold_seconds // 3),
        )


# --- errors -------------------------------------------------------------------


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


def _validation_error(error: ValidationError) -> ApiError:
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    detail = [ErrorDetail(loc=list(p["loc"]), msg=p["msg"], type=p["type"]) for p in problems]
    if any(p["type"] == "json_invalid" for p in problems):
        return ApiError(400, "invalid JSON", detail)
    return ApiError(400, "invalid request", detail)


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


# --- the application ------------------------------------------------------------

SETTINGS = web.AppKey("settings", HttpSettings)
POOL = web.AppKey("pool", VisitPool)
LIMITER = web.AppKey("limiter", RateLimiter)
STATS = web.AppKey("stats", ApiStats)
OPENAPI = web.AppKey("openapi", dict[str, Any])


def client_key(request: web.Request, trust_proxy: bool) -> str:
    """Who is asking: the peer address, or the address our proxy appended to
    X-Forwarded-For (the last entry) when ``trust_proxy``.  IPv6 clients count per /64."""
    address = request.remote or ""
    if trust_proxy:
        hops = [
            hop.strip()
            for value in request.headers.getall("X-Forwarded-For", ())
            for hop in value.split(",")
        ]
        if hops and hops[-1]:
            address = hops[-1]
    try:
        ip = ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is None:
        return str(ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, IPv6Address) else str(ip)


@web.middleware
async def _cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse foreign origins (403); let configured sites read the answers."""
    origin = request.headers.get("Origin")
    if origin is None or not request.path.startswith(API_PREFIX):
        return await handler(request)
    if not request.app[SETTINGS].allows_origin(origin):
        request.app[STATS].rejected += 1
        return ApiError(403, "origin not allowed").response()
    response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers.add("Vary", "Origin")
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
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
        log.exception("http.unexpected_error", method=request.method, path=request.path)
        return ApiError(500, "internal error").response()


@web.middleware
async def _rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """429 with Retry-After when the client has used up its requests."""
    if request.path.startswith(API_PREFIX):
        client = client_key(request, request.app[SETTINGS].trust_proxy)
        wait = request.app[LIMITER].retry_after(client)
        if wait:
            request.app[STATS].rate_limited += 1
            raise ApiError(429, "too many requests", headers={"Retry-After": str(wait)})
    return await handler(request)


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
    try:
        answer = await request.app[POOL].start(visit, client)
    except UnknownPool:
        problem = ErrorDetail(loc=["pool"], msg="unknown pool", type="unknown_pool")
        raise ApiError(400, "invalid request", [problem]) from None
    except TooManyVisits as error:
        headers = {"Retry-After": str(error.retry_after)}
        raise ApiError(429, str(error), headers=headers) from None
    request.app[STATS].visits_started += 1
    return web.json_response(answer.model_dump(mode="json"))


async def keep_alive(request: web.Request) -> web.Response:
    visit_id = request.match_info["visit_id"]
    client = client_key(request, request.app[SETTINGS].trust_proxy)
    answer = None
    if _VISIT_ID.fullmatch(visit_id):
        answer = await request.app[POOL].keep_alive(visit_id, client)
    if answer is None:
        raise ApiError(404, "unknown or expired visit")
    request.app[STATS].keep_alives += 1
    return web.json_response(answer.model_dump(mode="json"))


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight; the `_cors` middleware has already refused foreign origins."""
    if "Origin" not in request.headers:
        raise ApiError(400, "a CORS preflight needs an Origin header")
    headers = {
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
    }
    return web.Response(status=204, headers=headers)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(HealthAnswer(status="ok").model_dump())


# --- routes and their description -------------------------------------------------

_VISITS = f"{API_PREFIX}/visits"
_KEEP_ALIVE = f"{API_PREFIX}/visits/{{visit_id}}/keep-alive"
_BAD = Response("Invalid JSON or an invalid field (named in detail[].loc)", ErrorAnswer)
_FORBIDDEN = Response("The Origin header names a site that is not configured", ErrorAnswer)
_LIMITED = Response(
    "Too many requests (or live visits) from this client",
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
            "Liveness check",
            {200: Response("The server answers", HealthAnswer)},
        ),
        healthz,
    ),
)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route (preflights aside)."""
    operations = [operation for operation, _ in OPERATIONS]
    return build_document(operations, title="pbx-tracker visits API", version="1")


def make_app(
    settings: HttpSettings, pool: VisitPool, *, clock: Callable[[], float] | None = None
) -> web.Application:
    """The application; ``clock`` (monotonic seconds) drives the rate limiter."""
    app = web.Application(
        middlewares=[_cors, _errors, _rate_limit], client_max_size=settings.max_body_bytes
    )
    limit = settings.rate_limit
    limiter = (
        RateLimiter(limit.per_minute, limit.burst)
        if clock is None
        else RateLimiter(limit.per_minute, limit.burst, clock=clock)
    )
    app[SETTINGS] = settings
    app[POOL] = pool
    app[LIMITER] = limiter
    app[STATS] = ApiStats()
    app[OPENAPI] = openapi_document()
    for operation, handler in OPERATIONS:
        app.router.add_route(operation.method, operation.path, handler)
    app.router.add_route("OPTIONS", _VISITS, preflight)
    app.router.add_route("OPTIONS", _KEEP_ALIVE, preflight)
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
    ) -> None:
        self.settings = settings
        self.app = make_app(settings, pool, clock=clock)
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
        log.info("http.listening", host=self.settings.host, port=self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("http.stopped", port=self.port)
