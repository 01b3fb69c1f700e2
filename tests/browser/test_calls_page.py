"""The calls list and recording playback in a real browser (Chromium through Playwright).

The daemon's HTTP server runs on loopback with the pages on a real database
(SQLite and PostgreSQL); "today" is a fixed moment in Europe/Moscow, and the
recordings folder is a tmp folder with a small WAV file the test writes.
Waits are on conditions with bounded timeouts, never sleeps.  Screenshots go
to the test's tmp_path.

Needs the Debian chromium at /usr/bin/chromium (``playwright install`` is never
run): skipped without it, failed under CI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from browsing import LAPTOP, PHONE, sign_in, tab, web_user, write_wav
from playwright.async_api import Browser, expect
from servers import http_server
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from pbx_tracker.callbacks import tasks
from pbx_tracker.calls.records import CallRecord, CallStatus, RingAttempt, SpamReason
from pbx_tracker.phones import display_number
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.store.calls import save_calls
from pbx_tracker.store.models import CallRow
from pbx_tracker.web.app import HttpServer
from pbx_tracker.web.pages import Pages
from pbx_tracker.web.settings import WebSettings
from stored import missed_call

WAIT_MS = 10_000
MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # 15:00 in Moscow
TODAY = "2026-03-10"
YESTERDAY = "2026-03-09"
SQLISH = "' OR 1=1 --"

pytestmark = pytest.mark.timeout(90)


user = web_user


USERS = [user("anna", "manager", "101"), user("mark", "marketer"), user("root", "admin")]
MANAGERS = {"101": "Anna Petrova", "102": "Boris Orlov"}


# --- the browser ------------------------------------------------------------------


# --- the daemon's side ---------------------------------------------------------------


@dataclass
class Site:
    server: HttpServer
    engine: AsyncEngine
    recordings: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    async def add(self, *records: CallRecord) -> None:
        async with self.engine.begin() as conn:
            await save_calls(conn, list(records))

    async def call_id(self, linkedid: str) -> int:
        async with self.engine.connect() as conn:
            query = select(CallRow.id).where(CallRow.linkedid == linkedid)
            return int((await conn.execute(query)).scalar_one())


@pytest.fixture(name="site")
async def _site(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Site]:
    recordings = tmp_path / "monitor"
    recordings.mkdir()
    rules = ReportRules(
        target_seconds=30, unique_days=None, model="last_touch", sla_minutes=15, zone=MOSCOW
    )
    web = WebSettings(users=USERS, cookie_secure=False)
    pages = Pages(
        web,
        engine,
        region="RU",
        now=lambda: NOW,
        recordings_dir=recordings,
        rules=rules,
        managers=MANAGERS,
    )
    async with http_server(pages=pages) as server:
        yield Site(server, engine, recordings)


def call(
    linkedid: str,
    moscow: str,
    caller: str | None,
    *,
    answered_by: str | None = None,
    talk: int = 0,
    did: str = "+74951234567",
    **changes: Any,
) -> CallRecord:
    """A call that started at ``moscow`` (``2026-03-10 14:05``, Moscow time)."""
    start = datetime.fromisoformat(moscow).replace(tzinfo=MOSCOW).astimezone(UTC)
    record = missed_call(linkedid, start, caller).replace(did=did, **changes)
    if answered_by is None:
        return record
    return record.replace(
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by=answered_by,
        answered_at=start + timedelta(seconds=8),
        ring_seconds=8,
        talk_seconds=talk,
        ended_at=start + timedelta(seconds=8 + talk),
    )


def shown(number: str) -> str:
    return display_number(number, "RU")


DAY_CALLS = [
    call(
        "c1",
        "2026-03-10 09:15",
        "+79161234567",
        answered_by="101",
        talk=95,
        source="yandex",
        campaign="brand",
        utm_term="buy a sofa",
        recording_path="2026/03/10/in-c1.wav",
    ),
    call("c2", "2026-03-10 11:40", "+79167654321", source="google"),
    call(
        "c3",
        "2026-03-10 13:05",
        None,
        answered_by="102",
        talk=20,
        source="google",
        did="+74957654321",
        attempts=(
            RingAttempt(
                "101",
                "PJSIP/101-1",
                datetime(2026, 3, 10, 10, 5, tzinfo=UTC),
                datetime(2026, 3, 10, 10, 5, 10, tzinfo=UTC),
                "noanswer",
            ),
        ),
    ),
    call("c4", "2026-03-10 14:30", "+79035550000"),
    call("old", "2026-03-09 18:00", "+79161234567", source="yandex"),
]


# --- the tests ----------------------------------------------------------------------------


async def test_the_calls_of_today_newest_first_and_filtered(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """The calls page shows today's calls newest first with time, caller, number dialled, source,
    keyword, status, manager, ring and talk times and a play link, and its filters narrow the list;
    a marketer on a phone sees it without the callbacks link."""
    await site.add(*DAY_CALLS)
    write_wav(site.recordings / "2026/03/10/in-c1.wav")
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        rows = page.locator("#calls tbody tr")
        await expect(rows).to_have_count(4)
        ids = [await site.call_id(name) for name in ("c4", "c3", "c2", "c1")]
        for index, call_id in enumerate(ids):
            await expect(rows.nth(index)).to_have_id(f"call-{call_id}")
        await expect(page.locator("#summary")).to_have_text("Tue 10 Mar 2026: 4 calls")
        first = page.locator(f"#call-{ids[3]}")
        await expect(first.locator(".call-time")).to_have_text("09:15")
        await expect(first.locator(".caller")).to_have_text(shown("+79161234567"))
        await expect(first.locator(".did")).to_have_text(f"to {shown('+74951234567')}")
        await expect(first.locator(".c-source")).to_contain_text("yandex")
        await expect(first.locator(".c-source")).to_contain_text("brand")
        await expect(first.locator(".keyword")).to_have_text("“buy a sofa”")
        await expect(first.locator(".badge")).to_have_text("Answered")
        await expect(first.locator(".c-manager")).to_have_text("Anna Petrova (101)")
        await expect(first.locator(".c-times")).to_contain_text("ring 0:08")
        await expect(first.locator(".c-times")).to_contain_text("talk 1:35")
        await expect(
            first.get_by_role("link", name=f"Play the recording of call {ids[3]}")
        ).to_be_visible()
        missed = page.locator(f"#call-{ids[2]}")
        await expect(missed.locator(".badge")).to_have_text("Missed")
        await expect(missed.locator(".reason")).to_have_text("no answer")
        await expect(missed.locator(".c-play a")).to_have_count(0)
        await expect(page.locator(f"#call-{ids[1]} .caller")).to_have_text("Hidden number")
        await expect(page.locator(f"#call-{ids[0]} .c-source")).to_have_text("no source")
        await page.screenshot(path=tmp_path / "calls-laptop.png", full_page=True)

        async def only(expected: list[str]) -> None:
            want = [f"call-{await site.call_id(name)}" for name in expected]
            await expect(rows).to_have_count(len(want))
            for index, row_id in enumerate(want):
                await expect(rows.nth(index)).to_have_id(row_id)

        await page.get_by_label("Status").select_option("missed")
        await page.get_by_role("button", name="Show").click()
        await only(["c4", "c2"])
        await page.get_by_label("Source").fill("Google")  # the case does not matter
        await page.get_by_role("button", name="Show").click()
        await only(["c2"])
        await page.goto(site.url("/calls"))
        await page.get_by_label("Manager").select_option("101")  # answered or rang
        await page.get_by_role("button", name="Show").click()
        await only(["c3", "c1"])
        await page.goto(site.url("/calls?caller=916 123"))
        await only(["c1"])
        await page.goto(site.url("/calls?did=%2B7 495 765"))
        await only(["c3"])
        await page.goto(site.url("/calls"))
        await page.get_by_label("From").fill(YESTERDAY)
        await page.get_by_label("Source").fill("yandex")
        await page.get_by_role("button", name="Show").click()
        await only(["c1", "old"])
        await expect(rows.nth(1).locator(".call-date")).to_have_text("Mon 09 Mar")
        await page.goto(site.url(f"/calls?from={TODAY}&status=answered&source=nobody"))
        await expect(page.locator("#empty")).to_be_visible()

    async with tab(browser, PHONE) as phone:
        await sign_in(phone, site, "mark")
        await expect(phone.locator("#calls tbody tr")).to_have_count(4)
        await expect(phone.get_by_role("link", name="Reports")).to_be_visible()
        await expect(phone.get_by_role("link", name="Callbacks")).to_have_count(0)
        await phone.screenshot(path=tmp_path / "calls-phone.png", full_page=True)


async def test_who_answered_on_a_mobile_or_an_undeclared_phone_is_shown(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """A manager who took a call on their mobile shows with that number, and a phone or
    number no manager declared shows as "answered: " and it, on a laptop and a phone."""
    mobile = "+79160000102"
    nobody_declared: dict[str, Any] = {"status": CallStatus.ANSWERED, "missed_reason": None}
    await site.add(
        call("desk", "2026-03-10 09:00", "+79161234567", answered_by="101", talk=40,
             answered_via="device"),
        call("mobile", "2026-03-10 10:00", "+79167654321", answered_by="102", talk=65,
             answered_via="number", answered_number=mobile, transfer_wait_seconds=12),
        call("device", "2026-03-10 11:00", "+79035550000", **nobody_declared,
             answered_via="device", answered_number="PJSIP/104"),
        call("stranger", "2026-03-10 12:00", "+79035551111", **nobody_declared,
             answered_via="number", answered_number="+79031112233"),
    )  # fmt: skip
    ids = {name: await site.call_id(name) for name in ("desk", "mobile", "device", "stranger")}
    for viewport, name in ((LAPTOP, "laptop"), (PHONE, "phone")):
        async with tab(browser, viewport) as page:
            await sign_in(page, site, "root")
            managers = {key: page.locator(f"#call-{ids[key]} .c-manager") for key in ids}
            await expect(managers["desk"]).to_have_text("Anna Petrova (101)")
            await expect(managers["mobile"]).to_contain_text("Boris Orlov (102)")
            await expect(managers["mobile"].locator(".answered-on")).to_have_text(
                f"on {shown(mobile)}"
            )
            await expect(managers["mobile"].locator(".answered-on")).to_be_visible()
            await expect(managers["device"]).to_have_text("answered: PJSIP/104")
            await expect(managers["device"]).to_be_visible()
            await expect(managers["stranger"]).to_have_text(f"answered: {shown('+79031112233')}")
            await expect(managers["stranger"].locator(".answered-number")).to_be_visible()
            wrap = page.locator(".table-wrap")
            assert await wrap.evaluate("box => box.scrollWidth <= box.clientWidth")  # no scroll
            await page.screenshot(path=tmp_path / f"calls-answered-on-{name}.png", full_page=True)


async def test_a_long_day_has_pages(site: Site, browser: Browser, tmp_path: Path) -> None:
    """A day of 55 calls is shown 50 to a page, with links to the older and the newer page."""
    await site.add(
        *(call(f"p{n}", f"2026-03-10 08:{n // 60:02d}", f"+7916000{n:04d}") for n in range(55))
    )
    async with tab(browser) as page:
        await sign_in(page, site, "root")
        await expect(page.locator("#calls tbody tr")).to_have_count(50)
        await expect(page.locator("#summary")).to_contain_text("1\u201350 of 55 calls")
        await page.get_by_role("link", name="Older →").click()
        await expect(page.locator("#calls tbody tr")).to_have_count(5)
        await expect(page.locator(".pager-at")).to_have_text("Page 2 of 2")
        await page.screenshot(path=tmp_path / "calls-page-2.png", full_page=True)
        await page.get_by_role("link", name="← Newer").click()
        await expect(page.locator("#calls tbody tr")).to_have_count(50)


async def test_a_recording_plays_in_the_browser(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """A call's recording plays in the browser on a laptop and on a phone, served whole or by byte
    ranges as audio/wav."""
    await site.add(*DAY_CALLS)
    write_wav(site.recordings / "2026/03/10/in-c1.wav", seconds=2.0)
    call_id = await site.call_id("c1")
    for viewport, name in ((LAPTOP, "laptop"), (PHONE, "phone")):
        async with tab(browser, viewport) as page:
            await sign_in(page, site, "anna")
            await page.locator(f"#call-{call_id}").get_by_role("link", name="Play").click()
            audio = page.locator(f"#call-{call_id}-player audio")
            await expect(audio).to_have_count(1)
            await page.wait_for_function(
                "() => { const a = document.querySelector('audio');"
                " return a && a.readyState >= 1 && a.duration > 1.9 && a.duration < 2.1; }",
                timeout=WAIT_MS,
            )
            await page.screenshot(path=tmp_path / f"calls-playing-{name}.png", full_page=True)

            answer = await page.request.get(
                site.url(f"/recordings/{call_id}"), headers={"Range": "bytes=0-99"}
            )
            assert answer.status == 206
            assert answer.headers["content-type"] == "audio/wav"
            assert answer.headers["content-range"].startswith("bytes 0-99/")
            assert (await answer.body())[:4] == b"RIFF" and len(await answer.body()) == 100
            whole = await page.request.get(site.url(f"/recordings/{call_id}"))
            assert whole.status == 200
            assert whole.headers["accept-ranges"] == "bytes"


async def test_recordings_outside_the_folder_are_refused(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """A recording path leading out of the recordings folder, through a symlink or to a file that is
    no audio is refused 403 and logged, a missing one is 404, and nothing outside leaks."""
    outside = tmp_path / "elsewhere" / "secret.wav"
    write_wav(outside)
    (site.recordings / "link.wav").symlink_to(outside)
    write_wav(site.recordings / "notes.txt")
    paths = {
        "parent": "../elsewhere/secret.wav",
        "absolute": str(outside),
        "dotted": f"{site.recordings}/2026/../../elsewhere/secret.wav",
        "symlink": "link.wav",
        "type": "notes.txt",
        "missing": "2026/03/10/gone.wav",
        "none": None,
    }
    await site.add(
        *(
            call(name, "2026-03-10 10:00", "+79161234567", recording_path=path)
            for name, path in paths.items()
        )
    )
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        with capture_logs() as logs:
            answers = {}
            for name in paths:
                answer = await page.request.get(site.url(f"/recordings/{await site.call_id(name)}"))
                answers[name] = answer.status
                assert b"elsewhere" not in await answer.body()
                assert b"RIFF" not in await answer.body()
            for path in ("/recordings/999999", "/recordings/..%2F..%2Fetc%2Fpasswd"):
                answers[path] = (await page.request.get(site.url(path))).status
        assert answers == {
            "parent": 403,
            "absolute": 403,
            "dotted": 403,
            "symlink": 403,
            "type": 403,
            "missing": 404,
            "none": 404,
            "/recordings/999999": 404,
            "/recordings/..%2F..%2Fetc%2Fpasswd": 404,
        }
        refused = [entry["reason"] for entry in logs if entry["event"] == "web.recording_refused"]
        assert refused == ["parent", "outside", "parent", "outside", "type"]
        await page.goto(site.url(f"/recordings/{await site.call_id('parent')}"))
        await expect(page.locator("h1")).to_have_text("Not for you")
        await page.screenshot(path=tmp_path / "recording-refused.png", full_page=True)


async def test_sql_ish_filters_are_refused(site: Site, browser: Browser, tmp_path: Path) -> None:
    """A filter value that looks like SQL in any field is refused 400 with "Nothing was searched"
    and logged, and the calls are still there afterwards."""
    await site.add(*DAY_CALLS)
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        with capture_logs() as logs:
            for field in ("source", "caller", "did", "status", "manager", "from", "to", "page"):
                async with page.expect_response(lambda r: "/calls?" in r.url) as sent:
                    await page.goto(site.url("/calls?" + f"{field}={SQLISH}"))
                assert (await sent.value).status == 400
                await expect(page.get_by_role("alert")).to_contain_text("Nothing was searched")
                await expect(page.locator("#calls")).to_have_count(0)
                await expect(page.locator("#summary")).to_have_count(0)
        refused = [entry for entry in logs if entry["event"] == "web.filter_refused"]
        assert [entry["field"] for entry in refused] == [
            "source",
            "caller",
            "did",
            "status",
            "manager",
            "from",
            "to",
            "page",
        ]
        assert all(entry["value"] == SQLISH for entry in refused)
        await page.screenshot(path=tmp_path / "calls-refused.png", full_page=True)
        # the form typed into by a person: the same answer
        await page.goto(site.url("/calls"))
        await page.get_by_label("Source").fill("yandex'; DROP TABLE calls; --")
        await page.get_by_role("button", name="Show").click()
        await expect(page.get_by_role("alert")).to_contain_text("A source is up to 64")
        await page.goto(site.url("/calls"))
        await expect(page.locator("#calls tbody tr")).to_have_count(4)  # the table is still there


async def test_the_pages_need_a_sign_in(site: Site, browser: Browser) -> None:
    """Without signing in a page or a recording leads to the sign-in form, and signing in goes back
    to the page asked for with its filter."""
    await site.add(*DAY_CALLS)
    write_wav(site.recordings / "2026/03/10/in-c1.wav")
    call_id = await site.call_id("c1")
    async with tab(browser) as page:
        answer = await page.request.get(site.url(f"/recordings/{call_id}"), max_redirects=0)
        assert answer.status == 303
        assert answer.headers["location"].startswith("/login")
        await page.goto(site.url("/calls?status=missed"))
        await expect(page).to_have_url(site.url("/login?next=/calls%3Fstatus%3Dmissed"))
        await page.get_by_label("Name").fill("anna")
        await page.get_by_label("Password").fill("anna-password-1")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(site.url("/calls?status=missed"))  # back where it was
        await expect(page.locator("#calls tbody tr")).to_have_count(2)


async def test_a_manager_takes_a_call_out_of_spam_and_marks_another(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """A manager can take a call out of spam (it then opens a callback task) and mark another call
    as spam, staying on the same filtered list, with each change logged."""
    robot = "+78001000000"
    await site.add(
        call("s1", "2026-03-10 10:00", robot, source="google", spam=SpamReason.BLOCKED),
        call("c2", "2026-03-10 11:00", "+79167654321", source="google"),
        call("a3", "2026-03-10 12:00", "+79035550000", answered_by="101", talk=30),
    )
    spam_id, plain_id = await site.call_id("s1"), await site.call_id("c2")
    async with tab(browser) as page:
        await sign_in(page, site, "anna", "/calls?status=missed")
        row = page.locator(f"#call-{spam_id}")
        await expect(row.locator(".badge-spam")).to_have_text("Spam · blocked number")
        await expect(row.locator(".call-id")).to_have_text(f"#{spam_id}")
        await expect(page.locator(f"#call-{plain_id} .badge-spam")).to_have_count(0)
        await page.screenshot(path=tmp_path / "calls-spam.png", full_page=True)
        with capture_logs() as logs:
            await row.get_by_role("button", name=f"Not spam: call {spam_id}").click()
            await expect(page.locator("#flash")).to_have_text(
                f"Call {spam_id} is no spam any more. It is in the callbacks now."
            )
            await expect(page).to_have_url(
                site.url(f"/calls?from={TODAY}&to={TODAY}&status=missed#call-{spam_id}")
            )
            await expect(row.locator(".badge-spam")).to_have_count(0)
            await expect(page.locator("#calls tbody tr")).to_have_count(2)  # still only missed

            await page.locator(f"#call-{plain_id}").get_by_role("button", name="Spam").click()
            await expect(page.locator(f"#call-{plain_id} .badge-spam")).to_have_text(
                "Spam · marked by hand"
            )
            await expect(row.get_by_role("button", name=f"Spam: call {spam_id}")).to_be_visible()
        changes = [entry for entry in logs if entry["event"] == "web.spam_changed"]
        assert [(e["user"], e["call"], e["was"], e["now"]) for e in changes] == [
            ("anna", spam_id, "blocked", "not spam"),
            ("anna", plain_id, "not spam", "manual"),
        ]
    async with site.engine.connect() as conn:
        [task] = await tasks.list_tasks(conn, status="open")
    assert (task.customer, task.source) == (robot, "google")


async def test_a_marketer_sees_spam_but_may_not_change_it(site: Site, browser: Browser) -> None:
    """A marketer sees which calls are spam and why but has no spam buttons, and changing it is
    refused 403."""
    await site.add(call("s1", "2026-03-10 10:00", "+78001000000", spam=SpamReason.REPEAT))
    spam_id = await site.call_id("s1")
    async with tab(browser) as page:
        await sign_in(page, site, "mark")
        row = page.locator(f"#call-{spam_id}")
        await expect(row.locator(".badge-spam")).to_have_text("Spam · repeat calls")
        await expect(row.locator(".spam-form")).to_have_count(0)
        token = await page.locator("input[name=csrf]").first.get_attribute("value")
        assert token
        for action in ("not-spam", "spam"):
            answer = await page.request.post(
                site.url(f"/calls/{spam_id}/{action}"), form={"csrf": token}, max_redirects=0
            )
            assert answer.status == 403
        await page.reload()
        await expect(row.locator(".badge-spam")).to_have_text("Spam · repeat calls")


async def test_the_spam_buttons_answer_json_when_asked_and_go_back_otherwise(
    site: Site, browser: Browser
) -> None:
    """Spam and Not spam answer JSON (with the outcome) to a request that asks for it, as
    every button does, and 303 back to the list to a plain form."""
    await site.add(call("c1", "2026-03-10 10:00", "+79167654321"))
    call_id = await site.call_id("c1")
    async with tab(browser) as page:
        await sign_in(page, site, "anna")
        token = await page.locator("input[name=csrf]").first.get_attribute("value")
        assert token
        asks = {"Accept": "application/json"}
        answer = await page.request.post(
            site.url(f"/calls/{call_id}/spam"), form={"csrf": token}, headers=asks
        )
        assert answer.status == 200
        assert await answer.json() == {"ok": True, "message": f"Call {call_id} is marked as spam."}
        answer = await page.request.post(
            site.url("/calls/12x/not-spam"), form={"csrf": token}, headers=asks
        )
        assert await answer.json() == {"ok": False, "message": "There is no such call."}
        answer = await page.request.post(
            site.url(f"/calls/{call_id}/not-spam"), form={"csrf": token}, max_redirects=0
        )
        assert answer.status == 303
        assert answer.headers["location"] == f"/calls#call-{call_id}"
        await page.goto(site.url("/calls"))
        await expect(page.locator("#flash")).to_contain_text(f"Call {call_id} is no spam any more")


LONG_CAMPAIGN = "spring-sale-" + "moscow-region-retargeting-" * 4 + "x" * 4  # 120 characters
BUSY_DAY = [
    call(
        "b1",
        "2026-03-10 09:15",
        "+79161234567",
        answered_by="101",
        talk=95,
        source="yandex-direct",
        campaign="brand-search-moscow",
        utm_term="buy a corner sofa with delivery",
        recording_path="2026/03/10/in-b1.wav",
        caller_name="Ivan Petrov <script>",
    ),
    call("b2", "2026-03-10 10:40", "+79167654321", source="google-ads", campaign=LONG_CAMPAIGN,
         caller_name="79167654321"),
    call("b3", "2026-03-10 11:05", "+79035550000", answered_by="102", talk=20,
         source="offline-flyer-spring", caller_name="OOO Romashka Trading House"),
    call("b4", "2026-03-10 12:30", "+79035551111", source="vk", caller_name=""),
]  # fmt: skip

# The page scrolls sideways; elements sticking out on the right of the screen.
SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
# Source names (one word each) drawn on more than one line.
BROKEN_SOURCES = """() => [...document.querySelectorAll('.c-source .meta-item:first-child')]
    .filter(item => item.getClientRects().length > 1 || item.getBoundingClientRect().height
        > 1.6 * parseFloat(getComputedStyle(item).lineHeight))
    .map(item => item.textContent)"""

# The Spam buttons not wholly inside the screen (nor inside the table's visible box).
SPAM_OUT = """() => {
    const view = document.querySelector('.table-wrap').getBoundingClientRect();
    const right = Math.min(view.right, document.documentElement.clientWidth);
    return [...document.querySelectorAll('.btn-spam')].filter(button => {
        const box = button.getBoundingClientRect();
        return box.width === 0 || box.left < 0 || box.right > right + 0.5;
    }).map(button => button.getAttribute('aria-label'));
}"""


async def test_playing_a_recording_keeps_the_spam_buttons_in_view(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """On a 1366 px laptop pressing Play keeps every Spam button on screen without scrolling,
    source names stay whole words, and a 120-character campaign makes the page scroll
    sideways neither there nor on a phone, where it is cut short with the whole name in its
    title."""
    await site.add(*BUSY_DAY)
    write_wav(site.recordings / "2026/03/10/in-b1.wav", seconds=2.0)
    ids = {name: await site.call_id(name) for name in ("b1", "b2", "b3", "b4")}
    async with tab(browser, {"width": 1366, "height": 768}) as page:
        await sign_in(page, site, "anna")
        await expect(page.locator("#calls tbody tr")).to_have_count(4)
        assert await page.evaluate(SIDEWAYS) <= 0
        assert await page.evaluate(SPAM_OUT) == []
        assert await page.evaluate(BROKEN_SOURCES) == []
        await page.screenshot(path=tmp_path / "calls-1366-before-play.png")
        await page.locator(f"#call-{ids['b1']}").get_by_role("link", name="Play").click()
        await page.wait_for_function(
            "() => { const a = document.querySelector('audio'); return a && a.readyState >= 1; }"
        )
        assert await page.evaluate(SIDEWAYS) <= 0
        assert await page.evaluate(SPAM_OUT) == []
        assert await page.evaluate(BROKEN_SOURCES) == []
        await page.screenshot(path=tmp_path / "calls-1366-playing.png")

    async with tab(browser, PHONE) as phone:
        await sign_in(phone, site, "anna")
        campaign = phone.locator(f"#call-{ids['b2']} .campaign")
        await expect(campaign).to_have_attribute("title", LONG_CAMPAIGN)
        assert await phone.evaluate(SIDEWAYS) <= 0
        box = await campaign.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        await phone.locator(f"#call-{ids['b1']}").get_by_role("link", name="Play").click()
        await expect(phone.locator(f"#call-{ids['b1']}-player audio")).to_be_visible()
        assert await phone.evaluate(SIDEWAYS) <= 0
        assert await phone.evaluate(SPAM_OUT) == []
        await phone.screenshot(path=tmp_path / "calls-phone-long-campaign.png", full_page=True)


async def test_the_callers_name_shows_under_the_number(site: Site, browser: Browser) -> None:
    """The name the caller's phone sent shows under their number on a laptop and a phone,
    escaped, and not at all when it is empty or only the number again."""
    await site.add(*BUSY_DAY)
    ids = {name: await site.call_id(name) for name in ("b1", "b2", "b3", "b4")}
    for viewport in (LAPTOP, PHONE):
        async with tab(browser, viewport) as page:
            await sign_in(page, site, "anna")
            names = {key: page.locator(f"#call-{ids[key]} .caller-name") for key in ids}
            await expect(names["b1"]).to_have_text("Ivan Petrov <script>")
            await expect(names["b1"]).to_be_visible()
            await expect(names["b3"]).to_have_text("OOO Romashka Trading House")
            await expect(names["b2"]).to_have_count(0)  # only the number again
            await expect(names["b4"]).to_have_count(0)
            await expect(page.locator("#calls script")).to_have_count(0)
