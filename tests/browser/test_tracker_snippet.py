"""The website snippet ``/tracker.js`` in a real browser (Chromium through Playwright).

The daemon's HTTP server runs on loopback with a real number pool; the browser
opens its demo landing page (same origin) or a page of "the company's site"
served by a second tiny server and opened as ``http://localhost:PORT`` (another
origin than ``http://127.0.0.1:PORT``, so the API calls are real CORS requests).
Waits are on conditions with bounded timeouts, never sleeps.

Needs the Debian chromium at /usr/bin/chromium (``playwright install`` is never
run): skipped without it, failed under CI.

Chromium driven by Playwright is automation (``HeadlessChrome`` in its
User-Agent, ``navigator.webdriver`` true): a bot to a pool, which shows it the
site's number.  The tests that stand for people turn that rule off
(``static_number_for_bots=False``); one test keeps it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from clocks import DateClock
from playwright.async_api import Browser, BrowserContext, Page, Route, expect
from servers import http_server, serving_app
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.attribution.memory_pool import MemoryVisitPool
from pbx_tracker.attribution.stored_pool import StoredVisitPool
from pbx_tracker.attribution.visits import Visit, get_visit, visits_table
from pbx_tracker.phones import display_number
from pbx_tracker.sim.visitors import BROWSER_USER_AGENT
from pbx_tracker.web.app import HttpServer
from pbx_tracker.web.settings import HttpSettings, RateLimitSettings
from pbx_tracker.web.snippet import LandingPage

POOL = "site"
SITE_NUMBER = "+74951110000"  # the company's own number, also the fallback
SITE_DISPLAY = display_number(SITE_NUMBER, "RU")  # 8 (495) 111-00-00
NUMBERS = ["+74950000001", "+74950000002", "+74950000003"]
WAIT_MS = 10_000  # bounded waits: generous for a loaded CI machine, far below the test timeout
TAGS = "utm_source=yandex&utm_medium=cpc&utm_campaign=spring&utm_term=plastic+windows&yclid=123"

pytestmark = pytest.mark.timeout(60)


def shown(number: str) -> str:
    return display_number(number, "RU")


# --- the browser ------------------------------------------------------------------


@dataclass
class Tab:
    """A page in its own browser context (its own visitor), with the page's errors."""

    page: Page
    errors: list[Exception] = field(default_factory=list)

    async def tracker_state(self) -> dict[str, Any]:
        """``window.pbxTracker`` once the snippet has an answer (a visit id)."""
        await self.page.wait_for_function(
            "() => window.pbxTracker && window.pbxTracker.visitId", timeout=WAIT_MS
        )
        state: dict[str, Any] = await self.page.evaluate("() => ({...window.pbxTracker})")
        return state

    async def swapped_number(self) -> str:
        """The pool number the snippet put on the page."""
        await self.page.wait_for_function(
            "() => window.pbxTracker && window.pbxTracker.number", timeout=WAIT_MS
        )
        number: str = await self.page.evaluate("() => window.pbxTracker.number")
        return number

    async def visitor_id(self) -> str:
        value: str = await self.page.evaluate("() => localStorage.getItem('pbx_vid')")
        return value

    async def become_visible_again(self) -> None:
        """The visitor switches back to the tab (headless tabs are always visible)."""
        await self.page.evaluate(
            """() => {
                for (const state of ['hidden', 'visible']) {
                    Object.defineProperty(document, 'visibilityState',
                        {value: state, configurable: true});
                    document.dispatchEvent(new Event('visibilitychange'));
                }
            }"""
        )


@contextlib.asynccontextmanager
async def tab(browser: Browser, user_agent: str | None = None) -> AsyncIterator[Tab]:
    context: BrowserContext = await browser.new_context(user_agent=user_agent)
    try:
        page = await context.new_page()
        opened = Tab(page)
        page.on("pageerror", lambda error: opened.errors.append(error))
        yield opened
    finally:
        await context.close()


# --- the servers --------------------------------------------------------------------


@dataclass
class Tracker:
    server: HttpServer

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


@contextlib.asynccontextmanager
async def tracking(
    pool: MemoryVisitPool, *, origins: tuple[str, ...] = ()
) -> AsyncIterator[Tracker]:
    """The daemon's HTTP server with the demo landing page; ``origins``: sites allowed."""
    settings = HttpSettings(
        port=0,
        allowed_origins=list(origins),
        rate_limit=RateLimitSettings(per_minute=6000, burst=1000),
    )
    landing = LandingPage(pool=POOL, number=SITE_NUMBER)
    async with http_server(settings, pool, landing=landing) as server:
        yield Tracker(server)


@dataclass
class CompanySite:
    """The company's own site: one page at ``/``, set once the tracker's port is known."""

    origin: str = ""
    html: str = ""


@contextlib.asynccontextmanager
async def company_site() -> AsyncIterator[CompanySite]:
    """A second server, opened as ``http://localhost:PORT``: another origin than the API's."""
    site = CompanySite()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=site.html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    async with serving_app(app) as port:
        site.origin = f"http://localhost:{port}"
        yield site


def site_page(script_src: str, body: str, *, selector: str | None = None) -> str:
    extra = f' data-selector="{selector}"' if selector else ""
    return (
        f"<!doctype html><html><body>{body}"
        f'<script async src="{script_src}" data-pool="{POOL}" '
        f'data-number="+7 495 111-00-00"{extra}></script></body></html>'
    )


def stored_pool(
    engine: AsyncEngine,
    numbers: list[str],
    *,
    hold: float = 600.0,
    quarantine: float = 0.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    bots_get_the_site_number: bool = False,
) -> StoredVisitPool:
    return StoredVisitPool(
        engine,
        name=POOL,
        numbers=numbers,
        fallback=SITE_NUMBER,
        region="RU",
        hold_seconds=hold,
        quarantine_seconds=quarantine,
        max_visits_per_client=50,  # every browser context comes from 127.0.0.1
        max_visits_per_network=50,
        static_number_for_bots=bots_get_the_site_number,  # this Chromium is automation
        clock=clock,
    )


def memory_pool(numbers: list[str] = NUMBERS) -> MemoryVisitPool:
    return MemoryVisitPool(
        numbers,
        fallback=SITE_NUMBER,
        name=POOL,
        max_visits_per_client=50,
        max_visits_per_network=50,
        static_number_for_bots=False,  # this Chromium is automation
    )


async def stored_visit(engine: AsyncEngine, visit_id: str) -> Visit:
    async with engine.connect() as conn:
        visit = await get_visit(conn, visit_id)
    assert visit is not None
    return visit


@pytest.fixture(name="tracker_script")
def _tracker_script() -> bytes:
    return (files("pbx_tracker.web") / "static" / "tracker.js").read_bytes()


@pytest.fixture(name="closed_port")
def _closed_port() -> Iterator[int]:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    yield port


# --- the tests --------------------------------------------------------------------------


async def test_landing_page_shows_a_pool_number_and_the_visit_is_stored(
    engine: AsyncEngine, browser: Browser, tmp_path: Path
) -> None:
    """A visitor landing from an ad sees a pool number in the header, the footer and the call
    button, and the visit is stored with its utm tags, click id and GA and Metrica client ids; the
    next page keeps the number."""
    async with tracking(stored_pool(engine, NUMBERS)) as tracker, tab(browser) as visitor:
        await visitor.page.context.add_cookies(
            [
                {"name": "_ga", "value": "GA1.2.1234567890.1712345678", "url": tracker.url("/")},
                {"name": "_ym_uid", "value": "1712345678901234567", "url": tracker.url("/")},
            ]
        )
        landing = tracker.url(f"/demo/?{TAGS}")
        await visitor.page.goto(landing)
        number = await visitor.swapped_number()
        assert number in NUMBERS
        await expect(visitor.page.locator("#header-phone")).to_have_text(
            shown(number), timeout=WAIT_MS
        )
        await expect(visitor.page.locator("#footer-phone")).to_have_text(shown(number))
        await expect(visitor.page.locator("#call-button")).to_have_attribute(
            "href", f"tel:{number}"
        )
        await visitor.page.screenshot(path=tmp_path / "landing.png", full_page=True)

        state = await visitor.tracker_state()
        visitor_id = await visitor.visitor_id()
        assert re.fullmatch(r"[A-Za-z0-9_-]{16,64}", visitor_id)
        visit = await stored_visit(engine, state["visitId"])
        assert (visit.pool, visit.landing_page, visit.visitor_id) == (POOL, landing, visitor_id)
        assert (visit.utm_source, visit.utm_medium, visit.utm_campaign, visit.utm_term) == (
            "yandex",
            "cpc",
            "spring",
            "plastic windows",
        )
        assert (visit.utm_content, visit.yclid, visit.gclid, visit.referrer) == (
            None,
            "123",
            None,
            None,
        )
        assert (visit.ga_client_id, visit.ym_client_id) == (
            "1234567890.1712345678",
            "1712345678901234567",
        )
        assert visitor.errors == []

        # The next page of the same visit reports the tags the visitor landed with.
        async with visitor.page.expect_request(
            lambda r: r.url.endswith("/api/v1/visits") and r.method == "POST"
        ) as sent:
            await visitor.page.goto(tracker.url("/demo/"))
        assert (await sent.value).post_data_json["utm_campaign"] == "spring"
        assert await visitor.swapped_number() == number  # the live visit resumed


async def test_numbers_in_every_form_and_added_later_are_swapped_on_another_origin(
    browser: Browser,
) -> None:
    """On the company's own site the snippet replaces the site number however it is written, in tel:
    links and in text added later, and leaves longer digit runs alone."""
    body = """
        <p id="national">Call 8 (495) 111-00-00 today</p>
        <p id="e164">+74951110000</p>
        <p id="spaced">+7 495 111 00 00, or 495-111-00-00</p>
        <p id="longer">Order 849511100001 is not a phone</p>
        <span class="phone" id="split"><b>+7 495</b> 111-00-00</span>
        <a id="link" href="tel:84951110000">call</a>
    """
    async with (
        company_site() as site,
        tracking(memory_pool(), origins=(site.origin,)) as tracker,
        tab(browser) as visitor,
    ):
        site.html = site_page(tracker.url("/tracker.js"), body, selector=".phone")
        await visitor.page.goto(site.origin)
        number = await visitor.swapped_number()
        page = visitor.page
        await expect(page.locator("#national")).to_have_text(f"Call {shown(number)} today")
        await expect(page.locator("#e164")).to_have_text(shown(number))
        await expect(page.locator("#spaced")).to_have_text(f"{shown(number)}, or {shown(number)}")
        await expect(page.locator("#longer")).to_have_text("Order 849511100001 is not a phone")
        await expect(page.locator("#split")).to_have_text(shown(number))
        await expect(page.locator("#link")).to_have_attribute("href", f"tel:{number}")

        await page.evaluate(
            """() => {
                const later = document.createElement('div');
                later.innerHTML = '<p id="popup">Sales: +7 (495) 111-00-00</p>'
                    + '<a id="popup-link" href="tel:+7-495-111-00-00">call</a>';
                document.body.append(later);
                document.getElementById('national').firstChild.nodeValue = 'Or 84951110000';
            }"""
        )
        await expect(page.locator("#popup")).to_have_text(f"Sales: {shown(number)}")
        await expect(page.locator("#popup-link")).to_have_attribute("href", f"tel:{number}")
        await expect(page.locator("#national")).to_have_text(f"Or {shown(number)}")
        assert visitor.errors == []


async def _refuse_connection(route: Route) -> None:
    await route.abort("connectionrefused")


async def _server_error(route: Route) -> None:
    await route.fulfill(status=500, json={"error": "internal error", "detail": []})


async def _not_json(route: Route) -> None:
    await route.fulfill(status=200, content_type="application/json", body="<html>oops")


async def _wrong_json(route: Route) -> None:
    await route.fulfill(status=200, json={"visit_id": 5, "number": "call us"})


@pytest.mark.parametrize(
    "api_answer",
    [_refuse_connection, _server_error, _not_json, _wrong_json],
    ids=["refused", "500", "not-json", "wrong-json"],
)
async def test_the_page_keeps_its_number_when_the_api_fails(
    browser: Browser, api_answer: Callable[[Route], Any]
) -> None:
    """When the tracker cannot be reached, answers 500 or sends something that is not the expected
    JSON, the page keeps showing the site's own number without errors."""
    async with (
        company_site() as site,
        tracking(memory_pool(), origins=(site.origin,)) as tracker,
        tab(browser) as visitor,
    ):
        site.html = site_page(tracker.url("/tracker.js"), '<p id="phone">8 (495) 111-00-00</p>')
        await visitor.page.route("**/api/v1/visits", api_answer)
        await expect_gives_up(visitor, site.origin)


async def test_the_page_keeps_its_number_when_the_daemon_is_down(
    browser: Browser, closed_port: int, tracker_script: bytes
) -> None:
    """The script still comes from a cache, but nothing listens where the API was."""
    src = f"http://127.0.0.1:{closed_port}/tracker.js"

    async def cached_script(route: Route) -> None:
        await route.fulfill(status=200, content_type="application/javascript", body=tracker_script)

    async with company_site() as site, tab(browser) as visitor:
        site.html = site_page(src, '<p id="phone">8 (495) 111-00-00</p>')
        await visitor.page.route(src, cached_script)
        await expect_gives_up(visitor, site.origin)


async def test_a_site_not_allowed_keeps_its_number(browser: Browser) -> None:
    """A site not among the allowed origins keeps its own number, and the tracker counts the refused
    request."""
    async with (
        company_site() as site,
        tracking(memory_pool()) as tracker,
        tab(browser) as visitor,
    ):
        site.html = site_page(tracker.url("/tracker.js"), '<p id="phone">8 (495) 111-00-00</p>')
        await expect_gives_up(visitor, site.origin)
        assert tracker.server.stats.rejected >= 1


async def expect_gives_up(visitor: Tab, url: str) -> None:
    """Open ``url``: the snippet says why it gave up in one console.debug line, the
    page keeps the site's number and sees no error."""
    page = visitor.page
    async with page.expect_console_message(
        lambda message: message.text.startswith("pbx-tracker:"), timeout=WAIT_MS
    ) as said:
        await page.goto(url)
    assert (await said.value).type == "debug"
    await expect(page.locator("#phone")).to_have_text("8 (495) 111-00-00")
    assert await page.evaluate("() => window.pbxTracker.number") is None
    assert visitor.errors == []


async def test_keep_alive_moves_the_visit_on_while_the_tab_is_visible(
    engine: AsyncEngine, browser: Browser
) -> None:
    """While the tab is visible the visit is kept alive in the database, and coming back to the tab
    sends a keep-alive at once."""
    # hold 15 s: the pool asks for a keep-alive every 5 s (its minimum).
    async with (
        tracking(stored_pool(engine, NUMBERS, hold=15.0)) as tracker,
        tab(browser) as visitor,
    ):
        await visitor.page.goto(tracker.url("/demo/"))
        state = await visitor.tracker_state()
        started = await stored_visit(engine, state["visitId"])
        deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
        # The browser's timer moves the visit on in the database, where Playwright cannot
        # wait: poll it, bounded by the deadline.
        while (await stored_visit(engine, state["visitId"])).last_seen_at == started.last_seen_at:
            assert asyncio.get_running_loop().time() < deadline, "no keep-alive stored"
            await asyncio.sleep(0.2)

        # Back to the tab: one keep-alive at once, not after the next period.
        async with visitor.page.expect_request(
            lambda r: r.url.endswith("/keep-alive"), timeout=2_000
        ) as sent:
            await visitor.become_visible_again()
        assert (await sent.value).url.endswith(f"/visits/{state['visitId']}/keep-alive")
        assert visitor.errors == []


async def test_an_expired_visit_starts_again_and_the_new_number_is_swapped(
    engine: AsyncEngine, browser: Browser
) -> None:
    """A visitor whose visit expired starts a new one on their next keep-alive and the page switches
    to the new number everywhere."""
    clock = DateClock(datetime.now(UTC))
    # Quarantine: the expired visit's number is not handed out again at once.
    pool = stored_pool(engine, NUMBERS, hold=600.0, quarantine=3600.0, clock=clock)
    async with tracking(pool) as tracker, tab(browser) as visitor:
        await visitor.page.goto(tracker.url("/demo/"))
        first = await visitor.swapped_number()
        before = await visitor.tracker_state()
        clock.advance(601)  # the hold ran out
        await visitor.become_visible_again()  # keep-alive: 404, a new visit
        await visitor.page.wait_for_function(
            "old => window.pbxTracker.visitId !== old", arg=before["visitId"], timeout=WAIT_MS
        )
        second = await visitor.swapped_number()
        assert second != first
        await expect(visitor.page.locator("#header-phone")).to_have_text(
            shown(second), timeout=WAIT_MS
        )
        await expect(visitor.page.locator("#footer-phone")).to_have_text(shown(second))
        await expect(visitor.page.locator("#call-button")).to_have_attribute(
            "href", f"tel:{second}"
        )
        assert visitor.errors == []


async def test_an_exhausted_pool_leaves_the_second_visitor_the_site_number(
    engine: AsyncEngine, browser: Browser
) -> None:
    """When the pool has no free number the second visitor sees the site's own number, and their
    visit is still stored."""
    async with (
        tracking(stored_pool(engine, NUMBERS[:1])) as tracker,
        tab(browser) as first,
        tab(browser) as second,
    ):
        await first.page.goto(tracker.url("/demo/"))
        assert await first.swapped_number() == NUMBERS[0]
        await second.page.goto(tracker.url("/demo/"))
        state = await second.tracker_state()
        assert state["number"] is None
        await shows_the_site_number(second.page)
        visit = await stored_visit(engine, state["visitId"])
        assert visit.visitor_id == await second.visitor_id()
        assert second.errors == []


async def shows_the_site_number(page: Page) -> None:
    """The page still shows the site's own number, in the header and on the call button."""
    await expect(page.locator("#header-phone")).to_have_text(SITE_DISPLAY)
    await expect(page.locator("#call-button")).to_have_attribute("href", f"tel:{SITE_NUMBER}")


@pytest.mark.parametrize(
    "user_agent", [None, BROWSER_USER_AGENT], ids=["headless-user-agent", "browser-user-agent"]
)
async def test_an_automated_browser_keeps_the_site_number_and_takes_no_pool_number(
    engine: AsyncEngine, browser: Browser, user_agent: str | None
) -> None:
    """Headless Chromium under automation is shown the site's number, even with a desktop
    browser's User-Agent (the snippet sends navigator.webdriver), and nothing is stored."""
    pool = stored_pool(engine, NUMBERS, bots_get_the_site_number=True)
    async with tracking(pool) as tracker, tab(browser, user_agent) as bot:
        sent: list[Any] = []
        bot.page.on(
            "request",
            lambda request: (
                sent.append(request.post_data_json)
                if request.url.endswith("/api/v1/visits")
                else None
            ),
        )
        await bot.page.goto(tracker.url("/demo/"))
        state = await bot.tracker_state()
        assert state["number"] is None
        await shows_the_site_number(bot.page)
        assert [body.get("webdriver") for body in sent] == [True]
        assert bot.errors == []
    assert (pool.bot_visits, pool.allocator.in_use) == (1, 0)
    async with engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).select_from(visits_table))
    assert stored == 0


async def test_private_mode_without_local_storage_keeps_the_visitor_in_a_cookie(
    browser: Browser,
) -> None:
    """In a private window without localStorage the visitor still gets a number and is recognised by
    a cookie."""
    async with tracking(memory_pool()) as tracker, tab(browser) as visitor:
        await visitor.page.add_init_script(
            """Object.defineProperty(window, 'localStorage',
                {get() { throw new DOMException('denied', 'SecurityError'); }});"""
        )
        async with visitor.page.expect_request(
            lambda r: r.url.endswith("/api/v1/visits") and r.method == "POST"
        ) as sent:
            await visitor.page.goto(tracker.url("/demo/"))
        number = await visitor.swapped_number()
        await expect(visitor.page.locator("#header-phone")).to_have_text(shown(number))
        cookies = {c["name"]: c["value"] for c in await visitor.page.context.cookies()}
        assert (await sent.value).post_data_json["visitor_id"] == cookies["pbx_vid"]
        assert visitor.errors == []
