"""Bad input against the database-backed pool (SQLite and PostgreSQL): refused with 4xx,
nothing stored, the pool not drained."""

from __future__ import annotations

import json

import aiohttp
from servers import http_server
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.attribution.stored_pool import StoredVisitPool
from pbx_tracker.attribution.visits import leases_table, visits_table
from pbx_tracker.sim.visitors import BROWSER_USER_AGENT
from pbx_tracker.web.settings import HttpSettings, RateLimitSettings

SITE = "https://example.ru"
NUMBERS = ["+74950000001", "+74950000002", "+74950000003"]
GOOD = {"page": f"{SITE}/", "utm_source": "yandex"}
BAD_BODIES: list[tuple[str, bytes, int]] = [
    ("not JSON", b"{page: oops", 400),
    ("a list", b"[]", 400),
    ("unknown field", json.dumps({**GOOD, "admin": True}).encode(), 400),
    ("page not a URL", json.dumps({"page": "javascript:alert(1)"}).encode(), 400),
    ("control characters in a tag", json.dumps({**GOOD, "utm_term": "a\u0000b"}).encode(), 400),
    ("tag too long", json.dumps({**GOOD, "utm_campaign": "x" * 257}).encode(), 400),
    ("click id with spaces", json.dumps({**GOOD, "gclid": "a b"}).encode(), 400),
    ("SQL in the visitor id", json.dumps({**GOOD, "visitor_id": "1' OR '1'='1"}).encode(), 400),
    ("oversized", json.dumps({**GOOD, "utm_content": "x" * 20_000}).encode(), 413),
]


async def stored_rows(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        visits = (await conn.execute(select(func.count()).select_from(visits_table))).scalar_one()
        leases = (await conn.execute(select(func.count()).select_from(leases_table))).scalar_one()
    return int(visits), int(leases)


async def test_refused_requests_store_nothing_and_leave_the_pool_whole(
    engine: AsyncEngine,
) -> None:
    """Bad bodies, forged visit ids and foreign origins are refused and store nothing, and a flood
    from one address gets two numbers then only 429s, leaving the rest of the pool free."""
    pool = StoredVisitPool(
        engine, name="site", numbers=NUMBERS, fallback="+74950000000", max_visits_per_client=2
    )
    limits = RateLimitSettings(per_minute=60, burst=40)
    settings = HttpSettings(port=0, allowed_origins=[SITE], rate_limit=limits)
    browser = {"User-Agent": BROWSER_USER_AGENT}
    try:
        async with (
            http_server(settings, pool) as server,
            aiohttp.ClientSession(headers=browser) as session,
        ):
            base = f"http://127.0.0.1:{server.port}/api/v1/visits"
            json_type = {"Content-Type": "application/json", "Origin": SITE}
            for what, body, status in BAD_BODIES:
                async with session.post(base, data=body, headers=json_type) as answer:
                    assert answer.status == status, what
            forged = f"{base}/{'A' * 22}/keep-alive"
            async with session.post(forged, headers={"Origin": SITE}) as answer:
                assert answer.status == 404
            foreign = {**json_type, "Origin": "https://evil.example"}
            async with session.post(base, data=json.dumps(GOOD), headers=foreign) as answer:
                assert answer.status == 403
            assert await stored_rows(engine) == (0, 0)
            # a flood from one address: two visits, then 429s; the pool keeps a number free
            statuses = []
            for _ in range(30):
                async with session.post(base, data=json.dumps(GOOD), headers=json_type) as answer:
                    statuses.append(answer.status)
            assert statuses[:2] == [200, 200]
            assert set(statuses[2:]) == {429}
            assert pool.allocator.in_use == 2
            assert await stored_rows(engine) == (2, 2)
    finally:
        await pool.aclose()
