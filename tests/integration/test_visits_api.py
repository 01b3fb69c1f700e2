"""The public visits API over loopback: a real aiohttp server and client, a fake clock.

The clock drives both the number pool (datetime) and the rate limiter
(the same moment in seconds), so hold, expiry and rate-limit recovery need no sleeps.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from clocks import DateClock
from servers import http_server

from pbx_tracker.attribution.memory_pool import MemoryVisitPool
from pbx_tracker.sim.visitors import BROWSER_USER_AGENT
from pbx_tracker.web.api import openapi_document
from pbx_tracker.web.app import HttpServer
from pbx_tracker.web.clients import client_key
from pbx_tracker.web.settings import HttpSettings, RateLimitSettings

NUMBERS = ["+74951110010", "+74951110011", "+74951110012"]
FALLBACK = "+74951110000"
SITE = "https://example.ru"
PAGE = "https://example.ru/landing?utm_source=yandex"
HOLD = 600.0
VISITS = "/api/v1/visits"


@dataclass
class Answer:
    status: int
    headers: Any
    body: Any


@dataclass
class Api:
    session: aiohttp.ClientSession
    base: str
    clock: DateClock
    pool: MemoryVisitPool
    server: HttpServer

    async def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        async with self.session.request(method, self.base + path, **kwargs) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return Answer(response.status, response.headers, body)

    async def start(
        self, client: str = "10.0.0.1", user_agent: str | None = None, **fields: Any
    ) -> Answer:
        payload = {"page": PAGE, **fields}
        headers = {"X-Forwarded-For": client}
        if user_agent is not None:
            headers["User-Agent"] = user_agent
        return await self.call("POST", VISITS, json=payload, headers=headers)

    async def keep_alive(self, visit_id: str) -> Answer:
        return await self.call("POST", f"{VISITS}/{visit_id}/keep-alive")


@contextlib.asynccontextmanager
async def serving(
    *,
    per_client: int = 5,
    per_network: int | None = None,
    numbers: list[str] = NUMBERS,
    bots: bool = True,
    per_minute: float = 6000,
    burst: int = 1000,
    **settings: Any,
) -> AsyncIterator[Api]:
    clock = DateClock(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    pool = MemoryVisitPool(
        numbers,
        fallback=FALLBACK,
        hold_seconds=HOLD,
        max_visits_per_client=per_client,
        max_visits_per_network=per_network,
        static_number_for_bots=bots,
        clock=clock,
    )
    settings.setdefault("trust_proxy", True)
    config = HttpSettings(
        port=0,
        allowed_origins=[SITE],
        rate_limit=RateLimitSettings(per_minute=per_minute, burst=burst),
        **settings,
    )
    # the snippet runs in people's browsers: aiohttp's own User-Agent is a bot's
    browser = {"User-Agent": BROWSER_USER_AGENT}
    async with (
        http_server(config, pool, clock=clock.seconds) as server,
        aiohttp.ClientSession(headers=browser) as session,
    ):
        yield Api(session, f"http://127.0.0.1:{server.port}", clock, pool, server)


@pytest.fixture(name="api")
async def _api() -> AsyncIterator[Api]:
    async with serving() as api:
        yield api


def fields_of(answer: Answer) -> list[list[Any]]:
    return [problem["loc"] for problem in answer.body["detail"]]


# -- visits ---------------------------------------------------------------------


async def test_a_visit_gets_a_pool_number_formatted_for_display(api: Api) -> None:
    """The site's script starting a visit gets a pool number, that number written as visitors read
    it, a visit id and how often to keep it alive."""
    answer = await api.start(utm_source="yandex", gclid="abc-123_X", ym_client_id="1712345678")
    assert answer.status == 200
    body = answer.body
    assert body["number"] == "+74951110010"
    assert body["display"] == "8 (495) 111-00-10"
    assert body["fallback"] is False
    assert body["keep_alive_seconds"] == HOLD // 3
    assert len(body["visit_id"]) >= 16


async def test_keep_alive_extends_the_hold(api: Api) -> None:
    """Each keep-alive within the hold keeps the visit's number for another hold, and a visit silent
    longer than that answers 404 "unknown or expired visit"."""
    visit = (await api.start()).body
    api.clock.advance(HOLD - 1)
    kept = await api.keep_alive(visit["visit_id"])
    assert kept.status == 200
    assert kept.body == {
        "visit_id": visit["visit_id"],
        "number": visit["number"],
        "display": "8 (495) 111-00-10",
        "expires_in": HOLD,
    }
    api.clock.advance(HOLD - 1)
    assert (await api.keep_alive(visit["visit_id"])).status == 200
    api.clock.advance(HOLD)
    expired = await api.keep_alive(visit["visit_id"])
    assert expired.status == 404
    assert expired.body["error"] == "unknown or expired visit"


@pytest.mark.parametrize("visit_id", ["A" * 22, "short", "x" * 65, "..%2F..%2Fetc"])
async def test_unknown_or_forged_visit_ids_are_404(api: Api, visit_id: str) -> None:
    """A keep-alive for a visit id that is unknown, malformed or a path trick answers 404 with an
    error."""
    answer = await api.keep_alive(visit_id)
    assert answer.status == 404
    assert answer.body["error"]


async def test_an_exhausted_pool_shows_the_fallback(api: Api) -> None:
    """Once every pool number is held a new visit is shown the fallback number (no pool number,
    fallback true), also on its keep-alives, and the exhaustion is counted."""
    numbers = [(await api.start(client=f"10.0.0.{n}")).body["number"] for n in range(3)]
    assert sorted(numbers) == NUMBERS
    extra = await api.start(client="10.0.0.9")
    assert extra.status == 200
    assert extra.body["number"] is None
    assert extra.body["fallback"] is True
    assert extra.body["display"] == "8 (495) 111-00-00"
    assert api.pool.allocator.exhaustions == 1
    kept = await api.keep_alive(extra.body["visit_id"])
    assert kept.body["number"] is None
    assert kept.body["display"] == "8 (495) 111-00-00"


async def test_a_returning_visitor_gets_the_same_number_back(api: Api) -> None:
    """A visitor who comes back resumes their visit while it is held, and after it expired gets the
    same number again when it is free."""
    first = (await api.start(visitor_id="visitor-1")).body
    resumed = (await api.start(visitor_id="visitor-1")).body
    assert resumed["visit_id"] == first["visit_id"]
    assert resumed["number"] == first["number"]
    other = (await api.start(client="10.0.0.2")).body
    api.clock.advance(HOLD + 1)
    back = (await api.start(visitor_id="visitor-1")).body
    assert back["visit_id"] != first["visit_id"]
    assert back["number"] == first["number"]  # least recently used would be the unused one
    assert (await api.start(client="10.0.0.3")).body["number"] not in (None, other["number"])


async def test_a_phone_that_changes_network_keeps_its_visit_and_number() -> None:
    """A phone moving from Wi-Fi to mobile data keeps its visit and number, and the visit then
    counts against the new address's share."""
    async with serving(per_client=1) as api:
        on_wifi = (await api.start(client="10.0.0.1", visitor_id="phone-1")).body
        on_lte = (await api.start(client="172.16.5.9", visitor_id="phone-1")).body
        assert (on_lte["visit_id"], on_lte["number"]) == (on_wifi["visit_id"], on_wifi["number"])
        # the visit now counts for the new address: the old one may start another
        assert (await api.start(client="10.0.0.1")).status == 200
        assert (await api.start(client="172.16.5.9")).status == 429


async def test_one_client_cannot_hold_more_than_its_share() -> None:
    """One address holding its share of numbers is refused 429 with Retry-After of one hold, while
    another network is served and the address is served again after the hold."""
    async with serving(per_client=2) as api:
        for _ in range(2):
            assert (await api.start(client="10.0.0.7")).status == 200
        refused = await api.start(client="10.0.0.7")
        assert refused.status == 429
        assert refused.headers["Retry-After"] == str(int(HOLD))
        assert api.pool.live_visits == 2
        assert (await api.start(client="10.0.8.8")).status == 200  # another network
        api.clock.advance(HOLD)
        assert (await api.start(client="10.0.0.7")).status == 200


async def test_one_client_from_several_addresses_of_a_network_cannot_drain_the_pool() -> None:
    """Three addresses of one /24 share the network's cap (default: a quarter of the pool,
    at least the per-address cap), so other visitors still get pool numbers."""
    numbers = [f"+7495111{n:04d}" for n in range(11)]
    async with serving(per_client=5, numbers=numbers) as api:
        statuses = [
            (await api.start(client=f"203.0.113.{host}")).status
            for host in (7, 8, 9)
            for _ in range(5)
        ]
        assert statuses.count(200) == 5
        assert set(statuses[5:]) == {429}
        refused = await api.start(client="203.0.113.200")
        assert refused.headers["Retry-After"] == str(int(HOLD))
        assert api.pool.live_visits == 5
        assert api.pool.capped_visits == 11
        for host in range(6):  # visitors of other networks
            other = await api.start(client=f"198.51.{host}.1")
            assert other.body["number"] in numbers
        api.clock.advance(HOLD)  # the network's visits ran out: it may start again
        assert (await api.start(client="203.0.113.7")).status == 200


async def test_the_network_of_an_address_is_its_ipv6_48_or_its_ipv4_24() -> None:
    """IPv6 /64s of one /48 share a network cap; an IPv4-mapped address counts with its /24."""
    async with serving(per_client=1, per_network=2) as api:
        assert (await api.start(client="2001:db8:1:a::1")).status == 200
        assert (await api.start(client="2001:db8:1:b::1")).status == 200
        assert (await api.start(client="2001:db8:1:c::1")).status == 429
        assert (await api.start(client="2001:db8:2::1")).status == 200
    async with serving(per_client=1, per_network=2) as api:
        assert (await api.start(client="::ffff:192.0.2.1")).status == 200
        assert (await api.start(client="192.0.2.2")).status == 200
        assert (await api.start(client="::ffff:192.0.2.3")).status == 429


BOTS = {
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "bingbot": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "yandexbot": "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "adsbot": "AdsBot-Google (+http://www.google.com/adsbot.html)",
    "facebook": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "headless-chrome": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " HeadlessChrome/131.0.0.0 Safari/537.36",
    "phantomjs": "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko)"
    " PhantomJS/2.1.1 Safari/538.1",
    "python-requests": "python-requests/2.32.3",
    "curl": "curl/8.11.0",
    "none": "",
}


@pytest.mark.parametrize("user_agent", BOTS.values(), ids=BOTS.keys())
async def test_bots_are_shown_the_site_number_and_take_no_pool_number(
    api: Api, user_agent: str
) -> None:
    """A crawler, headless browser or script gets the fallback answer and holds nothing."""
    answer = await api.start(user_agent=user_agent)
    assert answer.status == 200
    assert (answer.body["number"], answer.body["fallback"]) == (None, True)
    assert answer.body["display"] == "8 (495) 111-00-00"
    assert (api.pool.allocator.in_use, api.pool.live_visits, api.pool.bot_visits) == (0, 0, 1)
    assert (await api.keep_alive(answer.body["visit_id"])).status == 404
    person = await api.start()
    assert person.body["number"] == NUMBERS[0]


async def test_a_browser_that_says_automation_drives_it_is_shown_the_site_number(
    api: Api,
) -> None:
    """navigator.webdriver (sent by the snippet) counts even under a desktop User-Agent."""
    answer = await api.start(webdriver=True)
    assert (answer.body["number"], answer.body["fallback"]) == (None, True)
    assert (await api.start(webdriver=False)).body["number"] == NUMBERS[0]


async def test_the_bot_rule_can_be_turned_off() -> None:
    """With static_number_for_bots off, a crawler is given a pool number like anyone."""
    async with serving(bots=False) as api:
        answer = await api.start(user_agent=BOTS["googlebot"], webdriver=True)
        assert answer.body["number"] == NUMBERS[0]


async def test_forwarded_for_counts_only_behind_a_trusted_proxy() -> None:
    """Without trust_proxy X-Forwarded-For is ignored, so visits are counted by the connecting
    address."""
    async with serving(per_client=1, trust_proxy=False) as api:
        assert (await api.start(client="10.0.0.1")).status == 200
        assert (await api.start(client="10.0.0.2")).status == 429


@pytest.mark.parametrize(
    ("forwarded", "key"),
    [
        ("1.2.3.4", "1.2.3.4"),
        ("6.6.6.6, 1.2.3.4", "1.2.3.4"),
        ("2001:db8::1", "2001:db8::/64"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("junk", "junk"),
    ],
)
def test_client_key(forwarded: str, key: str) -> None:
    """Behind a trusted proxy a visitor is counted by the last address in X-Forwarded-For, an IPv6
    address by its /64 and an IPv4-mapped one as IPv4."""
    request = make_mocked_request("POST", VISITS, headers={"X-Forwarded-For": forwarded})
    assert client_key(request, trust_proxy=True) == key


async def test_a_named_pool_must_exist(api: Api) -> None:
    """Asking for a pool that is not configured answers 404 naming the pool field."""
    assert (await api.start(pool="default")).status == 200
    answer = await api.start(pool="other")
    assert answer.status == 404
    assert fields_of(answer) == [["pool"]]


# -- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "page"),
        ({"page": "javascript:alert(1)"}, "page"),
        ({"page": PAGE, "utm_source": "x" * 257}, "utm_source"),
        ({"page": PAGE, "utm_medium": "cpc\n"}, "utm_medium"),
        ({"page": PAGE, "gclid": "<script>"}, "gclid"),
        ({"page": PAGE, "ym_client_id": "abc"}, "ym_client_id"),
        ({"page": PAGE, "visitor_id": "a" * 65}, "visitor_id"),
        ({"page": PAGE, "referrer": 42}, "referrer"),
        ({"page": PAGE, "phone": "+7"}, "phone"),
    ],
)
async def test_validation_errors_name_the_field(
    api: Api, payload: dict[str, Any], field: str
) -> None:
    """A visit without a page, with a javascript: page, an overlong or control-character tag, a bad
    click or client id, or a wrong type is refused 400 naming the field, without echoing the input,
    and takes no number."""
    answer = await api.call("POST", VISITS, json=payload)
    assert answer.status == 400
    assert answer.body["error"] == "invalid request"
    assert [field] in fields_of(answer)
    assert "input" not in answer.body["detail"][0]
    assert api.pool.live_visits == 0


async def test_an_empty_referrer_is_no_referrer(api: Api) -> None:
    """A visit with an empty referrer is accepted."""
    assert (await api.start(referrer="")).status == 200


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"page"'])
async def test_bad_json_is_400(api: Api, body: bytes) -> None:
    """A body that is broken JSON, empty, a list or a string is refused 400."""
    headers = {"Content-Type": "application/json"}
    answer = await api.call("POST", VISITS, data=body, headers=headers)
    assert answer.status == 400
    assert answer.body["error"] in ("invalid JSON", "invalid request")


async def test_a_body_that_is_not_json_is_415(api: Api) -> None:
    """A form-encoded body is refused 415 saying the body must be application/json."""
    answer = await api.call("POST", VISITS, data=f"page={PAGE}")
    assert answer.status == 415
    assert answer.body["error"] == "request body must be application/json"


async def test_an_oversized_body_is_413(api: Api) -> None:
    """A body over the size limit is refused 413 saying how large a body may be."""
    payload = {"page": PAGE, "utm_term": "x" * 20_000}
    answer = await api.call("POST", VISITS, json=payload)
    assert answer.status == 413
    assert answer.body["error"].startswith("request body larger than")


async def test_an_oversized_chunked_body_is_413(api: Api) -> None:
    """A chunked body that grows over the size limit is refused 413 as well."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"page": "' + PAGE.encode() + b'", "utm_term": "'
        for _ in range(40):
            yield b"x" * 1024
        yield b'"}'

    headers = {"Content-Type": "application/json"}
    answer = await api.call("POST", VISITS, data=chunks(), headers=headers)
    assert answer.status == 413
    assert answer.body["error"]


async def test_wrong_methods_and_paths_answer_json(api: Api) -> None:
    """An unknown path answers 404 and a wrong method 405 naming POST in Allow, both as JSON."""
    missing = await api.call("GET", "/api/v1/nothing")
    assert missing.status == 404
    assert missing.body["error"] == "not found"
    wrong = await api.call("GET", VISITS)
    assert wrong.status == 405
    assert "POST" in wrong.headers["Allow"]


async def test_an_unexpected_failure_is_a_logged_json_500(api: Api) -> None:
    """An unexpected failure answers a JSON 500 "internal error" without details and is counted."""

    async def broken(request: Any, client: str) -> Any:
        raise RuntimeError("the pool broke")

    api.pool.start = broken  # type: ignore[method-assign]
    answer = await api.start()
    assert answer.status == 500
    assert answer.body == {"error": "internal error", "detail": []}
    assert api.server.stats.errors == 1


# -- CORS, rate limit -------------------------------------------------------------


async def test_preflight_for_an_allowed_origin(api: Api) -> None:
    """The configured site's browser preflight is allowed for POST with Content-Type, cached, and
    the visit it then starts carries the site's CORS headers."""
    headers = {
        "Origin": SITE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    answer = await api.call("OPTIONS", VISITS, headers=headers)
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Origin"] == SITE
    assert answer.headers["Access-Control-Allow-Methods"] == "POST"
    assert answer.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert int(answer.headers["Access-Control-Max-Age"]) > 0
    started = await api.call("POST", VISITS, json={"page": PAGE}, headers={"Origin": SITE})
    assert started.status == 200
    assert started.headers["Access-Control-Allow-Origin"] == SITE
    assert "Origin" in started.headers.getall("Vary")


@pytest.mark.parametrize("origin", ["https://evil.ru", "null", "https://example.ru.evil.ru"])
async def test_other_origins_are_403(api: Api, origin: str) -> None:
    """A preflight or visit from another origin, "null" or a look-alike domain is refused 403 and
    takes no number."""
    preflight = await api.call("OPTIONS", VISITS, headers={"Origin": origin})
    assert preflight.status == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers
    answer = await api.call("POST", VISITS, json={"page": PAGE}, headers={"Origin": origin})
    assert answer.status == 403
    assert answer.body["error"] == "origin not allowed"
    assert api.pool.live_visits == 0


async def test_errors_are_readable_by_the_allowed_site(api: Api) -> None:
    """An error answer to the configured site carries its CORS header, so the site's script can read
    it."""
    answer = await api.call("POST", VISITS, json={}, headers={"Origin": SITE})
    assert answer.status == 400
    assert answer.headers["Access-Control-Allow-Origin"] == SITE


async def test_rate_limit_then_recovery() -> None:
    """An address over its rate limit is refused 429 with Retry-After of 1 s while other addresses
    are served, and is served again a second later."""
    async with serving(per_minute=60, burst=2) as api:
        assert [(await api.start()).status for _ in range(2)] == [200, 200]
        limited = await api.start()
        assert limited.status == 429
        assert limited.headers["Retry-After"] == "1"
        assert limited.body["error"] == "too many requests"
        assert (await api.start(client="10.0.0.2")).status == 200
        api.clock.advance(1)
        assert (await api.start()).status == 200
        assert (await api.start()).status == 429
        assert api.server.stats.rate_limited == 2


async def test_health_is_not_rate_limited() -> None:
    """/healthz answers ok however often it is asked."""
    async with serving(per_minute=60, burst=1) as api:
        for _ in range(3):
            answer = await api.call("GET", "/healthz")
            assert answer.status == 200
            assert answer.body == {"status": "ok"}


# -- OpenAPI ------------------------------------------------------------------------


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


async def test_openapi_describes_every_route_and_its_refs_resolve(api: Api) -> None:
    """The served OpenAPI document describes every route with its answers, every $ref resolves, and
    the visit body requires page and refuses unknown fields."""
    answer = await api.call("GET", "/api/v1/openapi.json")
    assert answer.status == 200
    document = answer.body
    assert document == openapi_document()
    assert document["openapi"].startswith("3.1")
    assert {"title", "version"} <= document["info"].keys()
    for route in api.server.app.router.routes():
        if route.method in ("OPTIONS", "HEAD"):
            continue
        path = route.resource.canonical if route.resource else ""
        operation = document["paths"][path][route.method.lower()]
        assert operation["responses"], path
        for status, response in operation["responses"].items():
            assert status.isdigit() and response["description"]
    found = list(refs(document))
    assert "#/components/schemas/VisitStart" in found
    assert "#/components/schemas/ErrorDetail" in found
    for ref in found:
        assert isinstance(resolve(document, ref), dict)
    start = document["paths"][VISITS]["post"]
    body = start["requestBody"]["content"]["application/json"]["schema"]
    schema = resolve(document, body["$ref"])
    assert schema["required"] == ["page"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["utm_source"]["anyOf"][0]["maxLength"] == 256
