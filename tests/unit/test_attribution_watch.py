"""The warning a pool owner gets when too many calls have no single visit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from structlog.testing import capture_logs

from pbx_tracker.attribution.settings import AttributionSettings
from pbx_tracker.attribution.watch import AttributionWatch
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def call(number: int, method: str, hours: float = 0) -> CallRecord:
    start = T0 + timedelta(hours=hours, seconds=number)
    return CallRecord(
        linkedid=f"1.{number}",
        node="pbx",
        direction=Direction.INBOUND,
        did="+74951110010",
        caller=None,
        caller_name=None,
        status=CallStatus.MISSED,
        missed_reason=None,
        answered_by=None,
        transferred_to=None,
        started_at=start,
        answered_at=None,
        ended_at=start,
        ring_seconds=0,
        talk_seconds=0,
        recording_path=None,
        attribution={"method": method, "pool": "site"},
    )


def events(logs: list[dict[str, object]]) -> list[object]:
    return [entry["event"] for entry in logs]


def test_warns_once_past_the_share_and_again_when_it_recovers() -> None:
    """The pool owner gets one warning when more than the configured share of calls cannot be
    credited to a single visit (naming how many of how many), not one per call, and one notice when
    the share is back down."""
    watch = AttributionWatch(AttributionSettings(warn_unattributed_share=0.2, warn_min_calls=10))
    with capture_logs() as logs:
        for n in range(7):
            watch.call_written(call(n, "session"), new=True)
        for n in range(7, 10):  # 3 of 10 without a single visit: 30 %
            watch.call_written(call(n, "ambiguous" if n % 2 else "unattributed"), new=True)
        watch.call_written(call(10, "unattributed"), new=True)  # still over: no second warning
    assert events(logs) == ["attribution.low_share"]
    assert "4 of 11 calls" not in str(logs[0]) and "3 of 10 calls" in str(logs[0])
    with capture_logs() as logs:
        for n in range(11, 30):
            watch.call_written(call(n, "session"), new=True)
    assert events(logs) == ["attribution.share_recovered"]


def test_too_few_calls_and_old_calls_do_not_count() -> None:
    """No warning is logged while there are fewer calls than the minimum, and calls older than a day
    no longer count towards the share."""
    watch = AttributionWatch(AttributionSettings(warn_unattributed_share=0.2, warn_min_calls=5))
    with capture_logs() as logs:
        for n in range(4):
            watch.call_written(call(n, "unattributed"), new=True)
        # a day later the old calls have left the window; 4 fresh good calls
        for n in range(4, 8):
            watch.call_written(call(n, "session", hours=25), new=True)
    assert events(logs) == []
    assert watch.share("site") == 0.0


def test_a_call_stored_again_and_static_calls_are_not_counted() -> None:
    """A call record stored a second time and calls on a static (non-pool) number leave the
    unattributed share unknown rather than skewing it."""
    watch = AttributionWatch(AttributionSettings())
    watch.call_written(call(1, "unattributed"), new=False)
    watch.call_written(call(2, "static").replace(attribution={"method": "static"}), new=True)
    assert watch.share("site") is None
