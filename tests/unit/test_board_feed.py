"""The live board's document (`pbx_tracker.board`): what it says of the floor, and that
it is built once per change for every open board, newest first, never piled up."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from clocks import SecondsClock

from pbx_tracker.board.feed import BoardFeed, BoardsFull
from pbx_tracker.board.floor import Floor
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.config import Settings, settings_from_mapping
from pbx_tracker.routing.availability import ManagerBoard

DAY = {"day": "2026-11-23", "calls": 3, "answered": 2, "managers": {"101": {"answered": 2}}}


def settings() -> Settings:
    return settings_from_mapping(
        {
            "ami": {"secret": "s"},
            "phone_region": "RU",
            "tracked_numbers": [{"did": "74951110001", "source": "yandex-direct"}],
            "managers": [
                {"name": "Anna", "extension": "101", "group": "sales"},
                {"name": "Boris", "extension": "102", "group": "sales"},
            ],
        },
        environ={},
    )


class Floorplan:
    """A board of two managers fed by hand-made AMI events, and the feed on it."""

    def __init__(self, day: Any = DAY) -> None:
        self.clock = SecondsClock(1_795_000_000.0)
        config = settings()
        self.managers = ManagerBoard(config.routing, config.directory, self.clock)
        self.correlator = Correlator()
        floor = Floor(self.managers, self.correlator.live_calls, config.directory, "RU")

        async def read_day() -> Any:
            if isinstance(day, Exception):
                raise day
            return day

        self.feed = BoardFeed(floor, read_day, clock=self.clock)

    def event(self, **fields: str) -> None:
        event = AmiEvent(fields, self.clock())
        self.managers.feed(event)
        self.correlator.feed(event)
        self.feed.floor_changed()

    def document(self) -> dict[str, Any]:
        return dict(json.loads(self.feed.document))


def ring(plan: Floorplan) -> None:
    """A caller on 84951110001 rings Anna's phone."""
    caller = {"Uniqueid": "1795000000.1", "Linkedid": "1795000000.1"}
    plan.event(
        Event="Newchannel",
        Channel="PJSIP/trunk-00000001",
        ChannelState="4",
        CallerIDNum="+79161234567",
        CallerIDName="Ivan",
        Exten="84951110001",
        Context="from-trunk",
        **caller,
    )
    plan.event(
        Event="DialBegin",
        Channel="PJSIP/trunk-00000001",
        DestChannel="PJSIP/101-00000002",
        DestUniqueid="1795000000.2",
        DestLinkedid="1795000000.1",
        DialString="101",
        **caller,
    )


async def test_the_document_tells_who_rings_for_whom_and_who_waits() -> None:
    """A ringing call shows Anna ringing for the caller (by name, number and source) and the
    caller waiting on the tracked number; Boris stays free."""
    plan = Floorplan()
    await plan.feed.read_day_now()
    ring(plan)
    plan.feed.build()
    doc = plan.document()
    anna, boris = doc["managers"]
    assert (anna["status"], anna["status_text"]) == ("ringing", "Ringing")
    assert anna["ringing_for"]["caller_name"] == "Ivan"
    assert anna["ringing_for"]["source"] == "yandex-direct"
    assert (boris["status"], boris["ringing_for"], boris["call"]) == ("free", None, None)
    (waiting,) = doc["waiting"]
    assert waiting["ringing"] == ["Anna"]
    assert waiting["caller"] == "8 (916) 123-45-67"
    assert waiting["since"] == plan.clock()
    assert doc["today"]["calls"] == 3 and anna["today"] == {"answered": 2}
    assert doc["now"] == plan.clock()


async def test_an_unchanged_floor_sends_nothing_new() -> None:
    """Building again with nothing changed wakes no board (only the clock moved)."""
    plan = Floorplan()
    assert plan.feed.build() is True
    version = plan.feed.version
    plan.clock.advance(5)
    assert plan.feed.build() is False
    assert plan.feed.version == version


async def test_a_burst_of_events_is_one_build_and_a_slow_board_skips_to_the_newest() -> None:
    """Fifty events in a row cost one or two builds, not fifty; a board that was not reading
    gets the newest document at once, not the ones in between."""
    plan = Floorplan()
    watcher = plan.feed.watch()
    first = await watcher.next(1.0)
    assert first is not None
    running = asyncio.create_task(plan.feed.run())
    try:
        builds = plan.feed.builds
        for n in range(50):
            plan.event(Event="ExtensionStatus", Exten="101", Status=str(n % 2))
        plan.event(Event="ExtensionStatus", Exten="101", Status="1")
        newest = await watcher.next(5.0)
        assert newest is not None
        assert plan.feed.builds - builds <= 3
        assert json.loads(newest)["managers"][0]["status"] == "on_call"
        assert watcher.sent == plan.feed.version
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_closing_the_feed_ends_every_open_board() -> None:
    """When the daemon stops, each board's stream ends instead of holding the stop up."""
    plan = Floorplan()
    watchers = [plan.feed.watch() for _ in range(3)]
    for watcher in watchers:
        await watcher.next(1.0)
    waiting = [asyncio.create_task(w.next(30.0)) for w in watchers]
    plan.feed.close()
    assert await asyncio.wait_for(asyncio.gather(*waiting), 5) == [None, None, None]
    assert plan.feed.closed


async def test_more_boards_than_allowed_are_refused_until_one_closes() -> None:
    """The cap on open boards holds; a board that closes makes room for another."""
    plan = Floorplan()
    plan.feed.max_boards = 2
    first, _ = plan.feed.watch(), plan.feed.watch()
    with pytest.raises(BoardsFull):
        plan.feed.watch()
    plan.feed.forget(first)
    assert plan.feed.watch() is not None
    assert plan.feed.boards == 2


async def test_a_database_that_does_not_answer_keeps_the_last_figures_marked_old() -> None:
    """The day's figures cannot be read: the floor still updates and the board says the
    figures may be old."""
    plan = Floorplan(day=OSError("connection refused"))
    await plan.feed.read_day_now()
    ring(plan)
    plan.feed.build()
    doc = plan.document()
    assert doc["today_stale"] is True and doc["today"] is None
    assert doc["managers"][0]["status"] == "ringing"


async def test_nothing_is_built_or_read_while_no_board_is_open() -> None:
    """A daemon nobody watches spends nothing on the board: no build, no read of the day,
    however many events come; the first board to open gets both at once."""
    reads = 0

    async def read_day() -> Any:
        nonlocal reads
        reads += 1
        return DAY

    plan = Floorplan()
    plan.feed.read_day = read_day
    running = asyncio.create_task(plan.feed.run())
    try:
        ring(plan)
        plan.feed.day_changed()
        for _ in range(20):  # let the feed's loops run: they must find nothing to do
            await asyncio.sleep(0)
        assert (plan.feed.builds, reads) == (0, 0)
        watcher = plan.feed.watch()
        first = await watcher.next(1.0)
        assert first is not None and json.loads(first)["managers"][0]["status"] == "ringing"
        with_day = await watcher.next(5.0)
        assert with_day is not None and json.loads(with_day)["today"]["calls"] == 3
        assert reads == 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
