"""Users of the pages kept in the database, on SQLite and PostgreSQL.

The store functions, and the daemon's HTTP server on loopback with a real
HTTP client: a stored user signs in with no restart, a changed password or a
removed user ends their session at the next click, a changed role applies at
once, and with no user at all the sign-in page is a 404 that says what to do.
Signing in leads only to a path on this site, whatever ``next`` holds.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import quote, unquote

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
from pbx_tracker.web.settings import WebSettings, WebUser

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
pytestmark = pytest.mark.timeout(60)


async def add(engine: AsyncEngine, user: WebUser) -> None:
    async with engine.begin() as conn:
        await users.add_user(conn, user, NOW)


# --- the store ---------------------------------------------------------------------------


async def test_added_users_are_found_listed_changed_and_removed(engine: AsyncEngine) -> None:
    """A user added with pbx-tracker web user is listed, their password can be changed and they can
    be removed, with unknown names reported as not changed."""
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
    """Adding a user whose name is taken or longer than 64 characters is refused saying so, and the
    existing user is kept."""
    await add(engine, web_user("anna", "manager", "101"))
    with pytest.raises(users.UserError, match="user 'anna' already exists"):
        await add(engine, web_user("anna", "admin"))
    with pytest.raises(users.UserError, match="longer than 64"):
        await add(engine, web_user("x" * 65, "admin"))
    async with engine.connect() as conn:
        kept = await users.stored_user(conn, "anna")
    assert kept is not None and kept.role == "manager"


async def test_the_config_wins_and_a_spoiled_row_signs_no_one_in(engine: AsyncEngine) -> None:
    """A user in the config wins over a stored one of the same name, and a stored user with a
    spoiled password hash cannot sign in, with one line logged."""
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
    """With no user at all the sign-in page answers 404 saying to run pbx-tracker web user add, and
    pages lead there."""
    async with browser.get(site.url("/login")) as answer:
        assert answer.status == 404
        assert "pbx-tracker web user add" in await answer.text()
    assert await page_status(site, browser, "/callbacks") == (404, "/login")


async def test_a_stored_user_signs_in_and_changes_apply_at_the_next_click(
    site: Site, browser: aiohttp.ClientSession
) -> None:
    """A user added while the daemon runs can sign in; a changed role, a changed password or their
    removal applies at their next click."""
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
    """A user given only in the config can sign in without any user stored in the database."""
    pages = Pages(WebSettings(users=[web_user("mark", "marketer")]), engine, region="RU")
    assert await pages.users.any()
    assert await pages.users.find("mark") is not None
    assert await pages.users.find("nobody") is None


# --- where signing in leads: a path on this site only ------------------------------------

# what `next` holds once the query or the form is read; each would lead off the site (a
# browser drops tab, CR and LF inside a URL and reads a backslash as a slash) or could not
# go in a header at all
HOSTILE_NEXT = [
    "/\t/evil.example/x",
    "/\r/evil.example/x",
    "/\n/evil.example/x",
    "/\r\nSet-Cookie: pbx_session=stolen",
    "\n",
    "/\\evil.example",
    "/\\/evil.example",
    "//evil.example",
    "///evil.example",
    "/%2F/evil.example",  # sent once more encoded: read back as "/%2F/..."
    "/%2f%2Fevil.example",
    "/%5Cevil.example",
    "https://evil.example/",
    "http:/evil.example",
    "javascript:alert(1)",
    "evil.example",
    "/\x00",
    "/\x7f/evil.example",
    "/\u3000/evil.example",
    "/\u2028/evil.example",
    "/\u200b/evil.example",
    " /reports",
]


async def _form_token(site: Site, browser: aiohttp.ClientSession, query: str = "") -> str:
    async with browser.get(site.url(f"/login{query}")) as form:
        assert form.status == 200
        token = re.search(r'name="csrf" value="([^"]+)"', await form.text())
    assert token is not None
    return token[1]


async def _signed_in_to(site: Site, browser: aiohttp.ClientSession, next_path: str) -> str:
    """Sign in as anna with ``next_path`` in the form; where the answer sends the browser."""
    fields = {
        "name": "anna",
        "password": "anna-password-1",
        "csrf": await _form_token(site, browser),
        "next": next_path,
    }
    async with browser.post(site.url("/login"), data=fields, allow_redirects=False) as answer:
        assert answer.status == 303
        return answer.headers["Location"]


async def _login_with_next(site: Site, browser: aiohttp.ClientSession, next_path: str) -> str:
    """GET /login?next=… (the value encoded once) while signed in; where it sends us."""
    query = f"/login?next={quote(next_path, safe='')}"
    async with browser.get(site.url(query), allow_redirects=False) as answer:
        assert answer.status == 303
        return answer.headers["Location"]


@pytest.mark.parametrize("next_path", HOSTILE_NEXT)
async def test_signing_in_never_leads_off_the_site(
    site: Site, browser: aiohttp.ClientSession, next_path: str
) -> None:
    """Whatever a hostile next link holds, signing in leads to the site's own front page, never to
    another site."""
    await add(site.engine, web_user("anna", "manager", "101"))
    form_query = f"?next={quote(next_path, safe='')}"
    async with browser.get(site.url(f"/login{form_query}")) as form:
        assert 'name="next" value="/"' in await form.text()

    assert await _signed_in_to(site, browser, next_path) == "/"
    assert await _login_with_next(site, browser, next_path) == "/"  # already signed in


async def test_a_next_decoded_from_the_query_is_checked_as_read(
    site: Site, browser: aiohttp.ClientSession
) -> None:
    """``/%2F/evil`` in the query reads as ``//evil``: refused like it."""
    await add(site.engine, web_user("anna", "manager", "101"))
    await _signed_in_to(site, browser, "/")
    for query in ("/login?next=/%2F/evil.example", "/login?next=/%09/evil.example/x"):
        async with browser.get(site.url(query), allow_redirects=False) as answer:
            assert (answer.status, answer.headers["Location"]) == (303, "/")


@pytest.mark.parametrize("line_break", ["%0a", "%0d%0a", "%0d"])
async def test_a_line_break_in_next_gets_a_plain_redirect_home(
    site: Site, browser: aiohttp.ClientSession, line_break: str
) -> None:
    """aiohttp refuses a header with a line break: no error page, no dropped connection."""
    await add(site.engine, web_user("anna", "manager", "101"))
    hostile = unquote(f"/{line_break}Location:%20https://evil.example/")
    with capture_logs() as logs:
        assert await _signed_in_to(site, browser, hostile) == "/"
        query = f"/login?next=/{line_break}/evil.example"
        async with browser.get(site.url(query), allow_redirects=False) as answer:
            assert (answer.status, answer.headers["Location"]) == (303, "/")
    assert [entry for entry in logs if entry["log_level"] in ("error", "critical")] == []


@pytest.mark.parametrize(
    "next_path",
    ["/callbacks", "/calls?from=2026-11-01&to=2026-11-30", "/reports?from=2026-11-01#charts"],
)
async def test_signing_in_leads_to_the_page_asked_for(
    site: Site, browser: aiohttp.ClientSession, next_path: str
) -> None:
    """Signing in with a page of this site as next leads to that page, its query and fragment
    kept."""
    await add(site.engine, web_user("anna", "manager", "101"))
    assert await _signed_in_to(site, browser, next_path) == next_path
    assert await _login_with_next(site, browser, next_path) == next_path


async def test_a_page_asked_for_before_signing_in_is_where_signing_in_leads(
    site: Site, browser: aiohttp.ClientSession
) -> None:
    """A page opened before signing in, Cyrillic search included, is where the sign-in form then
    leads."""
    await add(site.engine, web_user("anna", "manager", "101"))
    path = "/calls?from=2026-11-01&q=%D0%90%20%2B7"
    async with browser.get(site.url(path), allow_redirects=False) as answer:
        login = answer.headers["Location"]
    async with browser.get(site.url(login)) as form:
        field = re.search(r'name="next" value="([^"]+)"', await form.text())
    assert field is not None and html.unescape(field[1]) == path
    assert await _signed_in_to(site, browser, html.unescape(field[1])) == path
