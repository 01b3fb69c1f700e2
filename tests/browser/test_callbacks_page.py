"""The managers' callbacks page in a real browser (Chromium through Playwright).

The daemon's HTTP server runs on loopback with the pages on a real database
(SQLite and PostgreSQL), and "Call now" goes out through a real AMI
connection to the fake Asterisk, as in the daemon.  Sessions and the login
brake run on a clock the tests move; waits are on conditions with bounded
timeouts, never sleeps.  Screenshots go to the test's tmp_path.

Needs the Debian chromium at /usr/bin/chromium (``playwright install`` is never
run): skipped without it, failed under CI.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ami_settings import ListenerSettings, resynced_listener
from browsing import PHONE, tab, web_user
from clocks import SecondsClock
from playwright.async_api import Browser, Page, expect
from pydantic import SecretStr
from servers import http_server
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.finished_calls import apply_call
from pbx_tracker.callbacks.policy import Resolution, TaskStatus
from pbx_tracker.callbacks.ringme import RingMe
from pbx_tracker.callbacks.settings import CallbackSettings, RingMeSettings
from pbx_tracker.calls.records import RingAttempt
from pbx_tracker.phones import display_number
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.store.calls import save_call
from pbx_tracker.web.app import HttpServer
from pbx_tracker.web.pages import Pages
from pbx_tracker.web.settings import WebSettings
from stored import missed_call

WAIT_MS = 10_000
PASSWORD = "anna-password-1"
SESSION_MINUTES = 30

pytestmark = pytest.mark.timeout(90)


user = web_user


USERS = [user("anna", "manager", "101"), user("boris", "manager", "102")]
USERS += [user("mark", "marketer"), user("root", "admin")]


# --- the browser ------------------------------------------------------------------


# --- the daemon's side ---------------------------------------------------------------


@dataclass
class Site:
    server: HttpServer
    pages: Pages
    clock: SecondsClock
    engine: AsyncEngine
    asterisk: FakeAsterisk

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    async def task(self, task_id: int) -> tasks.CallbackTask:
        async with self.engine.connect() as conn:
            found = await tasks.get_task(conn, task_id)
        assert found is not None
        return found

    async def missed(
        self,
        customer: str,
        manager: str,
        minutes_ago: float,
        tries: int = 1,
        caller_name: str | None = None,
    ) -> int:
        """An open callback task for `manager`: `tries` missed calls from `customer` (who gave
        `caller_name`)."""
        settings = CallbackSettings()
        change = None
        async with self.engine.begin() as conn:
            for number in range(tries):
                start = datetime.now(UTC) - timedelta(minutes=minutes_ago - number)
                ring = RingAttempt(
                    manager, f"PJSIP/{manager}-0000000{number}", start, start, "noanswer"
                )
                record = missed_call(f"{customer}.{number}", start, customer).replace(
                    source="yandex",
                    caller_name=caller_name,
                    attempts=(ring,),
                    variables={"ROUTE_GROUP": "sales", "ROUTE_MANAGER": manager},
                )
                await save_call(conn, record)
                change = await apply_call(conn, record, settings, now=start)
        assert change is not None and change.task.assignee == manager
        return change.task_id


@contextlib.asynccontextmanager
async def ami_ringme(asterisk: FakeAsterisk) -> AsyncIterator[RingMe]:
    """RingMe on a logged-in AMI connection, as the daemon has it."""
    settings = ListenerSettings(SecretStr("tracker-secret"), port=asterisk.port)
    async with resynced_listener(settings, WAIT_MS / 1000) as listener:

        async def send(action: Mapping[str, str], timeout: float) -> object:  # noqa: ASYNC109
            return await listener.send_action(action, timeout=timeout)

        ringme = RingMeSettings.model_validate({"context": "callback"})
        yield RingMe(send, ringme, region="RU")


@pytest.fixture(name="site")
async def _site(engine: AsyncEngine, asterisk: FakeAsterisk) -> AsyncIterator[Site]:
    clock = SecondsClock()
    web = WebSettings(users=USERS, session_minutes=SESSION_MINUTES, cookie_secure=False)
    async with ami_ringme(asterisk) as ringme:
        pages = Pages(
            web,
            engine,
            region="RU",
            ringme=ringme,
            dial=lambda extension: f"IAX2/{extension}/{extension}",
            clock=clock,
            poll_seconds=0.5,
        )
        async with http_server(pages=pages) as server:
            yield Site(server, pages, clock, engine, asterisk)


async def sign_in(page: Page, site: Site, name: str, password: str | None = None) -> None:
    await page.goto(site.url("/callbacks"))
    await expect(page).to_have_url(site.url("/login?next=/callbacks"))
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Password").fill(password or f"{name}-password-1")
    await page.get_by_role("button", name="Sign in").click()


async def csrf_of(page: Page) -> str:
    token = await page.locator("#tasks").get_attribute("data-csrf")
    assert token
    return token


def shown(number: str) -> str:
    return display_number(number, "RU")


# --- the tests ----------------------------------------------------------------------------


async def test_a_manager_calls_back_and_marks_done(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """A manager sees only their own callbacks, newest first, with the customer's number, source,
    tries and waiting time; Call now rings their phone then the customer, and Done removes the task,
    also on a phone-sized screen."""
    mine = await site.missed("+79161234567", "101", minutes_ago=12, tries=3)
    older = await site.missed("+79167654321", "101", minutes_ago=47)
    await site.missed("+79160000000", "102", minutes_ago=3)  # boris's: not on anna's page
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        await expect(page).to_have_url(site.url("/callbacks"))
        rows = page.locator(".task")
        await expect(rows).to_have_count(2)
        first = page.locator(f"#task-{mine}")
        await expect(rows.first).to_have_id(f"task-{mine}")  # newest first
        await expect(first.locator(".customer")).to_have_text(shown("+79161234567"))
        await expect(first.locator(".meta")).to_contain_text("yandex")
        await expect(first.locator(".meta")).to_contain_text("3 calls")
        await expect(first.locator(".age")).to_have_text("12 min")
        await expect(page.locator(f"#task-{older} .age")).to_have_text("47 min")
        await page.screenshot(path=tmp_path / "callbacks-laptop.png", full_page=True)

        await first.get_by_role("button", name="Call now").click()
        await expect(page.locator("#toast")).to_contain_text("Your phone rings now")
        await page.screenshot(path=tmp_path / "callbacks-calling.png", full_page=True)
        await site.asterisk.wait_for_action("Originate", timeout=WAIT_MS / 1000)
        (originate,) = site.asterisk.actions_named("Originate")
        assert (originate["Channel"], originate["Exten"]) == ("IAX2/101/101", "79161234567")
        assert f"CALLBACK_TASK={mine}" in originate["Variable"]
        assert (await site.task(mine)).ringme_attempts == 1

        await first.get_by_role("button", name="Done").click()
        await expect(first).to_have_count(0)
        await expect(rows).to_have_count(1)
        await expect(page.locator("#task-count")).to_have_text("1")
        closed = await site.task(mine)
        assert (closed.status, closed.resolution) == (TaskStatus.DONE, Resolution.CLOSED_BY_MANAGER)
        assert closed.resolved_by == "anna"

    async with tab(browser, PHONE) as phone:
        await sign_in(phone, site, "anna")
        await expect(phone.locator(".task")).to_have_count(1)
        await phone.screenshot(path=tmp_path / "callbacks-phone.png", full_page=True)


async def test_a_new_callback_appears_without_a_reload(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """A callback opened while the page is open appears on it without a reload, marked "just now",
    and the tab title counts it."""
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        await expect(page.locator("#empty")).to_be_visible()
        await page.screenshot(path=tmp_path / "callbacks-empty.png", full_page=True)
        await page.evaluate("() => { window.notReloaded = true; }")
        task_id = await site.missed("+79165550101", "101", minutes_ago=0)
        row = page.locator(f"#task-{task_id}")
        await expect(row).to_be_visible(timeout=WAIT_MS)
        await expect(row.locator(".age")).to_have_text("just now")
        await expect(page.locator("#empty")).to_be_hidden()
        await expect(page).to_have_title("Callbacks (1) · pbx-tracker")
        assert await page.evaluate("() => window.notReloaded") is True


async def test_the_callers_name_shows_under_the_number_as_text(
    site: Site, browser: Browser
) -> None:
    """The name the caller's phone gave shows under their number, as text (markup in it is not
    run), drawn by the page and again by its script when a new callback comes; a "name"
    that is only the number again is left out."""
    named = await site.missed("+79161234567", "101", 5, caller_name="Ivan <b>Petrov</b>")
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        name = page.locator(f"#task-{named} .caller-name")
        await expect(name).to_have_text("Ivan <b>Petrov</b>")
        bare = await site.missed("+79160000000", "101", 3, caller_name="+7 916 000-00-00")
        await expect(page.locator(f"#task-{bare}")).to_be_visible(timeout=WAIT_MS)
        await expect(name).to_have_text("Ivan <b>Petrov</b>")  # drawn by the script now
        await expect(page.locator(f"#task-{bare} .caller-name")).to_have_count(0)
        assert await page.locator("#tasks b").count() == 0


async def test_an_admin_sees_every_managers_callbacks(site: Site, browser: Browser) -> None:
    """An admin sees every manager's open callbacks under "All open callbacks", each saying whose it
    is."""
    await site.missed("+79161234567", "101", minutes_ago=5)
    await site.missed("+79160000000", "102", minutes_ago=3)
    async with tab(browser) as page:
        await sign_in(page, site, "root")
        await expect(page.locator(".task")).to_have_count(2)
        await expect(page.locator("h1")).to_have_text("All open callbacks")
        await expect(page.locator(".task").first.locator(".meta")).to_contain_text("for 102")


async def test_a_marketer_may_not_see_callbacks(site: Site, browser: Browser) -> None:
    """A marketer opening the callbacks page or its data gets "Not for you" (403), while the front
    page greets them."""
    async with tab(browser) as page:
        await sign_in(page, site, "mark")
        await expect(page.locator("h1")).to_have_text("Not for you")
        answer = await page.request.get(site.url("/callbacks"))
        assert answer.status == 403
        answer = await page.request.get(site.url("/callbacks/tasks.json"))
        assert answer.status == 403
        await page.goto(site.url("/"))
        await expect(page.locator("h1")).to_have_text("Hello, mark")


async def test_a_manager_may_not_act_on_another_managers_callback(
    site: Site, browser: Browser
) -> None:
    """A manager cannot close or call back another manager's task: both are refused 403 and nothing
    is originated."""
    theirs = await site.missed("+79160000000", "102", minutes_ago=3)
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        token = await csrf_of(page)
        for action in ("done", "call"):
            answer = await page.request.post(
                site.url(f"/callbacks/{theirs}/{action}"), form={"csrf": token}
            )
            assert answer.status == 403
        assert (await site.task(theirs)).is_open
        assert site.asterisk.actions_named("Originate") == []


async def test_a_wrong_password_gives_the_form_again_and_is_logged_without_it(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """A wrong password shows the form again with the name kept and the password cleared, is logged
    without the password, and after five failures even the right one must wait until the brake
    ends."""
    async with tab(browser, PHONE) as page:
        with capture_logs() as logs:
            for name in ("anna", "nobody"):
                async with page.expect_response(lambda r: r.url.endswith("/login")) as sent:
                    await sign_in(page, site, name, password="not-the-password")
                assert (await sent.value).status == 401
                await expect(page.get_by_role("alert")).to_have_text("Wrong name or password.")
                await expect(page.get_by_label("Name")).to_have_value(name)
                await expect(page.get_by_label("Password")).to_have_value("")
        await page.screenshot(path=tmp_path / "login-wrong-phone.png", full_page=True)
        failed = [entry for entry in logs if entry["event"] == "web.login_failed"]
        assert [entry["user"] for entry in failed] == ["anna", "nobody"]
        assert "not-the-password" not in repr(logs)

        # After five failures in a row from this client: wait, even with the right password.
        for _ in range(3):
            await sign_in(page, site, "anna", password="still-wrong")
        async with page.expect_response(lambda r: r.url.endswith("/login")) as sent:
            await sign_in(page, site, "anna")
        assert (await sent.value).status == 429
        await expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
        site.clock.advance(3600)
        await sign_in(page, site, "anna")
        await expect(page).to_have_url(site.url("/callbacks"))


async def test_an_expired_session_goes_back_to_the_login(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """When the session expires the open page goes to the sign-in form saying the session ended, and
    coming back later leads there too."""
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        await expect(page.locator("#tasks")).to_have_attribute("data-ready", "1")
        site.clock.advance(SESSION_MINUTES * 60 + 1)
        # the page's next poll is refused: the browser goes to the sign-in form
        await expect(page).to_have_url(site.url("/login?next=/callbacks&expired=1"))
        await expect(page.get_by_role("status")).to_have_text(
            "Your session ended. Please sign in again."
        )
        await page.screenshot(path=tmp_path / "login-expired.png", full_page=True)
        await page.goto(site.url("/callbacks"))
        await expect(page).to_have_url(site.url("/login?next=/callbacks&expired=1"))


async def test_a_forged_csrf_token_is_refused_and_changes_nothing(
    site: Site, browser: Browser
) -> None:
    """A forged or missing CSRF token on Done, Call now, Log out or the sign-in form is refused 403
    and logged, the task is unchanged and the manager stays signed in until they log out."""
    task_id = await site.missed("+79161234567", "101", minutes_ago=5)
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        token = await csrf_of(page)
        with capture_logs() as logs:
            for form in ({"csrf": "forged-" + token[7:]}, {}):
                for action in ("done", "call"):
                    answer = await page.request.post(
                        site.url(f"/callbacks/{task_id}/{action}"), form=form
                    )
                    assert answer.status == 403
            answer = await page.request.post(site.url("/logout"), form={"csrf": "forged"})
            assert answer.status == 403
        assert sum(entry["event"] == "web.csrf_refused" for entry in logs) == 5
        task = await site.task(task_id)
        assert task.is_open and task.ringme_attempts == 0
        assert site.asterisk.actions_named("Originate") == []
        await page.reload()
        await expect(page.locator(f"#task-{task_id}")).to_be_visible()  # still signed in

        # the sign-in form has its own token
        answer = await page.request.post(
            site.url("/login"), form={"name": "anna", "password": PASSWORD, "csrf": "x"}
        )
        assert answer.status == 403

        await page.get_by_role("button", name="Log out").click()
        await expect(page).to_have_url(site.url("/login"))
        answer = await page.request.get(site.url("/callbacks/tasks.json"))
        assert answer.status == 401


async def test_a_form_left_open_too_long_says_it_has_expired(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """Pressing Done on a page whose session token is no longer good (without the page's
    script) shows 403 "This form has expired" telling to reload, logged, and the task
    stays open."""
    task_id = await site.missed("+79161234567", "101", minutes_ago=5)
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        # the script's first refresh draws the list again: change the form after it
        await expect(page.locator("#tasks")).to_have_attribute("data-ready", "1")
        form = page.locator(f"#task-{task_id} form[action$='/done']")
        await form.evaluate(
            "form => { form.removeAttribute('data-ajax'); form.elements.csrf.value = 'stale'; }"
        )
        with capture_logs() as logs:
            async with page.expect_response(site.url(f"/callbacks/{task_id}/done")) as sent:
                await form.get_by_role("button", name="Done").click()
        assert (await sent.value).status == 403
        await expect(page.locator("h1")).to_have_text("This form has expired")
        await expect(page).to_have_title("This form has expired · pbx-tracker")
        await expect(page.locator(".problem")).to_contain_text("Reload the page and try again.")
        assert "web.csrf_refused" in [entry["event"] for entry in logs]
        await page.screenshot(path=tmp_path / "callbacks-expired-form.png", full_page=True)
    assert (await site.task(task_id)).is_open


async def test_the_buttons_answer_json_when_asked_and_go_back_otherwise(
    site: Site, browser: Browser
) -> None:
    """Done answers JSON to a request that asks for it (the page's script) and 303 back to
    the list to a plain form, and Log out follows the same rule."""
    plain_id = await site.missed("+79161234567", "101", minutes_ago=5)
    asked_id = await site.missed("+79167654321", "101", minutes_ago=4)
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        token = await csrf_of(page)
        answer = await page.request.post(
            site.url(f"/callbacks/{plain_id}/done"), form={"csrf": token}, max_redirects=0
        )
        assert (answer.status, answer.headers["location"]) == (303, "/callbacks")
        answer = await page.request.post(
            site.url(f"/callbacks/{asked_id}/done"),
            form={"csrf": token},
            headers={"Accept": "application/json"},
        )
        assert answer.status == 200
        assert await answer.json() == {"ok": True, "message": "Marked as done."}
        answer = await page.request.post(
            site.url("/logout"), form={"csrf": token}, headers={"Accept": "application/json"}
        )
        assert (answer.status, await answer.json()) == (200, {"ok": True, "message": "Signed out."})
        answer = await page.request.get(site.url("/callbacks/tasks.json"))
        assert answer.status == 401  # signed out
    assert not (await site.task(plain_id)).is_open and not (await site.task(asked_id)).is_open
