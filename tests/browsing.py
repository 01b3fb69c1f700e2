"""Tabs for the page tests: a fresh browser context each, at a laptop's or a phone's size,
failing the test on any error the page's scripts raise."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from playwright.async_api import Browser, Page

from pbx_tracker.web.auth import hash_password
from pbx_tracker.web.pages_settings import WebUser

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
