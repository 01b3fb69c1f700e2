"""The board's document, built once per change and handed to every open board.

`BoardFeed.floor_changed` (called for each AMI event taken in and each
reservation of the router: it only sets a flag) wakes the builder, which makes
the JSON document at most ten times a second: bursts of events become one
build, however many boards are open.  A document equal to the last one (save
its clock) is not sent.  The figures of the day are read again from the
database after each stored call (`day_changed`, at most every two seconds) and
every 15 seconds (callbacks done from the pages, the day turning).  While no
board is open nothing is built or read: a daemon nobody watches pays nothing.

Each open board is a `Watcher`: an event and the version it has sent.  A board
that reads slowly skips to the newest document, it never queues old ones, so
a board costs one wake-up and one write of the document per change.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from pbx_tracker.board.floor import Floor
from pbx_tracker.waking import woken

__all__ = ["BoardFeed", "BoardsFull", "Watcher"]

log = structlog.get_logger(__name__)

Json = dict[str, Any]
MAX_BUILDS_PER_SECOND = 10
DAY_READ_GAP = 2.0  # seconds between two reads of the day's figures, at least
DAY_READ_EVERY = 15.0  # seconds: the day's figures read again even with no stored call
FLOOR_EVERY = 5.0  # seconds: statuses that turn with time (wrap-up, shifts) rebuilt
MAX_BOARDS = 1000  # open boards at once; more get 503 (a browser gone wild, a scraper)


class BoardsFull(Exception):
    """As many boards are open as the daemon serves."""


class Watcher:
    """One open board: woken when a newer document is there."""

    def __init__(self, feed: BoardFeed) -> None:
        self.feed = feed
        self.sent = 0
        self.woken = asyncio.Event()

    async def next(self, quiet: float) -> bytes | None:
        """The newest document not yet sent; None after ``quiet`` seconds without one
        (time for a keep-alive) or once the feed is closed (then ``feed.closed``)."""
        while self.feed.version <= self.sent and not self.feed.closed:
            self.woken.clear()
            if not await woken(self.woken, quiet):
                return None
        if self.feed.closed:
            return None
        self.sent = self.feed.version
        return self.feed.document


class BoardFeed:
    """Builds the board's JSON from the floor and the day's figures; serves the watchers."""

    def __init__(
        self,
        floor: Floor,
        read_day: Callable[[], Awaitable[Json]],
        *,
        link: Callable[[], Json] = dict,
        clock: Callable[[], float] = time.time,
        max_boards: int = MAX_BOARDS,
    ) -> None:
        """``read_day``: today's figures (`board.today.today_figures`); ``link``: the
        Asterisk link's state (connected, text) as the board shows it."""
        self.floor = floor
        self.read_day = read_day
        self.link = link
        self.clock = clock
        self.max_boards = max_boards
        self.version = 0
        self.document = b""
        self.closed = False
        self.builds = 0
        self._body = ""
        self._day: Json | None = None
        self._day_stale = False  # the last read failed: the figures shown are older
        self._floor_changed = asyncio.Event()
        self._day_changed = asyncio.Event()
        self._watched = asyncio.Event()  # set while a board is open
        self._watchers: set[Watcher] = set()

    @property
    def boards(self) -> int:
        """How many boards are open now."""
        return len(self._watchers)

    def floor_changed(self) -> None:
        self._floor_changed.set()

    def day_changed(self, *_: object) -> None:
        """A call was stored (any arguments, so it can listen to the writer)."""
        self._day_changed.set()

    def watch(self) -> Watcher:
        """A new open board (`forget` it when it closes); BoardsFull when too many."""
        if len(self._watchers) >= self.max_boards:
            raise BoardsFull
        watcher = Watcher(self)
        self._watchers.add(watcher)
        if not self._watched.is_set():  # the first board: what it shows must be new
            self._watched.set()
            self.build()
        return watcher

    def forget(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)
        if not self._watchers:  # nobody watches: the day's figures will be read anew
            self._watched.clear()
            self._day = None

    def close(self) -> None:
        """Every open board's stream ends (the daemon stops; browsers reconnect later)."""
        self.closed = True
        for watcher in self._watchers:
            watcher.woken.set()

    def build(self) -> bool:
        """The document now; the watchers woken when it says something new."""
        now = self.clock()
        managers, waiting = self.floor.now(now)
        day = self._day or {}
        for line in managers:
            line["today"] = day.get("managers", {}).get(line["extension"])
        body = json.dumps(
            {
                "managers": managers,
                "waiting": waiting,
                "today": {k: v for k, v in day.items() if k != "managers"} or None,
                "today_stale": self._day_stale,
                "asterisk": self.link(),
            },
            separators=(",", ":"),
        )
        self.builds += 1
        if body == self._body:
            return False
        self._body = body
        self.document = f'{{"now":{now!r},{body[1:]}'.encode()
        self.version += 1
        for watcher in self._watchers:
            watcher.woken.set()
        return True

    async def run(self) -> None:
        """Build on change (at most ten times a second) and read the day; for ever."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._keep_floor())
            group.create_task(self._keep_day())

    async def _keep_floor(self) -> None:
        while True:
            await self._watched.wait()
            await woken(self._floor_changed, FLOOR_EVERY)
            self._floor_changed.clear()
            self.build()
            await asyncio.sleep(1 / MAX_BUILDS_PER_SECOND)  # a burst of events: one build

    async def _keep_day(self) -> None:
        while True:
            await self._watched.wait()
            await self.read_day_now()
            await woken(self._day_changed, DAY_READ_EVERY)
            self._day_changed.clear()
            await asyncio.sleep(DAY_READ_GAP)  # calls stored one after another: one read

    async def read_day_now(self) -> None:
        """Today's figures read again; on a failure the last ones stay, marked stale."""
        try:
            self._day, self._day_stale = await self.read_day(), False
        except Exception as error:  # the database is away: the floor goes on
            self._day_stale = True
            log.warning("board.day_unreadable", reason=str(error) or type(error).__name__)
        self._floor_changed.set()
