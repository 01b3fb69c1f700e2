"""`pbx-tracker capture` writes live AMI traffic that `replay` reads back as the same calls."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from waiting import polled

from pbx_tracker.config import load_settings
from pbx_tracker.daemon.capture import run_capture
from pbx_tracker.replay import replay_files
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from traces import TRACE_CONFIG, TRACES


async def test_captured_traffic_replays_to_the_same_call(
    asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Live AMI traffic written by capture, Cyrillic names and timestamps included, replays to the
    same answered call with the same manager and talk time."""
    settings = load_settings(TRACE_CONFIG, environ={"PBX_TRACKER_AMI__PORT": str(asterisk.port)})
    out = tmp_path / "capture.jsonl"
    stop = asyncio.Event()
    task = asyncio.create_task(run_capture(settings, out, stop))
    await asterisk.wait_for_action("CoreShowChannels", timeout=10)  # logged in, resynced
    events = trace_events(TRACES / "06_ringgroup.jsonl")
    await asterisk.play(events)
    await polled(  # the capture task appends; watch the file grow
        lambda: out.exists() and len(out.read_bytes().splitlines()) >= len(events),
        "every event written",
        every=0.05,
    )
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert all("_ts" in line for line in lines)
    assert any(line.get("CallerIDName") == "Мария Иванова" for line in lines)
    records = []
    replay_files([out], settings, records.append)
    (record,) = records
    assert (record.status, record.answered_by, record.caller) == ("answered", "102", "+79161234506")
    assert abs(record.talk_seconds - 4) <= 1
