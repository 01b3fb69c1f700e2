"""Captured AMI traffic: a capture file's call events, timed from the first one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pbx_tracker.ami.capture import read_capture

# the capture session's own messages, not call traffic
SESSION_EVENTS = frozenset({"FullyBooted", "SuccessfulAuth"})


def trace_events(path: str | Path) -> list[dict[str, str]]:
    """The call traffic of a capture file, each message with `_ts` (seconds, as text).

    `_ts` counts from the first returned message.  The capture session's own
    messages (action responses, `FullyBooted`, `SuccessfulAuth`) are left out.
    """
    return trace_with_epoch(path)[0]


def trace_with_epoch(path: str | Path) -> tuple[list[dict[str, str]], float]:
    """`trace_events` plus the epoch time of `_ts == 0` (0.0 for an empty trace)."""
    selected = [event for event in read_capture(path) if _is_call_traffic(event.fields)]
    if not selected:
        return [], 0.0
    start = selected[0].time
    messages = [{"_ts": f"{event.time - start:.6f}", **event.fields} for event in selected]
    return messages, start


def _is_call_traffic(fields: Mapping[str, str]) -> bool:
    event = fields.get("Event")
    return bool(event) and event not in SESSION_EVENTS
