"""Real protocol end to end: a fake Asterisk on loopback replays each captured trace,
the daemon logs in over AMI, correlates, and the test reads the rows from the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from pbx_tracker.calls.records import CallRecord
from pbx_tracker.config import Settings, load_settings
from pbx_tracker.daemon import Daemon
from pbx_tracker.sim.asterisk import FakeAsterisk, trace_events
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.store.session import open_writer
from stored import stored_calls
from traces import EXPECTED, TRACE_CONFIG, TRACES, e164

WAIT = 15.0


def trace_settings(url: str, port: int, tmp_path: Path) -> Settings:
    return load_settings(
        TRACE_CONFIG,
        environ={
            "PBX_TRACKER_DATABASE__URL": url,
            "PBX_TRACKER_AMI__PORT": str(port),
            "PBX_TRACKER_AGI__PORT": "0",
            "PBX_TRACKER_AMI__RECONNECT_INITIAL": "0.05",
            "PBX_TRACKER_AMI__RECONNECT_MAX": "0.2",
            "PBX_TRACKER_DATABASE__SPILL_PATH": str(tmp_path / "spill.jsonl"),
        },
    )


class RunningDaemon:
    def __init__(self, daemon: Daemon, written: list[CallRecord]) -> None:
        self.daemon = daemon
        self.written = written
        self.changed = asyncio.Event()

    async def wait_for_records(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.written) < count:
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def start_daemon(settings: Settings, stop: asyncio.Event) -> AsyncIterator[RunningDaemon]:
    written: list[CallRecord] = []
    running: RunningDaemon | None = None

    def on_written(record: CallRecord, new: bool) -> None:
        written.append(record)
        if running is not None:
            running.changed.set()

    async with open_writer(settings, on_written=on_written) as writer:
        daemon = Daemon(settings, writer)
        running = RunningDaemon(daemon, written)
        task = asyncio.create_task(daemon.run(stop))
        await asyncio.wait_for(daemon.ready.wait(), WAIT)
        await asyncio.wait_for(daemon.resynced.wait(), WAIT)
        yield running
        stop.set()
        assert await asyncio.wait_for(task, WAIT) == 0


@pytest.mark.parametrize("stem", sorted(EXPECTED))
async def test_trace_through_listener_into_database(
    stem: str, database_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Each captured scenario ends as the rows its README states, on SQLite and PostgreSQL."""
    await asyncio.to_thread(upgrade_to_head, database_url)
    settings = trace_settings(database_url, asterisk.port, tmp_path)
    expected = EXPECTED[stem]
    async with start_daemon(settings, asyncio.Event()) as running:
        await asterisk.play(trace_events(TRACES / f"{stem}.jsonl"))
        await running.wait_for_records(len(expected))
    rows = {row.caller: row for row in await stored_calls(database_url)}
    assert sorted(rows) == sorted(e164(e.caller) for e in expected)
    for want in expected:
        row = rows[e164(want.caller)]
        assert (row.did, row.status, row.missed_reason, row.answered_by) == (
            e164(want.did),
            want.status,
            want.reason,
            want.answered_by,
        )
        assert abs(row.ring_seconds - want.ring) <= 1
        assert abs(row.talk_seconds - want.talk) <= 1
        assert row.source is not None and row.node == "pbx"


async def test_link_drop_mid_call_records_the_call_once(
    database_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Asterisk's link drops while 102 is talking; after the reconnect the call ends and
    is recorded exactly once, answered by 102."""
    await asyncio.to_thread(upgrade_to_head, database_url)
    settings = trace_settings(database_url, asterisk.port, tmp_path)
    events = trace_events(TRACES / "06_ringgroup.jsonl")
    cut = next(i for i, e in enumerate(events) if e.get("Event") == "BridgeEnter") + 2
    async with start_daemon(settings, asyncio.Event()) as running:
        await asterisk.play(events[:cut])
        running.daemon.resynced.clear()
        asterisk.drop_connections()
        # the listener logs in again and asks Asterisk which channels are live
        await asyncio.wait_for(running.daemon.resynced.wait(), WAIT)
        await asterisk.play(events[cut:])
        await running.wait_for_records(1)
    (row,) = await stored_calls(database_url)
    assert (row.status, row.answered_by, row.caller) == ("answered", "102", "+79161234506")
