"""What the page tests share: the pages served on a loopback port (`serving`), tabs (a
fresh browser context each, at a laptop's or a phone's size, failing the test on
any error the page's scripts raise), users and signing in, and a recording to play."""

from __future__ import annotations

import contextlib
import math
import struct
import wave
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from playwright.async_api import Browser, Page, expect
from servers import http_server
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.web.app import HttpServer
from pbx_tracker.web.auth import hash_password
from pbx_tracker.web.pages import Pages
from pbx_tracker.web.settings import WebUser

CHROMIUM = "/usr/bin/chromium"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclass
class Site:
    """The daemon's HTTP server with the pages, on a loopback port, and its database."""

    server: HttpServer
    engine: AsyncEngine

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


@contextlib.asynccontextmanager
async def serving(pages: Pages) -> AsyncIterator[Site]:
    async with http_server(pages=pages) as server:
        yield Site(server, pages.engine)


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


# a cheap scrypt cost: the tests sign in many times
CHEAP = {"n": 2**10, "r": 8, "p": 1}


def web_user(name: str, role: str, extension: str | None = None) -> WebUser:
    """A user of the pages whose password is ``<name>-password-1``."""
    return WebUser(
        name=name,
        role=role,  # type: ignore[arg-type]
        extension=extension,
        password_hash=hash_password(f"{name}-password-1", **CHEAP),
    )


class Served(Protocol):
    """A site under test: anything that gives its pages' addresses."""

    def url(self, path: str) -> str: ...


async def sign_in(page: Page, site: Served, name: str, path: str = "/calls") -> None:
    """Open ``path``, sign in on the login page it leads to as ``name``, and be back there."""
    await page.goto(site.url(path))
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Password").fill(f"{name}-password-1")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(site.url(path))


def write_wav(path: Path, seconds: float = 1.0) -> None:
    """A short 8 kHz mono tone, as Asterisk's MixMonitor writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(rate * seconds))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
