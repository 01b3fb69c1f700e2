"""The call card (``/calls/{id}``) in a real browser (Chromium through Playwright).

The daemon's HTTP server runs on loopback with the pages on a real database
(SQLite and PostgreSQL); "today" is a fixed moment in Europe/Moscow.  The
story: a customer called, Anna's and then Boris's phone rang, nobody answered,
a callback task opened for Anna, a reminder went out, and Anna called back; the
day before the same customer had a recorded talk with Anna.  Waits are on
conditions with bounded timeouts, never sleeps.  Screenshots go to the test's
tmp_path.

Needs the Debian chromium at /usr/bin/chromium: skipped without it, failed under CI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from browsing import LAPTOP, PHONE, Site, serving, sign_in, tab, web_user, write_wav
from playwright.async_api import Browser, Locator, Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.finished_calls import apply_call
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.calls.records import CallStatus, Direction, RingAttempt
from pbx_tracker.phones import display_number
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.store.calls import save_call
from pbx_tracker.store.models import CallRow
from pbx_tracker.web.pages import Pages
from pbx_tracker.web.settings import WebSettings
from stored import missed_call

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # 15:00 in Moscow
CUSTOMER = "+79161234567"
HOSTILE = "<script>alert('name')</script>"
USERS = [web_user("anna", "manager", "101"), web_user("boris", "manager", "102")]
USERS += [web_user("mark", "marketer"), web_user("root", "admin")]
MANAGERS = {"101": "Anna Petrova", "102": "Boris Orlov"}

pytestmark = pytest.mark.timeout(90)


def at(moscow: str) -> datetime:
    """``2026-03-10 14:05:00`` in Moscow, in UTC."""
    return datetime.fromisoformat(moscow).replace(tzinfo=MOSCOW).astimezone(UTC)


def ring(manager: str, start: str, seconds: int, outcome: str) -> RingAttempt:
    began = at(start)
    return RingAttempt(
        manager, f"PJSIP/{manager}-1", began, began + timedelta(seconds=seconds), outcome
    )


@dataclass
class Story:
    """The ids of what the story stored."""

    missed: int
    earlier: int
    stranger: int
    task: int


MISSED = missed_call("missed", at("2026-03-10 14:05:00"), CUSTOMER).replace(
    caller_name=HOSTILE,
    source="yandex",
    campaign="sofas-spring",
    utm_source="yandex",
    utm_medium="cpc",
    utm_term="buy a sofa",
    attribution={
        "method": "session",
        "confidence": 0.8,
        "reason": "the visit's lease ended 40 s before the call",
        "first_touch": {"source": "google", "medium": "organic"},
        "last_touch": {"source": "yandex", "medium": "cpc", "campaign": "sofas-spring"},
    },
    attempts=(
        ring("101", "2026-03-10 14:05:01", 15, "noanswer"),
        ring("102", "2026-03-10 14:05:16", 4, "busy"),
    ),
    variables={  # the dialplan asked twice; stored in no particular order
        "ROUTE_DECISION_2": "ring 102 (longest_idle in sales: Boris is the next free)",
        "ROUTE_DECISION_1": "ring 101 (longest_idle in sales: Anna idle for 42 min)",
        "ROUTE_STRATEGY": "longest_idle",
        "ROUTE_REASON": "Boris is the next free",
        "ROUTE_GROUP": "sales",
        "ROUTE_MANAGER": "101",
    },
)
EARLIER = missed_call("earlier", at("2026-03-09 18:00:00"), CUSTOMER).replace(
    status=CallStatus.ANSWERED,
    missed_reason=None,
    answered_by="101",
    answered_at=at("2026-03-09 18:00:08"),
    ended_at=at("2026-03-09 18:02:08"),
    ring_seconds=8,
    talk_seconds=120,
    recording_path="2026/03/09/in-earlier.wav",
    attempts=(ring("101", "2026-03-09 18:00:00", 8, "answer"),),
)
STRANGER = missed_call("stranger", at("2026-03-10 13:00:00"), "+79035550000")
CALLED_BACK = missed_call("callback", at("2026-03-10 14:25:00"), CUSTOMER).replace(
    direction=Direction.OUTBOUND,
    did=None,
    status=CallStatus.ANSWERED,
    missed_reason=None,
    answered_by="101",
    answered_at=at("2026-03-10 14:25:10"),
    ended_at=at("2026-03-10 14:27:10"),
    talk_seconds=120,
)


async def tell(engine: AsyncEngine) -> Story:
    """Store the story: the calls, the task the missed call opened, its reminder and the
    manager's call back."""
    settings = CallbackSettings()
    async with engine.begin() as conn:
        for record in (EARLIER, STRANGER, MISSED):
            await save_call(conn, record)
        opened = await apply_call(conn, MISSED, settings, now=MISSED.ended_at)
        assert opened is not None and opened.task.assignee == "101"
        reminded = at("2026-03-10 14:15:00")
        await tasks.record_reminder(
            conn, opened.task_id, at=reminded, channels=["email", "telegram"]
        )
        await save_call(conn, CALLED_BACK)
        done = await apply_call(conn, CALLED_BACK, settings, now=CALLED_BACK.ended_at)
        assert done is not None and done.kind == "resolved"
        ids = {}
        for linkedid in ("missed", "earlier", "stranger"):
            query = select(CallRow.id).where(CallRow.linkedid == linkedid)
            ids[linkedid] = int((await conn.execute(query)).scalar_one())
    return Story(ids["missed"], ids["earlier"], ids["stranger"], opened.task_id)


@pytest.fixture(name="site")
async def _site(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Site]:
    recordings = tmp_path / "monitor"
    write_wav(recordings / "2026/03/09/in-earlier.wav")
    rules = ReportRules(
        target_seconds=30, unique_days=None, model="last_touch", sla_minutes=15, zone=MOSCOW
    )
    pages = Pages(
        WebSettings(users=USERS, cookie_secure=False),
        engine,
        region="RU",
        now=lambda: NOW,
        recordings_dir=recordings,
        rules=rules,
        managers=MANAGERS,
    )
    async with serving(pages) as site:
        yield site


async def texts(page: Page, selector: str) -> list[str]:
    return [" ".join(text.split()) for text in await page.locator(selector).all_inner_texts()]


def fact(page: Page, label: str) -> Locator:
    """The call's fact with this label (not the callback task's)."""
    label_cell = page.get_by_text(label, exact=True)
    return page.locator(".facts:not(#callback-facts) .fact", has=label_cell)


# --- the tests ----------------------------------------------------------------------------


async def test_a_missed_call_told_from_the_first_ring_to_the_call_back(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """From the calls list a manager opens a missed call's card and reads what happened in
    order (two phones rang, the callback task, its reminder, the call back), why the router
    rang whom, where the caller came from, and the caller's earlier call, whose card plays
    its recording; on a phone too."""
    story = await tell(site.engine)
    async with tab(browser, {"width": 1366, "height": 900}) as page:
        await sign_in(page, site, "anna")
        await (
            page.locator(f"#call-{story.missed}")
            .get_by_role("link", name=f"#{story.missed}")
            .click()
        )
        await expect(page).to_have_url(site.url(f"/calls/{story.missed}"))
        await expect(page.get_by_role("heading", name=f"Call #{story.missed}")).to_be_visible()
        await expect(page.locator("#timeline li")).to_have_count(7)
        assert await texts(page, "#timeline li") == [
            f"14:05:00 Came in on {display_number('+74951234567', 'RU')}",
            "14:05:01 Rang Anna Petrova (101) for 15 s: no answer",
            "14:05:16 Rang Boris Orlov (102) for 4 s: busy",
            "14:05:20 Ended: missed (no answer)",
            "14:05:20 Callback task opened for Anna Petrova (101)",
            "14:15:00 Reminder sent by email, telegram",
            "14:25:10 Done: called back by Anna Petrova (101)",
        ]
        assert await texts(page, "#routing li") == [
            "Step 1: ring 101 (longest_idle in sales: Anna idle for 42 min)",
            "Step 2: ring 102 (longest_idle in sales: Boris is the next free)",
            "Strategy longest_idle — Boris is the next free",
        ]
        await expect(fact(page, "Caller's name")).to_contain_text(HOSTILE)
        await expect(fact(page, "Status")).to_contain_text("Missed: no answer")
        await expect(fact(page, "Campaign")).to_contain_text("sofas-spring")
        await expect(fact(page, "Keyword")).to_contain_text("buy a sofa")
        await expect(fact(page, "Confidence")).to_contain_text("80 %")
        await expect(fact(page, "First touch")).to_contain_text("google / organic")
        await expect(page.locator("#callback-facts")).to_contain_text("done: called back")
        await expect(page.locator("#player")).to_have_count(0)  # nobody talked
        others = page.locator("#others li")
        await expect(others).to_have_count(1)  # not this call, not the stranger's
        await expect(others.first).to_contain_text("answered by Anna Petrova (101)")
        await page.screenshot(path=tmp_path / "card-missed-laptop.png", full_page=True)

        await others.first.get_by_role("link").click()
        await expect(page).to_have_url(site.url(f"/calls/{story.earlier}"))
        player = page.locator("#player")
        await expect(player).to_have_attribute("src", f"/recordings/{story.earlier}")
        await page.wait_for_function(
            "document.getElementById('player').duration > 0", timeout=10_000
        )
        await expect(page.locator("#others li")).to_have_count(1)  # the missed call
        await page.screenshot(path=tmp_path / "card-answered-laptop.png", full_page=True)

    async with tab(browser, PHONE) as phone:
        await sign_in(phone, site, "anna", f"/calls/{story.missed}")
        await expect(phone.locator("#timeline li")).to_have_count(7)
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"]  # nothing runs off the side
        await phone.screenshot(path=tmp_path / "card-missed-phone.png", full_page=True)


async def test_each_role_sees_of_the_callback_what_it_may(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """Another manager and a marketer see the call but not the callback task's history (the
    manager reads "assigned to someone else"); an admin sees all of it; the caller's name
    `<script>` is shown as text to all of them."""
    story = await tell(site.engine)
    path = f"/calls/{story.missed}"
    for name, history, note in [
        ("boris", False, "assigned to someone else"),
        ("mark", False, "for the managers"),
        ("root", True, ""),
    ]:
        async with tab(browser, LAPTOP) as page:
            await sign_in(page, site, name, path)
            await expect(page.locator(".card-name")).to_have_text(HOSTILE)
            assert await page.locator("main script").count() == 0
            await expect(page.locator("#routing li")).to_have_count(3)
            steps = page.locator("#timeline li")
            await expect(steps).to_have_count(7 if history else 4)
            if note:
                await expect(page.locator("#callback-hidden")).to_contain_text(note)
            else:
                await expect(page.locator("#callback-facts")).to_contain_text("Anna Petrova (101)")
            await page.screenshot(path=tmp_path / f"card-{name}.png", full_page=True)


async def test_an_unknown_call_is_a_404_page(site: Site, browser: Browser) -> None:
    """A card of no stored call (a wrong number, a word, a number too big) says there is no
    such call with 404, logged; signed out, the card asks to sign in first."""
    story = await tell(site.engine)
    async with tab(browser) as page:
        await page.goto(site.url(f"/calls/{story.missed}"))
        await expect(page).to_have_url(site.url(f"/login?next=/calls/{story.missed}"))
        await sign_in(page, site, "mark", "/calls")
        with capture_logs() as logs:
            for wrong in ("999999", "abc", "99999999999", "%C2%B2"):
                answer = await page.goto(site.url(f"/calls/{wrong}"))
                assert answer is not None and answer.status == 404
                await expect(page.get_by_role("heading", name="No such call")).to_be_visible()
        refused = [line["call"] for line in logs if line["event"] == "web.call_card_not_found"]
        assert refused == ["999999", "abc", "99999999999", "²"]


async def test_a_manager_marks_a_call_as_spam_from_its_card_and_undoes_it(
    site: Site, browser: Browser
) -> None:
    """ "Spam" on the card marks the call and comes back to the card saying so, with the
    badge; "Not spam" undoes it; a marketer gets no such button."""
    story = await tell(site.engine)
    async with tab(browser) as page:
        await sign_in(page, site, "anna", f"/calls/{story.stranger}")
        await page.get_by_role("button", name="Spam", exact=True).click()
        await expect(page).to_have_url(site.url(f"/calls/{story.stranger}"))
        await expect(page.locator("#flash")).to_contain_text("is marked as spam")
        await expect(page.locator(".card-heading .badge-spam")).to_be_visible()
        await page.get_by_role("button", name="Not spam").click()
        await expect(page.locator("#flash")).to_contain_text("is no spam any more")
        await expect(page.locator(".card-heading .badge-spam")).to_have_count(0)
    async with tab(browser) as page:
        await sign_in(page, site, "mark", f"/calls/{story.stranger}")
        await expect(page.locator(".card-spam")).to_have_count(0)


async def test_ids_no_call_can_have_are_refused_everywhere_without_an_error(
    site: Site, browser: Browser
) -> None:
    """A recording or a spam mark asked for an id no call can have (too big for the
    database, a superscript digit) is "no such call", never a server error."""
    async with tab(browser) as page:
        await sign_in(page, site, "anna", "/calls")
        csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
        for wrong in ("99999999999", "%C2%B2", "2147483648"):
            answer = await page.request.get(site.url(f"/recordings/{wrong}"))
            assert answer.status == 404, wrong
            marked = await page.request.post(
                site.url(f"/calls/{wrong}/spam"),
                form={"csrf": csrf or ""},
                headers={"Accept": "application/json"},
            )
            assert marked.status == 200, wrong
            assert await marked.json() == {"ok": False, "message": "There is no such call."}


async def test_the_callbacks_link_to_the_call_and_its_recording(
    site: Site, browser: Browser
) -> None:
    """Each open callback links to the card of the call that opened it and, when it was
    recorded, to the recording, also after the list refreshes itself."""
    start = at("2026-03-10 14:40:00")
    voicemail = missed_call("voicemail", start, "+79167654321").replace(
        source="google",
        recording_path="2026/03/09/in-earlier.wav",
        variables={"ROUTE_GROUP": "sales", "ROUTE_MANAGER": "101"},
        attempts=(ring("101", "2026-03-10 14:40:00", 20, "noanswer"),),
    )
    async with site.engine.begin() as conn:
        await save_call(conn, voicemail)
        opened = await apply_call(conn, voicemail, CallbackSettings(), now=start)
        assert opened is not None
        call_id = opened.task.first_call_id
    async with tab(browser) as page:
        await sign_in(page, site, "anna", "/callbacks")
        task = page.locator(f"#task-{opened.task_id}")
        await expect(page.locator("#tasks")).to_have_attribute("data-ready", "1")
        await expect(task.get_by_role("link", name="Recording")).to_have_attribute(
            "href", f"/recordings/{call_id}"
        )
        await task.get_by_role("link", name=f"Call #{call_id}").click()
        await expect(page).to_have_url(site.url(f"/calls/{call_id}"))
        await expect(page.locator("#player")).to_be_visible()
