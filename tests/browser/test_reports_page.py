"""The marketers' reports page in a real browser (Chromium through Playwright).

A small fixed data set (calls and ad spend over three days in Europe/Moscow)
with hand-computed answers: the sources table, the SVG charts' bars and
points, and the CSV download; a manager may not open the page.  Both
databases; waits on conditions, never sleeps; screenshots in tmp_path.

Needs the Debian chromium at /usr/bin/chromium (``playwright install`` is never
run): skipped without it, failed under CI.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from browsing import PHONE, Site, serving, tab, web_user
from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from pbx_tracker.calls.records import CallRecord, CallStatus
from pbx_tracker.reports.compute import ReportKind, compute
from pbx_tracker.reports.dimensions import ReportScope
from pbx_tracker.reports.period import period_of
from pbx_tracker.reports.render import as_csv
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.reports.spend import SpendLine, import_spend
from pbx_tracker.store.calls import save_calls
from pbx_tracker.web.pages import Pages
from pbx_tracker.web.settings import WebSettings
from stored import missed_call

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
RULES = ReportRules(
    target_seconds=30, unique_days=None, model="last_touch", sla_minutes=15, zone=MOSCOW
)
PERIOD = "from=2026-03-08&to=2026-03-10"

pytestmark = pytest.mark.timeout(90)


user = web_user


USERS = [user("anna", "manager", "101"), user("mark", "marketer"), user("root", "admin")]


def call(linkedid: str, day: int, caller: str, source: str, talk: int | None) -> CallRecord:
    """A call at 13:00 Moscow on 2026-03-``day``; ``talk`` None: missed."""
    start = datetime(2026, 3, day, 10, 0, tzinfo=UTC) + timedelta(minutes=len(linkedid))
    record = missed_call(linkedid, start, caller).replace(source=source)
    if talk is None:
        return record
    return record.replace(
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by="101",
        answered_at=start + timedelta(seconds=5),
        ring_seconds=5,
        talk_seconds=talk,
        ended_at=start + timedelta(seconds=5 + talk),
    )


# yandex: 4 calls, 3 leads (A, B, C; A again is no lead), 2 target (60 s, 45 s), 1 missed
# google: 2 calls, 2 leads, 1 target (40 s), 1 missed
CALLS = [
    call("y1", 8, "+79160000001", "yandex", 60),
    call("y22", 8, "+79160000002", "yandex", None),
    call("y3", 9, "+79160000003", "yandex", 10),
    call("y4", 10, "+79160000001", "yandex", 45),
    call("g1", 9, "+79160000004", "google", 40),
    call("g22", 9, "+79160000005", "google", None),
]
SPEND = [  # yandex 550 / 3 leads = 183.33; google 200 / 2 = 100.00
    SpendLine(date(2026, 3, 8), "yandex", None, Decimal("300"), "RUB"),
    SpendLine(date(2026, 3, 9), "yandex", None, Decimal("150"), "RUB"),
    SpendLine(date(2026, 3, 10), "yandex", None, Decimal("100"), "RUB"),
    SpendLine(date(2026, 3, 9), "google", None, Decimal("200"), "RUB"),
]


@pytest.fixture(name="site")
async def _site(engine: AsyncEngine) -> AsyncIterator[Site]:
    async with engine.begin() as conn:
        await save_calls(conn, CALLS)
        await import_spend(conn, SPEND, NOW)
    web = WebSettings(users=USERS, cookie_secure=False)
    pages = Pages(web, engine, region="RU", now=lambda: NOW, rules=RULES)
    async with serving(pages) as site:
        yield site


async def sign_in(page: Page, site: Site, name: str, path: str) -> None:
    await page.goto(site.url(path))
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Password").fill(f"{name}-password-1")
    await page.get_by_role("button", name="Sign in").click()


async def table(page: Page) -> list[list[str]]:
    rows = page.locator("#sources-report tr")
    return [
        [" ".join(text.split()) for text in await rows.nth(n).locator("th, td").all_text_contents()]
        for n in range(await rows.count())
    ]


async def test_a_marketer_sees_the_sources_with_charts_and_downloads_the_csv(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """A marketer sees each source's calls, leads, target calls, missed share and cost per lead,
    daily bars of calls and points of cost per lead, and downloads the same CSV the report command
    prints, also on a phone."""
    async with tab(browser) as page:
        await sign_in(page, site, "mark", f"/reports?{PERIOD}")
        await expect(page.locator("h1")).to_have_text("Reports")
        assert await table(page) == [
            ["Source", "Calls", "Leads", "Target", "Missed", "Cost (RUB)", "Per lead"],
            ["yandex", "4", "3", "2", "25%", "550.00", "183.33"],
            ["google", "2", "2", "1", "50%", "200.00", "100.00"],
            ["Total", "6", "5", "3", "33%", "750.00", "150.00"],
        ]
        bars = page.locator("#calls-chart rect.bar")
        await expect(bars).to_have_count(4)
        found = [
            (
                await bar.get_attribute("data-series"),
                await bar.get_attribute("data-day"),
                await bar.get_attribute("data-value"),
            )
            for bar in await bars.all()
        ]
        assert found == [
            ("yandex", "2026-03-08", "2"),
            ("yandex", "2026-03-09", "1"),
            ("google", "2026-03-09", "2"),
            ("yandex", "2026-03-10", "1"),
        ]
        heights = [float(await bar.get_attribute("height") or 0) for bar in await bars.all()]
        assert heights[0] == pytest.approx(2 * heights[1])  # 2 calls twice as tall as 1
        points = page.locator("#cost-chart circle.point")
        found = [
            (
                await point.get_attribute("data-series"),
                await point.get_attribute("data-day"),
                await point.get_attribute("data-value"),
            )
            for point in await points.all()
        ]
        assert found == [  # 10 March: yandex spent 100 but had no lead, so no point
            ("yandex", "2026-03-08", "150.00"),
            ("yandex", "2026-03-09", "150.00"),
            ("google", "2026-03-09", "100.00"),
        ]
        await expect(page.locator("#cost-chart polyline.line")).to_have_count(1)
        await expect(page.locator("#calls-chart .legend li")).to_have_text(["yandex", "google"])
        await page.screenshot(path=tmp_path / "reports-laptop.png", full_page=True)

        async with page.expect_download() as waiting:
            await page.get_by_role("link", name="Download CSV").click()
        download = await waiting.value
        assert download.suggested_filename == "sources-2026-03-08-2026-03-10.csv"
        saved = tmp_path / "sources.csv"
        await download.save_as(saved)
        text = await asyncio.to_thread(saved.read_text, encoding="utf-8")
        rows = {row["source"]: row for row in csv.DictReader(io.StringIO(text))}
        assert {k: rows["yandex"][k] for k in ("calls", "first_time_callers", "target_calls")} == {
            "calls": "4",
            "first_time_callers": "3",
            "target_calls": "2",
        }
        assert (rows["yandex"]["missed_rate"], rows["yandex"]["cost_per_lead"]) == (
            "0.25",
            "183.33",
        )
        assert (rows["google"]["cost"], rows["google"]["cost_per_lead"]) == ("200.0", "100.0")
        async with site.engine.connect() as conn:
            scope = ReportScope.of(
                conn.dialect.name, RULES, period_of("2026-03-08", "2026-03-10", MOSCOW)
            )
            expected = as_csv(await compute(conn, ReportKind.SOURCES, scope))
        assert text == expected + "\n"  # what `pbx-tracker report sources --format csv` prints

    async with tab(browser, PHONE) as phone:
        await sign_in(phone, site, "mark", f"/reports?{PERIOD}")
        await expect(phone.locator("#calls-chart rect.bar")).to_have_count(4)
        await phone.screenshot(path=tmp_path / "reports-phone.png", full_page=True)


SIDEWAYS = "document.documentElement.scrollWidth - window.innerWidth"
CELLS_OUTSIDE = """() => [...document.querySelectorAll('#sources-report th, #sources-report td')]
    .filter(cell => cell.offsetParent !== null)
    .filter(cell => {
        const box = cell.getBoundingClientRect();
        return box.left < 0 || box.right > window.innerWidth;
    })
    .map(cell => cell.textContent)"""
CROWDED = """() => [...document.querySelectorAll('#sources-report th, #sources-report td')]
    .filter(cell => cell.offsetParent !== null && cell.scrollWidth > cell.clientWidth)
    .map(cell => cell.textContent)"""
AXIS_OUTSIDE = """() => [...document.querySelectorAll('svg.chart-svg')].flatMap(svg => {
    const frame = svg.getBoundingClientRect();
    return [...svg.querySelectorAll('text.axis')].filter(text => {
        const box = text.getBoundingClientRect();
        return box.left < frame.left || box.right > frame.right;
    }).map(text => text.textContent);
})"""
LABELS = """row => [...row.querySelectorAll('td')].map(cell =>
    getComputedStyle(cell, '::before').content.replace(/^"|"$/g, '') + ' ' + cell.textContent)"""


async def test_the_report_fits_a_phone_without_scrolling_sideways(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """With spend (so the cost columns show), a long source name and a big amount, the
    page does not scroll sideways on a phone: each source is a card whose figures are
    all on screen and fit their place, each under its column's name; the charts' axis
    labels stay inside the charts.  On a laptop it stays one table."""
    long_name = "yandex-direct-retargeting-spring-sale"
    async with site.engine.begin() as conn:
        await save_calls(conn, [call("r1", 10, "+79160000009", long_name, 75)])
        spend = SpendLine(date(2026, 3, 10), long_name, None, Decimal("1234567.89"), "RUB")
        await import_spend(conn, [spend], NOW)

    async with tab(browser, PHONE) as phone:
        await sign_in(phone, site, "mark", f"/reports?{PERIOD}")
        yandex = phone.locator("#sources-report tbody tr", has_text="yandex").first
        await expect(yandex).to_be_visible()
        await expect(phone.locator("#cost-chart circle.point")).to_have_count(4)
        await phone.screenshot(path=tmp_path / "reports-phone-cost.png", full_page=True)
        assert await phone.evaluate(SIDEWAYS) <= 0
        assert await phone.evaluate(CELLS_OUTSIDE) == []
        assert await phone.evaluate(CROWDED) == []
        assert await phone.evaluate(AXIS_OUTSIDE) == []
        assert await yandex.evaluate(LABELS) == [
            "Calls 4", "Leads 3", "Target 2", "Missed 25%", "Cost (RUB) 550.00", "Per lead 183.33",
        ]  # fmt: skip
        total = phone.locator("#sources-report tfoot tr")  # 1 235 317.89 over 6 leads
        assert (await total.evaluate(LABELS))[-2:] == [
            "Cost (RUB) 1\u202f235\u202f317.89",
            "Per lead 205\u202f886.32",
        ]

    async with tab(browser) as laptop:
        await sign_in(laptop, site, "mark", f"/reports?{PERIOD}")
        await expect(laptop.locator("#sources-report thead th")).to_have_count(7)
        await expect(laptop.locator("#sources-report thead")).to_be_visible()
        await laptop.screenshot(path=tmp_path / "reports-laptop-cost.png", full_page=True)
        assert await laptop.evaluate(SIDEWAYS) <= 0
        assert await laptop.evaluate(CELLS_OUTSIDE) == []
        assert await laptop.evaluate(CROWDED) == []
        assert await laptop.evaluate(AXIS_OUTSIDE) == []
        labels = laptop.locator("#cost-chart text.axis")
        assert (await labels.all_text_contents())[:5] == ["0", "500k", "1M", "1.5M", "2M"]


async def test_the_default_period_is_the_last_30_days(site: Site, browser: Browser) -> None:
    """The reports page opens on the last 30 days, its CSV link follows the period shown, and a
    period without calls says so."""
    async with tab(browser) as page:
        await sign_in(page, site, "root", "/reports")
        await expect(page.get_by_label("From")).to_have_value("2026-02-09")
        await expect(page.get_by_label("To")).to_have_value("2026-03-10")
        await expect(page.locator("#sources-report tbody tr")).to_have_count(2)
        href = await page.get_by_role("link", name="Download CSV").get_attribute("href")
        assert href == "/reports.csv?from=2026-02-09&to=2026-03-10"
        await page.get_by_label("From").fill("2026-03-10")
        await page.get_by_role("button", name="Show").click()
        await expect(page.locator("#sources-report tbody tr")).to_have_count(1)  # only yandex
        await page.goto(
            page.url.replace("from=2026-03-10", "from=2026-03-01").replace(
                "to=2026-03-10", "to=2026-03-02"
            )
        )
        await expect(page.locator("#empty")).to_have_text("No calls in this period.")


async def test_a_manager_may_not_see_the_reports(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """A manager gets "Not for you" on the reports page and its CSV, sees no Reports link, and each
    refusal is logged without showing any figure."""
    async with tab(browser) as page:
        await sign_in(page, site, "anna", "/reports")
        await expect(page.locator("h1")).to_have_text("Not for you")
        await expect(page.get_by_role("link", name="Reports")).to_have_count(0)
        await page.screenshot(path=tmp_path / "reports-forbidden.png", full_page=True)
        with capture_logs() as logs:
            for path in ("/reports", f"/reports?{PERIOD}", f"/reports.csv?{PERIOD}"):
                answer = await page.request.get(site.url(path))
                assert answer.status == 403
                assert b"yandex" not in await answer.body()
        assert [entry["event"] for entry in logs] == ["web.forbidden"] * 3


async def test_bad_periods_are_refused(site: Site, browser: Browser) -> None:
    """A period that looks like SQL, an impossible date or an end before the start is refused 400 on
    the page and the CSV without any figure, and a period over 366 days says so."""
    async with tab(browser) as page:
        await sign_in(page, site, "mark", "/reports")
        with capture_logs() as logs:
            for query in ("from=' OR 1=1 --", "to=2026-13-01", "from=2026-03-10&to=2026-03-01"):
                answer = await page.request.get(site.url(f"/reports?{query}"))
                assert answer.status == 400
                assert b"yandex" not in await answer.body()
                answer = await page.request.get(site.url(f"/reports.csv?{query}"))
                assert answer.status == 400
        assert sum(entry["event"] == "web.filter_refused" for entry in logs) == 6
        await page.goto(site.url("/reports?from=2025-01-01&to=2026-03-10"))
        await expect(page.get_by_role("alert")).to_contain_text("at most 366 days")


# The x axis labels of each chart that overlap the next one drawn.
X_LABELS_OVERLAP = """() => [...document.querySelectorAll('svg.chart-svg')].flatMap(svg => {
    const boxes = [...svg.querySelectorAll('text.axis-x')].map(t => [t, t.getBoundingClientRect()]);
    return boxes.slice(1).filter(([, box], n) => box.left < boxes[n][1].right + 2)
        .map(([text, ], n) => boxes[n][0].textContent + ' / ' + text.textContent);
})"""


async def test_thirty_days_of_date_labels_stay_apart_on_a_phone(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """Over the default 30 days with calls every day, the charts' date labels do not run into
    each other on a phone or a laptop, and stay inside the charts."""
    days = [datetime(2026, 3, 10, 9, 0, tzinfo=UTC) - timedelta(days=n) for n in range(30)]
    async with site.engine.begin() as conn:
        await save_calls(
            conn,
            [
                missed_call(f"m{n}", day, f"+7916100{n:04d}").replace(source="yandex")
                for n, day in enumerate(days)
            ],
        )
    for viewport, name in ((PHONE, "phone"), ({"width": 1366, "height": 768}, "laptop")):
        async with tab(browser, viewport) as page:
            await sign_in(page, site, "mark", "/reports")
            bars = page.locator("#calls-chart rect.bar")
            await expect(bars).to_have_count(30 + 1)  # yandex every day, google on the 9th
            labels = page.locator("#calls-chart text.axis-x")
            assert await labels.count() >= 5
            assert await page.evaluate(X_LABELS_OVERLAP) == []
            assert await page.evaluate(AXIS_OUTSIDE) == []
            await page.screenshot(path=tmp_path / f"reports-30-days-{name}.png", full_page=True)


async def test_cost_per_lead_leaves_a_gap_and_the_total_counts_paid_leads_only(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """The cost-per-lead line is not drawn across a day without leads, and the total's per lead
    divides the spend by the leads of the sources with spend only, which the page says."""
    async with site.engine.begin() as conn:
        await save_calls(
            conn,
            [
                call("v1", 8, "+79160000011", "vk", 50),
                call("v2", 10, "+79160000012", "vk", 50),  # no vk lead on the 9th
                call("f1", 9, "+79160000013", "flyer", 50),  # leads without spend
                call("f2", 10, "+79160000014", "flyer", 50),
            ],
        )
        spend = [SpendLine(date(2026, 3, d), "vk", None, Decimal("60"), "RUB") for d in (8, 9, 10)]
        await import_spend(conn, spend, NOW)
    async with tab(browser) as page:
        await sign_in(page, site, "mark", f"/reports?{PERIOD}")
        vk = page.locator('#cost-chart circle.point[data-series="vk"]')
        await expect(vk).to_have_count(2)
        assert [await p.get_attribute("data-day") for p in await vk.all()] == [
            "2026-03-08",
            "2026-03-10",
        ]
        await expect(page.locator('#cost-chart polyline[data-series="vk"]')).to_have_count(0)
        await expect(page.locator('#cost-chart polyline[data-series="yandex"]')).to_have_count(1)
        # spend 750 + 180 = 930 over the leads of yandex (3), google (2) and vk (2); not flyer's 2
        assert (await table(page))[-1] == ["Total", "10", "9", "7", "20%", "930.00", "132.86"]
        await expect(page.locator("#per-lead-note")).to_contain_text(
            "divided by the 7 leads of the sources with spend"
        )
        await page.screenshot(path=tmp_path / "reports-cost-gap.png", full_page=True)


async def test_a_period_with_one_day_of_calls_shows_its_hours(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """When only one day of the period has calls, the chart shows that day's calls by hour and
    says why, instead of one bar at the edge, on a laptop and a phone."""
    for viewport, name in (({"width": 1366, "height": 768}, "laptop"), (PHONE, "phone")):
        async with tab(browser, viewport) as page:
            await sign_in(page, site, "mark", "/reports?from=2026-03-10&to=2026-03-16")
            chart = page.locator("#calls-chart")
            await expect(chart.locator("h2")).to_have_text("Calls by hour")
            await expect(chart).to_contain_text("Only Tue 10 Mar has calls in this period")
            bars = chart.locator("rect.bar")
            await expect(bars).to_have_count(1)
            assert await bars.first.get_attribute("data-hour") == "13"  # 13:04 in Moscow
            await expect(page.locator("#cost-day")).to_be_visible()
            assert await page.evaluate(X_LABELS_OVERLAP) == []
            assert await page.evaluate(AXIS_OUTSIDE) == []
            await page.screenshot(path=tmp_path / f"reports-one-day-{name}.png", full_page=True)
