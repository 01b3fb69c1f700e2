"""Every captured call from a real Asterisk gives the outcome the capture's README states."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.records import CallRecord, Direction
from traces import ATTEMPTS, EXPECTED, TRACES

MONITOR = "/var/spool/asterisk/monitor/"
SINGLE_CALLS = [
    (stem, *calls[0], ATTEMPTS[stem]) for stem, calls in EXPECTED.items() if len(calls) == 1
]
CONCURRENT = {e.caller: e[1:] for e in EXPECTED["11_concurrent"]}
FORMATS = ["jsonl", "raw.txt"]


def replay(path: Path) -> list[CallRecord]:
    correlator = Correlator()
    records = correlator.feed_all(read_capture(path))
    assert correlator.calls_in_progress == 0
    assert correlator.events_failed == 0
    return records


def assert_call(
    record: CallRecord,
    status: str,
    reason: str | None,
    answered_by: str | None,
    ring: float,
    talk: float,
) -> None:
    assert record.status == status
    assert record.missed_reason == reason
    assert record.answered_by == answered_by
    assert abs(record.ring_seconds - ring) <= 1, record.ring_seconds
    assert abs(record.talk_seconds - talk) <= 1, record.talk_seconds
    assert record.complete


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("stem", "caller", "did", "status", "reason", "answered_by", "ring", "talk", "attempts"),
    SINGLE_CALLS,
)
def test_each_scenario_gives_one_record_with_the_stated_outcome(
    fmt: str,
    stem: str,
    caller: str,
    did: str,
    status: str,
    reason: str | None,
    answered_by: str | None,
    ring: int,
    talk: int,
    attempts: int,
) -> None:
    """One inbound call, one record: outcome, manager, times and recording as captured."""
    (record,) = replay(TRACES / f"{stem}.{fmt}")
    assert record.direction == Direction.INBOUND
    assert (record.caller, record.did) == (caller, did)
    assert_call(record, status, reason, answered_by, ring, talk)
    assert record.recording_path == MONITOR + record.linkedid + ".wav"
    assert len(record.attempts) == attempts
    assert record.transferred_to is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_ring_group_losers_are_attempts_of_the_answered_call(fmt: str) -> None:
    """101 and 103 rang while 102 answered: kept as cancelled attempts, never missed calls."""
    (record,) = replay(TRACES / f"06_ringgroup.{fmt}")
    outcomes = {a.manager: a.outcome for a in record.attempts}
    assert outcomes == {"101": "cancel", "102": "answer", "103": "cancel"}
    assert all(a.ended_at is not None and a.ended_at >= a.rang_at for a in record.attempts)
    assert record.caller_name == "Мария Иванова"


def test_queue_attempt_that_rang_out_keeps_its_no_answer() -> None:
    """In a queue Asterisk repeats NOANSWER as CANCEL; the first word stands."""
    (record,) = replay(TRACES / "07_queue_answered.jsonl")
    assert [(a.manager, a.outcome, a.queue) for a in record.attempts] == [
        ("101", "noanswer", "sales"),
        ("102", "answer", "sales"),
    ]
    assert record.queue == "sales"


@pytest.mark.parametrize("fmt", FORMATS)
def test_concurrent_calls_are_kept_apart(fmt: str) -> None:
    """Five overlapping calls: five records, each with its own outcome."""
    records = replay(TRACES / f"11_concurrent.{fmt}")
    assert sorted(r.caller or "" for r in records) == sorted(CONCURRENT)
    assert len({r.linkedid for r in records}) == 5
    for record in records:
        did, status, reason, answered_by, ring, talk = CONCURRENT[record.caller or ""]
        assert record.did == did
        assert_call(record, status, reason, answered_by, ring, talk)


def test_callback_is_an_outbound_call_not_an_inbound_one() -> None:
    """The click-to-call by 101 reaches the customer; no inbound call appears."""
    (record,) = replay(TRACES / "12_callback_originate.jsonl")
    assert record.direction == Direction.OUTBOUND
    assert (record.caller, record.did, record.answered_by) == ("79161234503", "74951110001", "101")
    assert_call(record, "answered", None, "101", 3, 4)
    assert record.variables.get("CALLBACK_FOR") is not None


def test_raw_callback_capture_is_also_outbound_only() -> None:
    """The raw capture of a callback Originate gives one outbound call and no phantom inbound
    call."""
    records = replay(TRACES / "12_callback_originate.raw.txt")
    assert [r.direction for r in records] == [Direction.OUTBOUND]


def test_times_are_utc_and_ordered() -> None:
    """started ≤ answered ≤ ended, in UTC, on the capture machine's clock (2026-11-22)."""
    (record,) = replay(TRACES / "01_answered_simple.jsonl")
    assert record.answered_at is not None
    assert record.started_at <= record.answered_at <= record.ended_at
    assert record.started_at.isoformat().startswith("2026-11-22T11:51:53")
    assert record.started_at.utcoffset() is not None and not record.started_at.utcoffset()


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_routers_answer_is_kept_with_the_call(fmt: str) -> None:
    """The router's SET VARIABLEs (VarSet on the caller's channel) stay in the record."""
    ringgroup, queue = (
        replay(TRACES / f"{stem}.{fmt}")[0] for stem in ("06_ringgroup", "07_queue_answered")
    )
    assert ringgroup.variables["ROUTE_TO"] == "IAX2/101/101&IAX2/102/102&IAX2/103/103"
    assert ringgroup.variables["ROUTE_TIMEOUT"] == "20"
    assert (queue.variables["ROUTE_QUEUE"], queue.variables["ROUTE_TIMEOUT"]) == ("sales", "60")
    assert queue.variables["TRACK_SOURCE"] == "offline-flyer"
