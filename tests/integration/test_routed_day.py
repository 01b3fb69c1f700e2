"""A simulated day routed by the running daemon: the fake Asterisk asks over FastAGI before
every call and plays the call with the phone the router chose (what `pbx-tracker demo` shows)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pbx_tracker.calls.records import CallRecord, Direction
from pbx_tracker.daemon import Daemon
from pbx_tracker.demo import DEMO_DIDS, DEMO_SECRET, demo_settings
from pbx_tracker.pipeline import open_writer
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.generated_day import call_slots
from pbx_tracker.sim.routed import DayClock, ManagerBreak, RoutedCall, RoutedDay
from pbx_tracker.store.migrate import upgrade_to_head

WAIT = 60.0
SPEED = 40.0
MARGIN = 1.0  # simulated seconds: events reach the board a moment after they are played


def busy_spans(calls: list[RoutedCall]) -> dict[str, list[tuple[float, float, str]]]:
    """(from, to, linkedid) of every manager leg in the played calls, by extension."""
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for routed in calls:
        opened: dict[str, tuple[str, float]] = {}
        for message in routed.call.messages:
            channel, at = message.get("Channel", ""), float(message["_ts"])
            peer = channel.removeprefix("IAX2/").rsplit("-", 1)[0]
            if not peer.isdigit():
                continue
            if message.get("Event") == "Newchannel":
                opened[message["Uniqueid"]] = (peer, at)
            elif message.get("Event") == "Hangup" and message["Uniqueid"] in opened:
                extension, began = opened.pop(message["Uniqueid"])
                spans.setdefault(extension, []).append((began, at, routed.call.expected.linkedid))
    return spans


async def test_the_router_never_offers_a_manager_who_is_on_a_call_or_on_a_break(
    tmp_path: Path,
) -> None:
    """Over a simulated day routed by the running daemon no call is offered to a manager who is on
    another call or on a break, while calls still reach managers and the queue."""
    slots = call_slots(16, dids=DEMO_DIDS, seed=3, mean_gap=7.0)
    pause = ManagerBreak("IAX2/103", slots[3].start - 0.5, slots[9].start - 0.5)
    written: list[CallRecord] = []
    all_written = asyncio.Event()

    def on_written(record: CallRecord, new: bool) -> None:
        if record.direction is Direction.OUTBOUND:
            return  # a ring-me callback of a missed call: not one of the day's calls
        written.append(record)
        if len(written) == len(slots):
            all_written.set()

    async with FakeAsterisk(
        username="tracker", secret=DEMO_SECRET, timestamp_events=True
    ) as asterisk:
        settings = demo_settings(tmp_path, asterisk.port)
        await asyncio.to_thread(upgrade_to_head, settings.database.url)
        clock, stop = DayClock(SPEED), asyncio.Event()
        async with open_writer(settings, on_written=on_written) as writer:
            daemon = Daemon(settings, writer, clock)
            runner = asyncio.create_task(daemon.run(stop))
            await asyncio.wait_for(daemon.ready.wait(), WAIT)
            assert daemon.agi is not None
            day = RoutedDay(asterisk, daemon.agi.port, speed=SPEED, clock=clock, seed=3)
            async with asyncio.timeout(WAIT):
                routed = await day.play(slots, [pause])
                await all_written.wait()
            stop.set()
            assert await asyncio.wait_for(runner, WAIT) == 0

    assert sorted(r.linkedid for r in written) == sorted(c.call.expected.linkedid for c in routed)
    spans = busy_spans(routed)
    offered = 0
    for call in routed:
        at, linkedid = call.slot.start, call.call.expected.linkedid
        for manager in filter(None, call.answer.get("ROUTE_MANAGER", "").split("&")):
            offered += 1
            for began, ended, other in spans.get(manager, []):
                on_call = began + MARGIN < at < ended - MARGIN
                assert other == linkedid or not on_call, (manager, at, call.answer)
            if manager == "103":
                assert not pause.start + MARGIN < at < pause.end - MARGIN, call.answer
    assert offered >= 4  # the day did route calls to managers, not only to the queue
    reasons = " ".join(c.answer["ROUTE_REASON"] for c in routed)
    assert "on_call" in reasons and "unavailable" in reasons  # and some were busy or away
    assert any(c.answer["ROUTE_STATUS"] == "OK" and c.answer["ROUTE_QUEUE"] for c in routed)
