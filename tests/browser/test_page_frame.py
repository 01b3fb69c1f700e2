"""What every page shares, in a real browser (Chromium through Playwright): the icon,
and the sign-in form's answer to a stale form.

Needs the Debian chromium at /usr/bin/chromium: skipped without it, failed under CI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from browsing import PHONE, Site, serving, tab, web_user
from playwright.async_api import Browser, Response, expect
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from pbx_tracker.web.pages import Pages
from pbx_tracker.web.settings import WebSettings

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(name="site")
async def _site(engine: AsyncEngine) -> AsyncIterator[Site]:
    web = WebSettings(users=[web_user("anna", "manager", "101")], cookie_secure=False)
    async with serving(Pages(web, engine, region="RU")) as site:
        yield site


async def test_the_pages_have_an_icon_and_no_request_fails(site: Site, browser: Browser) -> None:
    """A page loads its icon (the tab shows it) with no request answered 404, and
    /favicon.ico, which browsers ask for on their own, answers the same icon."""
    async with tab(browser) as page:
        failed: list[str] = []

        def check(response: Response) -> None:
            if response.status >= 400:
                failed.append(f"{response.status} {response.url}")

        page.on("response", check)
        await page.goto(site.url("/login"))
        icon = page.locator('head link[rel="icon"]')
        await expect(icon).to_have_attribute("href", "/static/favicon.svg")
        for path in ("/static/favicon.svg", "/favicon.ico"):
            answer = await page.request.get(site.url(path))
            assert answer.status == 200, path
            assert answer.headers["content-type"].startswith("image/svg+xml")
            assert (await answer.body()).startswith(b"<svg")
        # the pages' Content-Security-Policy lets the icon load
        loaded = await page.evaluate(
            """() => new Promise(done => { const img = new Image();
                 img.onload = () => done(img.naturalWidth > 0); img.onerror = () => done(false);
                 img.src = document.querySelector('link[rel=icon]').href; })"""
        )
        assert loaded is True
        assert failed == []


async def test_a_stale_sign_in_form_says_it_has_expired(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """A sign-in form whose token is no longer good is refused 403 with "This form has
    expired" and a way on (reload and try again), and logged."""
    async with tab(browser, PHONE) as page:
        await page.goto(site.url("/login"))
        await page.locator("input[name=csrf]").evaluate("input => { input.value = 'stale'; }")
        await page.get_by_label("Name").fill("anna")
        await page.get_by_label("Password").fill("anna-password-1")
        with capture_logs() as logs:
            async with page.expect_response(site.url("/login")) as sent:
                await page.get_by_role("button", name="Sign in").click()
        assert (await sent.value).status == 403
        await expect(page.locator("h1")).to_have_text("This form has expired")
        await expect(page).to_have_title("This form has expired · pbx-tracker")
        await expect(page.locator(".problem")).to_contain_text("Reload the page")
        assert [entry["event"] for entry in logs] == ["web.csrf_refused"]
        await page.screenshot(path=tmp_path / "login-expired-form.png", full_page=True)
