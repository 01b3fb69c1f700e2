"""The browser for the page tests: Debian's Chromium driven by Playwright (never a browser
Playwright downloads).  Without it the tests are skipped, with the reason, and fail in CI."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from browsing import CHROMIUM
from playwright.async_api import Browser, async_playwright


@pytest.fixture(name="chromium")
def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the browser tests")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(name="browser")
async def _browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield browser
        finally:
            await browser.close()
