"""Users of the pages kept in the database, on SQLite and PostgreSQL.

The store functions, and the daemon's HTTP server on loopback with a real
HTTP client: a stored user signs in with no restart, a changed password or a
removed user ends their session at the next click, a changed role applies at
once, and with no user at all the sign-in page is a 404 that says what to do.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from browsing import CHEAP, Site, serving, web_user
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from pbx_tracker.store.models import WebUserRow
from pbx_tracker.web import users
from pbx_tracker.web.auth import hash_password
from pbx_tracker.web.pages import Pages
from pbx_tracker.web.pages_settings import WebSettings, WebUser

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
pytestmark = pytest.mark.timeout(60)


async def add(engine: AsyncEngine, user: WebUser) -> None:
    async with engine.begin() as conn:
        await users.add_user(conn, user, NOW)


# --- the store ---------------------------------------------------------------------------


async def test_added_users_are_found_listed_changed_and_removed(engine: AsyncEngine) -> None:
    await add(engine, web_user("vera", "marketer"))
    await add(engine, web_user("anna", "manager", "101"))
    async with engine.begin() as conn:
        assert [u.name for u in await users.stored_users(conn)] == ["anna", "vera"]
        anna = await users.stored_user(conn, "anna")
        assert anna is not None and (anna.role, anna.extension) == ("manager", "101")
        new_hash = hash_password("a-new-password", **CHEAP)
        assert await users.set_password(conn, "anna", new_hash, NOW)
        assert not await users.set_password(conn, "nobody", new_hash, NOW)
        changed = await users.stored_user(conn, "anna")
        assert changed is not None and changed.password_hash == new_hash
        assert await users.remove_user(conn, "vera")
        assert not await users.remove_user(conn, "vera")
        assert await users.stored_user(conn, "vera") is None


async def test_a_taken_or_overlong_name_is_refused(engine: AsyncEngine) -> None:
    await add(engine, web_user("anna", "manager", "101"))
    with pytest.raises(users.UserError, match="user 'anna' already exists"):
        await add(engine, web_user("anna", "admin"))
    with pytest.raises(users.UserError, match="longer than 64"):
        await add(engine, web_user("x" * 65, "admin"))
    async with engine.connect() as conn:
        kept = await users.stored_user(conn, "anna")
    assert kept is not None and kept.role == "manager"


async def test_the_config_wins_and_a_spoiled_row_signs_no_one_in(engine: AsyncEngine) -> None:
    await add(engine, web_user("root", "marketer"))
    await add(engine, web_user("mark", "marketer"))
    directory = users.Users(WebSettings(users=[web_user("root", "admin")]), engine)
    found = await directory.find("root")
    assert found is not None and found.role == "admin"
    async with engine.begin() as conn:
        table = WebUserRow.__table__
        await conn.execute(update(table).where(table.c.name == "mark").values(password_hash="x"))
    with capture_logs() as logs:
        assert await directory.find("mark") is None
    assert [e["event"] for e in logs] == ["web.stored_user_unusable"]
    assert await directory.find("") is None


# --- signing in over HTTP ----------------------------------------------------------------


@pytest.fixture(name="site")
async def _site(engine: AsyncEngine) -> AsyncIterator[Site]:
    """The pages with no user in the config."""
    pages = Pages(WebSettings(users=[], cookie_secure=False), engine, region="RU")
    async with serving(pages) as site:
        yield site


@pytest.fixture(name="browser")
async def _browser() -> AsyncIterator[aiohttp.ClientSession]:
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies of 127.0.0.1
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as session:
        yield session


async def sign_in(site: Site, browser: aiohttp.ClientSession, name: str, password: str) -> int:
    """POST the sign-in form as a browser would; the status of the page it lands on."""
    async with browser.get(site.url("/login")) as form:
        token = re.search(r'name="csrf" value="([^"]+)"', await form.text())
    assert token is not None
    fields = {"name": name, "password": password, "csrf": token[1], "next": "/"}
    async with browser.post(site.url("/login"), data=fields) as answer:
        return answer.status


async def page_status(site: Site, browser: aiohttp.ClientSession, path: str) -> tuple[int, str]:
    """The status of ``path`` and where it sent us (its path after redirects)."""
    async with browser.get(site.url(path)) as answer:
        return answer.status, answer.url.path


async def test_with_no_user_at_all_sign_in_says_how_to_add_one(
    site: Site, browser: aiohttp.ClientSession
) -> None:
    async with browser.get(site.url("/login")) as answer:
        assert answer.status == 404
        assert "pbx-tracker web user add" in await answer.text()
    assert await page_status(site, browser, "/callbacks") == (404, "/login")


async def test_a_stored_user_signs_in_and_changes_apply_at_the_next_click(
    site: Site, browser: aiohttp.ClientSession
) -> None:
    await add(site.engine, web_user("anna", "manager", "101"))  # no restart
    assert await sign_in(site, browser, "anna", "wrong-password") == 401
    assert await sign_in(site, browser, "anna", "anna-password-1") == 200
    assert await page_status(site, browser, "/callbacks") == (200, "/callbacks")

    async with site.engine.begin() as conn:  # now a marketer: the callbacks are not theirs
        table = WebUserRow.__table__
        await conn.execute(update(table).where(table.c.name == "anna").values(role="marketer"))
    assert await page_status(site, browser, "/callbacks") == (403, "/callbacks")
    assert await page_status(site, browser, "/reports") == (200, "/reports")

    async with site.engine.begin() as conn:
        await users.set_password(conn, "anna", hash_password("another-one-2", **CHEAP), NOW)
    assert await page_status(site, browser, "/reports") == (200, "/login")
    assert await sign_in(site, browser, "anna", "anna-password-1") == 401
    assert await sign_in(site, browser, "anna", "another-one-2") == 200

    async with site.engine.begin() as conn:
        await users.remove_user(conn, "anna")
        await users.add_user(conn, web_user("root", "admin"), NOW)  # someone can still sign in
    assert await page_status(site, browser, "/reports") == (200, "/login")
    assert await sign_in(site, browser, "anna", "another-one-2") == 401


async def test_a_config_user_needs_no_database_user(engine: AsyncEngine) -> None:
    pages = Pages(WebSettings(users=[web_user("mark", "marketer")]), engine, region="RU")
    assert await pages.users.any()
    assert await pages.users.find("mark") is not None
    assert await pages.users.find("nobody") is None
