"""The demo's call lines: printed when a call ends, so they lead with the time it ended."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pbx_tracker.calls.records import CallStatus
from pbx_tracker.demo import _record_line
from stored import missed_call

START = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


def test_lines_printed_as_calls_end_read_in_time_order() -> None:
    """A long call that started first but ended last is printed last, and its line leads
    with the time it ended, so the demo's lines read in time order."""
    long_call = missed_call("long", START, "+79161234567").replace(
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by="101",
        answered_at=START + timedelta(seconds=5),
        ring_seconds=5,
        talk_seconds=300,
        ended_at=START + timedelta(seconds=305),
    )
    short_call = missed_call("short", START + timedelta(seconds=60), "+79167654321").replace(
        ended_at=START + timedelta(seconds=80)
    )
    lines = [_record_line(record) for record in (short_call, long_call)]  # the order they end
    leading = [line.split(" ", 1)[0] for line in lines]
    assert leading == ["10:01:20", "10:05:05"]
    assert lines[1].startswith("10:05:05 ended (started 10:00:00): +79161234567 → ")
    assert "answered[/] by 101" in lines[1]


def test_at_speed_0_lines_lead_with_the_start() -> None:
    """At speed 0 the demo plays calls one after another, so each line leads with the
    time the call started and still says when it ended."""
    line = _record_line(missed_call("c", START, "+79161234567"), by_end=False)
    assert re.match(r"10:00:00 started \(ended \d\d:\d\d:\d\d\): \+79161234567 → ", line)
