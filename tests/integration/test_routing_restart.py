"""Routing across a daemon restart: calls happen (played by the fake Asterisk, or stored),
the daemon stops and starts again on the same database, and the router's next choices are
those it would have made without the restart, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemons import RunningDaemon, start_daemon, trace_settings

from pbx_tracker.calls.records import CallRecord, CallStatus, Direction
from pbx_tracker.config import Settings, settings_from_mapping
from pbx_tracker.sim.agi_client import env_for_call, run_agi_session
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import make_call
from stored import missed_call, saved

WAIT = 15.0
DID = "74951110002"  # google-ads, routed to the sales group
ROUTING = {
    "dial_template": "IAX2/{extension}/{extension}",
    "default_group": "sales",
    "groups": [{"name": "sales", "members": ["101", "102", "103"], "strategy": "longest_idle"}],
    "missed": {"action": "voicemail", "voicemail_box": "100@default"},
}


def routing_settings(url: str, port: int, tmp_path: Path) -> Settings:
    """The traces' config, with the three managers in one longest-idle group."""
    data = trace_settings(url, port, tmp_path).model_dump(mode="json")
    data["ami"]["secret"] = "tracker-secret"  # the dump masks it
    data["routing"] = ROUTING
    return settings_from_mapping(data, environ={})


async def play_talks(
    asterisk: FakeAsterisk, pbx: RunningDaemon, talks: Sequence[tuple[str, str, float]]
) -> None:
    """Each (caller, manager, minutes ago): the caller's call answered by the manager then
    (ringing a few seconds, talking a minute), played over AMI; returns once all are stored."""
    ids = IdAllocator(time.time() - 3600, seed=11, first_seq=900)
    for caller, manager, minutes_ago in talks:
        call = make_call(
            "answered",
            start=3600 - minutes_ago * 60,
            did=DID,
            caller=caller,
            caller_name="",
            source="google-ads",
            manager=manager,
            ring=3.0,
            talk=60.0,
            ids=ids,
        )
        await asterisk.play(call.messages, epoch=ids.epoch)  # stamped with their past times
    await pbx.wait_for_records(len(talks))


async def next_offers(pbx: RunningDaemon, callers: Sequence[str]) -> list[tuple[str, str]]:
    """(manager, strategy) the router offers each new call in turn (each offer is reserved)."""
    assert pbx.daemon.agi is not None
    offers = []
    for number, caller in enumerate(callers):
        env = env_for_call(
            did=DID, caller=caller, uniqueid=f"1796000000.{number}", channel=f"IAX2/trunk-{number}"
        )
        call = await run_agi_session("127.0.0.1", pbx.daemon.agi.port, env, timeout=WAIT)
        offers.append((call.variables["ROUTE_MANAGER"], call.variables["ROUTE_STRATEGY"]))
    return offers


async def store(url: str, records: Sequence[CallRecord]) -> None:
    await saved(url, *records)


def talked(
    linkedid: str, manager: str, minutes_ago: float, *, transferred_to: str | None = None
) -> CallRecord:
    """An answered inbound call from a customer that ended ``minutes_ago``."""
    ended = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    call = missed_call(linkedid, ended - timedelta(minutes=2), f"+7916555{linkedid:0>4}")
    return call.replace(
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by=manager,
        transferred_to=transferred_to,
        answered_at=ended - timedelta(minutes=1),
        ended_at=ended,
        talk_seconds=60,
    )


def placed(linkedid: str, manager: str, minutes_ago: float, *, answered: bool) -> CallRecord:
    """A call ``manager`` placed to a customer that ended ``minutes_ago``."""
    call = talked(linkedid, manager, minutes_ago).replace(direction=Direction.OUTBOUND)
    if answered:
        return call
    return call.replace(status=CallStatus.MISSED, answered_at=None, talk_seconds=0)


async def test_longest_idle_is_the_same_after_a_restart(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """After a restart the next calls still go to whoever has waited longest, not first to the
    manager who just hung up."""
    settings = routing_settings(migrated_url, asterisk.port, tmp_path)
    talks = [("79160000103", "103", 50), ("79160000102", "102", 30), ("79160000101", "101", 10)]
    new_callers = ["79167770001", "79167770002", "79167770003"]
    async with start_daemon(settings, asyncio.Event()) as pbx:
        await play_talks(asterisk, pbx, talks)
        before = await next_offers(pbx, new_callers)
    async with start_daemon(settings, asyncio.Event()) as pbx:
        after = await next_offers(pbx, new_callers)
    expected = [("103", "longest_idle"), ("102", "longest_idle"), ("101", "longest_idle")]
    assert before == expected
    assert after == expected


async def test_a_returning_caller_rings_their_manager_after_a_restart(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """After a restart a customer who calls again still rings the manager they talked to."""
    settings = routing_settings(migrated_url, asterisk.port, tmp_path)
    talks = [("79160000202", "102", 40), ("79160000203", "103", 20)]
    async with start_daemon(settings, asyncio.Event()) as pbx:
        await play_talks(asterisk, pbx, talks)
        before = await next_offers(pbx, ["79160000202"])
    async with start_daemon(settings, asyncio.Event()) as pbx:
        after = await next_offers(pbx, ["79160000202", "79160000203", "79167770004"])
    assert before == [("102", "sticky")]
    assert after == [("102", "sticky"), ("103", "sticky"), ("101", "longest_idle")]


async def test_transferred_and_placed_calls_count_as_talking_after_a_restart(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """After a restart a manager who just took a transferred call or called a customer back
    is offered after one idle longer, and a callback nobody picked up does not count."""
    await store(
        migrated_url,
        [
            talked("1", "103", 30),
            talked("2", "101", 20, transferred_to="102"),
            placed("3", "101", 10, answered=True),
            placed("4", "102", 1, answered=False),
        ],
    )
    settings = routing_settings(migrated_url, asterisk.port, tmp_path)
    async with start_daemon(settings, asyncio.Event()) as pbx:
        offers = await next_offers(pbx, ["79167770005", "79167770006", "79167770007"])
    # 102 took the transfer 20 minutes ago; its unanswered callback a minute ago is no talk
    assert [manager for manager, _ in offers] == ["103", "102", "101"]


async def test_what_asterisk_tells_after_a_restart_still_counts(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """After a restart a manager who takes a call goes to the back of the line, and Asterisk's
    older memory of queue calls does not bring managers who talked since forward."""
    stored = [talked("1", "101", 10), talked("2", "102", 60), talked("3", "103", 30)]
    await store(migrated_url, stored)
    settings = routing_settings(migrated_url, asterisk.port, tmp_path)
    async with start_daemon(settings, asyncio.Event()) as pbx:
        for manager, minutes_ago in (("101", 120), ("102", 90)):
            await queue_member_status(asterisk, manager, time.time() - minutes_ago * 60)
        await play_talks(asterisk, pbx, [("79160000303", "103", 3)])  # events in order
        offers = await next_offers(pbx, ["79167770008", "79167770009", "79167770010"])
    assert [manager for manager, _ in offers] == ["102", "101", "103"]


async def queue_member_status(asterisk: FakeAsterisk, manager: str, last_call: float) -> None:
    """Asterisk's queue says ``manager``'s last queue call ended at ``last_call``."""
    interface = f"IAX2/{manager}"
    await asterisk.send_event(
        Event="QueueMemberStatus",
        Queue="sales",
        Interface=interface,
        StateInterface=interface,
        Status="1",
        Paused="0",
        LastCall=str(int(last_call)),
    )
