"""The supervisor's live board in a real browser, fed by the real daemon.

The daemon runs against the simulated Asterisk (captured calls played on a
loopback AMI port) with its HTTP server and pages on a SQLite database; a
supervisor opens ``/board`` in Chromium and the test plays AMI events: the
board changes by itself, without a reload.  Waits are on conditions with
bounded timeouts; screenshots go to the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from browsing import LAPTOP, PHONE, sign_in, tab, web_user
from daemons import RunningDaemon, http_environ, start_daemon, trace_settings
from playwright.async_api import Browser, Locator, Page, expect

from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.web.pages import board as board_page
from pbx_tracker.web.users import add_user, remove_user
from stored import connected
from traces import TRACES

WAIT_MS = 10_000
pytestmark = pytest.mark.timeout(120)

STATUS_TOKEN = "status-token-0123456789"
USERS = [web_user("sue", "supervisor"), web_user("anna", "manager", "101")]


class Board:
    """The running daemon's pages."""

    def __init__(self, running: RunningDaemon) -> None:
        assert running.daemon.http is not None
        self.running = running
        self.port = running.daemon.http.port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'pbx-tracker.sqlite3'}"


@contextlib.asynccontextmanager
async def daemon_with_pages(asterisk: FakeAsterisk, tmp_path: Path) -> AsyncIterator[Board]:
    url = database(tmp_path)
    await asyncio.to_thread(upgrade_to_head, url)
    async with connected(url, write=True) as conn:
        for user in USERS:
            await add_user(conn, user, datetime.now(UTC))
    environ = http_environ(PBX_TRACKER_HTTP__STATUS_TOKEN=STATUS_TOKEN)
    settings = trace_settings(url, asterisk.port, tmp_path, **environ)
    async with start_daemon(settings, asyncio.Event()) as running:
        yield Board(running)


def queue_call() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Captured call 07 (the sales queue rings 101, then 102 answers) cut where 101 rings."""
    events = trace_events(TRACES / "07_queue_answered.jsonl")
    cut = next(i for i, event in enumerate(events) if event.get("Event") == "AgentCalled") + 1
    return events[:cut], events[cut:]


def waiting_callers(page: Page) -> Locator:
    return page.locator("#board-waiting .waiting-caller")


async def open_board(page: Page, board: Board) -> None:
    await sign_in(page, board, "sue", "/board")
    await expect(page.locator("#board-link")).to_have_text("Live", timeout=WAIT_MS)
    await page.evaluate("window.__sameDocument = true")  # gone if the page reloads


async def test_a_ringing_call_shows_on_the_board_without_a_reload(
    browser: Browser, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A caller joins the queue: the board shows them waiting and Anna ringing; when Boris
    answers and they hang up, the day's figures count the call, all without a reload."""
    ringing, rest = queue_call()
    async with daemon_with_pages(asterisk, tmp_path) as board, tab(browser) as page:
        await open_board(page, board)
        anna = page.locator('[data-extension="101"]')
        await expect(anna).to_contain_text("Free", timeout=WAIT_MS)
        await expect(page.locator("#board-waiting")).to_contain_text("Nobody is waiting")
        await asterisk.play(ringing)
        caller = waiting_callers(page)
        await expect(caller).to_have_count(1, timeout=WAIT_MS)
        await expect(caller).to_contain_text("queue sales")
        await expect(caller).to_contain_text("ringing Anna")
        await expect(anna).to_contain_text("Ringing", timeout=WAIT_MS)
        await page.screenshot(path=tmp_path / "board-ringing.png", full_page=True)
        bearer = {"Authorization": f"Bearer {STATUS_TOKEN}"}
        metrics = await (await page.request.get(board.url("/metrics"), headers=bearer)).text()
        assert "pbx_tracker_boards_open 1.0" in metrics.splitlines()
        await asterisk.play(rest)
        await expect(page.locator("#board-waiting")).to_contain_text("Nobody is waiting")
        calls = page.locator("#board-today .kpi").filter(has_text="Calls")
        await expect(calls).to_contain_text("1", timeout=WAIT_MS)
        boris = page.locator('[data-extension="102"]')
        await expect(boris.locator(".fig-answered")).to_have_text("1 answered", timeout=WAIT_MS)
        assert await page.evaluate("window.__sameDocument === true")


async def test_the_board_comes_back_by_itself_after_the_daemon_restarts(
    browser: Browser, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """The daemon stops and starts again: the open board says it is reconnecting, then is
    live again and shows the new daemon's news, without anyone touching it."""
    ringing, _ = queue_call()
    async with tab(browser) as page:
        async with daemon_with_pages(asterisk, tmp_path) as board:
            await open_board(page, board)
        link = page.locator("#board-link")
        await expect(link).to_have_text("Reconnecting…", timeout=WAIT_MS)
        environ = http_environ(PBX_TRACKER_HTTP__PORT=str(board.port))
        settings = trace_settings(database(tmp_path), asterisk.port, tmp_path, **environ)
        async with start_daemon(settings, asyncio.Event()):
            await expect(link).to_have_text("Live", timeout=WAIT_MS)
            await asterisk.play(ringing)
            await expect(waiting_callers(page)).to_have_count(1, timeout=WAIT_MS)
        assert await page.evaluate("window.__sameDocument === true")


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
async def test_the_board_reads_on_a_laptop_a_phone_and_a_wall_screen(
    browser: Browser, asterisk: FakeAsterisk, tmp_path: Path, viewport: dict[str, int]
) -> None:
    """Every manager's tile fits the screen (nothing scrolls sideways), and the wall-screen
    mode hides the header."""
    ringing, _ = queue_call()
    async with daemon_with_pages(asterisk, tmp_path) as board, tab(browser, viewport) as page:
        await open_board(page, board)
        await asterisk.play(ringing)
        await expect(waiting_callers(page)).to_have_count(1, timeout=WAIT_MS)
        await page.screenshot(path=tmp_path / "board.png", full_page=True)
        wide = await page.evaluate("document.documentElement.scrollWidth")
        assert wide <= viewport["width"]
        await page.goto(board.url("/board?tv=1"))
        await expect(page.locator("#board-link")).to_have_text("Live", timeout=WAIT_MS)
        await expect(page.locator("header.top")).to_be_hidden()
        await page.screenshot(path=tmp_path / "board-tv.png", full_page=True)


async def test_only_supervisors_and_admins_get_the_board(
    browser: Browser, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Nobody signed in is sent to log in (401 for the document); a manager gets 403 on the
    page, its stream and its document, and sees no "Board" link."""
    async with daemon_with_pages(asterisk, tmp_path) as board, tab(browser) as page:
        answer = await page.request.get(board.url("/board.json"))
        assert answer.status == 401
        await page.goto(board.url("/board"))
        await expect(page).to_have_url(board.url("/login?next=/board"))
        await sign_in(page, board, "anna", "/callbacks")
        await expect(page.get_by_role("link", name="Board")).to_have_count(0)
        for path in ("/board", "/board/events", "/board.json"):
            answer = await page.request.get(board.url(path))
            assert answer.status == 403, path


async def test_a_supervisor_works_everyones_callbacks_and_finds_the_board_in_the_header(
    browser: Browser, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A supervisor's callbacks page lists every manager's tasks, and the header leads to the
    board."""
    async with daemon_with_pages(asterisk, tmp_path) as board, tab(browser) as page:
        await sign_in(page, board, "sue", "/callbacks")
        await expect(page.get_by_role("heading", level=1)).to_have_text("All open callbacks")
        await page.get_by_role("link", name="Board").click()
        await expect(page.locator("#board-link")).to_have_text("Live", timeout=WAIT_MS)


async def test_a_supervisor_removed_while_watching_is_sent_to_log_in(
    browser: Browser, asterisk: FakeAsterisk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing a user ends their open board's stream at its next news, and the board
    page takes them to the login page instead of showing a board they may no longer see."""
    monkeypatch.setattr(board_page, "CHECK_SESSION", 0.0)  # look at the session every time
    async with daemon_with_pages(asterisk, tmp_path) as board, tab(browser) as page:
        await open_board(page, board)
        async with connected(database(tmp_path), write=True) as conn:
            assert await remove_user(conn, "sue")
        await asterisk.send_event(Event="ExtensionStatus", Exten="101", Status="1")
        await expect(page).to_have_url(board.url("/login?next=%2Fboard"), timeout=WAIT_MS)
