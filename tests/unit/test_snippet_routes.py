"""``/tracker.js`` and ``/demo/`` over aiohttp's test client: headers, caching, escaping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pbx_tracker.attribution.memory_pool import MemoryVisitPool
from pbx_tracker.web.app import make_app
from pbx_tracker.web.settings import HttpSettings
from pbx_tracker.web.snippet import LandingPage

SITE_NUMBER = "+74951110000"


@asynccontextmanager
async def serving(landing: LandingPage | None) -> AsyncIterator[TestClient]:
    pool = MemoryVisitPool(["+74950000001"], fallback=SITE_NUMBER, name="site")
    app = make_app(HttpSettings(port=0), pool, landing=landing)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_tracker_js_is_javascript_cached_for_five_minutes() -> None:
    """Sites get /tracker.js as JavaScript that browsers may cache for five minutes, with an ETag to
    check it later."""
    async with serving(None) as client:
        response = await client.get("/tracker.js")
        body = await response.text()
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/javascript; charset=utf-8"
        assert response.headers["Cache-Control"] == "public, max-age=300"
        assert "pbxTracker" in body
        etag = response.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"')


@pytest.mark.parametrize("if_none_match", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
async def test_tracker_js_not_modified_for_the_cached_copy(if_none_match: str) -> None:
    """A browser that already has the current /tracker.js (by ETag, weak ETag, among others, or *)
    gets an empty 304 instead of the script again."""
    async with serving(None) as client:
        etag = (await client.get("/tracker.js")).headers["ETag"]
        headers = {"If-None-Match": if_none_match.format(etag=etag)}
        response = await client.get("/tracker.js", headers=headers)
        assert response.status == 304
        assert response.headers["ETag"] == etag
        assert await response.read() == b""


async def test_tracker_js_sent_again_for_another_version() -> None:
    """A browser holding an old version of /tracker.js gets the current script."""
    async with serving(None) as client:
        response = await client.get("/tracker.js", headers={"If-None-Match": '"old"'})
        assert response.status == 200


async def test_demo_page_shows_the_site_number_escaped() -> None:
    """The /demo/ page shows the site's number formatted for people and as a tel: link, with the
    pool name escaped so it cannot inject HTML."""
    landing = LandingPage(pool='si"te<', number=SITE_NUMBER)
    async with serving(landing) as client:
        response = await client.get("/demo/")
        page = await response.text()
        assert response.status == 200
        assert response.content_type == "text/html"
        assert "8 (495) 111-00-00" in page
        assert "+7 495 111-00-00" in page
        assert f'href="tel:{SITE_NUMBER}"' in page
        assert 'data-pool="si&quot;te&lt;"' in page
        assert 'si"te<' not in page
        assert "{{" not in page


async def test_no_demo_page_without_a_landing() -> None:
    """Without a landing page configured /demo/ answers 404."""
    async with serving(None) as client:
        assert (await client.get("/demo/")).status == 404


async def test_the_daemons_own_pages_may_call_the_api() -> None:
    """The daemon's own /demo/ page may start a visit through the API, while a page from another
    origin is refused with 403."""
    async with serving(None) as client:
        own = f"http://{client.host}:{client.port}"
        visit = {"page": f"{own}/demo/"}
        answer = await client.post("/api/v1/visits", json=visit, headers={"Origin": own})
        assert answer.status == 200
        foreign = {"Origin": "http://evil.example"}
        assert (await client.post("/api/v1/visits", json=visit, headers=foreign)).status == 403
