"""What the page tests share: the pages served on a loopback port (`serving`), tabs (a
fresh browser context each, at a laptop's or a phone's size, failing the test on
any error the page's scripts raise), and users."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from playwright.async_api import Browser, Page
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
