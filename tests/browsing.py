"""Tabs for the page tests: a fresh browser context each, at a laptop's or a phone's size,
failing the test on any error the page's scripts raise."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from playwright.async_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@contextlib.asynccontextmanager
async def tab(browser: Browser, viewport: Mapping[str, int] = LAPTOP) -> AsyncIterator[Page]:
    context = await browser.new_context(
        viewport=dict(viewport),  # type: ignore[arg-type]
        accept_downloads=True,
    )
    try:
        page = await context.new_page()
        errors: list[Exception] = []
        page.on("pageerror", lambda error: errors.append(error))
        yield page
        assert errors == []
    finally:
        await context.close()
