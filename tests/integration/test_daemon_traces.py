"""Real protocol end to end: a fake Asterisk on loopback replays each captured trace,
the daemon logs in over AMI, correlates, and the test reads the rows from the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from daemons import WAIT, start_daemon, trace_settings

from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from stored import stored_calls
from traces import EXPECTED, TRACES, e164


@pytest.mark.parametrize("stem", sorted(EXPECTED))
async def test_trace_through_listener_into_database(
    stem: str, migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Each captured scenario ends as the rows its README states, on SQLite and PostgreSQL."""
    settings = trace_settings(migrated_url, asterisk.port, tmp_path)
    expected = EXPECTED[stem]
    async with start_daemon(settings, asyncio.Event()) as running:
        await asterisk.play(trace_events(TRACES / f"{stem}.jsonl"))
        await running.wait_for_records(len(expected))
    rows = {row.caller: row for row in await stored_calls(migrated_url)}
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
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Asterisk's link drops while 102 is talking; after the reconnect the call ends and
    is recorded exactly once, answered by 102."""
    settings = trace_settings(migrated_url, asterisk.port, tmp_path)
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
    (row,) = await stored_calls(migrated_url)
    assert (row.status, row.answered_by, row.caller) == ("answered", "102", "+79161234506")
