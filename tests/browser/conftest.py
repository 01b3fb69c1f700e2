"""The browser for the page tests: Debian's Chromium driven by Playwright (never a browser
Playwright downloads).  Without it the tests are skipped, with the reason, and fail in CI.

One Chromium serves the whole session (started once, on a loopback DevTools port, with the
switches Playwright itself gives a headless Chromium); each test connects to it and works
in browser contexts of its own, which share no cookies, storage or cache with another
test's, and closes them at its end.  Starting a browser per test cost as much as many of
the tests themselves.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from browsing import CHROMIUM
from playwright.async_api import Browser, async_playwright

STARTUP_SECONDS = 30.0
_ENDPOINT = re.compile(r"DevTools listening on (ws://\S+)")
# what Playwright passes to a headless Chromium it launches (timers run in background
# tabs, no scrollbars taking width, no sound), and a loopback DevTools port of the
# system's choosing
SWITCHES = (
    "--headless=new",
    "--no-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-extensions",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


@pytest.fixture(name="chromium", scope="session")
def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the browser tests")
        pytest.skip(reason)
    return CHROMIUM


class _Endpoint:
    """Reads Chromium's stderr to its end (so the pipe never fills), noting the DevTools
    address it announces."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.address: str | None = None
        self.announced = threading.Event()
        self.lines: list[str] = []
        assert process.stderr is not None
        self._stream = process.stderr
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Once Chromium has ended: the reader done, the pipe closed."""
        self._thread.join(STARTUP_SECONDS)
        self._stream.close()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            if len(self.lines) < 50:
                self.lines.append(line)
            found = _ENDPOINT.search(line)
            if found and self.address is None:
                self.address = found.group(1)
                self.announced.set()
        self.announced.set()  # Chromium ended


@pytest.fixture(name="devtools", scope="session")
def _devtools(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Chromium, by its DevTools WebSocket address."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    command = [chromium, *SWITCHES, f"--user-data-dir={profile}", "about:blank"]
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    endpoint = _Endpoint(process)
    try:
        endpoint.announced.wait(STARTUP_SECONDS)
        if endpoint.address is None:
            pytest.fail(f"Chromium did not start: {''.join(endpoint.lines)[-2000:]}")
        yield endpoint.address
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        endpoint.close()


@pytest.fixture(name="browser")
async def _browser(devtools: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.connect_over_cdp(devtools)
        try:
            yield browser
        finally:  # closes the contexts this test made (a connected browser stays up)
            await browser.close()
