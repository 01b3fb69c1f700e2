"""The captured traces and the outcomes their README states (shared by the test modules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from pbx_tracker.calls.records import CallRecord

TRACES = Path(__file__).parent / "data" / "asterisk-traces"
TRACE_CONFIG = TRACES / "pbx-tracker.yaml"


class Expected(NamedTuple):
    caller: str
    did: str
    status: str
    reason: str | None
    answered_by: str | None
    ring: int
    talk: int


EXPECTED: dict[str, list[Expected]] = {
    "01_answered_simple": [Expected("79161234501", "74951110001", "answered", None, "101", 3, 3)],
    "03_missed_no_answer": [
        Expected("79161234503", "74951110003", "missed", "no_answer", None, 10, 0)
    ],
    "04_missed_caller_abandon": [
        Expected("79161234504", "74951110010", "missed", "abandoned", None, 2, 0)
    ],
    "05_busy_all": [Expected("79161234505", "74951110002", "missed", "busy", None, 0, 0)],
    "06_ringgroup": [Expected("79161234506", "74951110001", "answered", None, "102", 3, 4)],
    "07_queue_answered": [Expected("79161234507", "74951110003", "answered", None, "102", 8, 4)],
    "11_concurrent": [
        Expected("79160000001", "74951110001", "answered", None, "101", 2, 5),
        Expected("79160000002", "74951110002", "answered", None, "102", 3, 4),
        Expected("79160000003", "74951110003", "missed", "no_answer", None, 8, 0),
        Expected("79160000004", "74951110012", "missed", "busy", None, 0, 0),
        Expected("79160000005", "74951110015", "missed", "abandoned", None, 5, 0),
    ],
}
ATTEMPTS = {
    "01_answered_simple": 1,
    "03_missed_no_answer": 1,
    "04_missed_caller_abandon": 2,
    "05_busy_all": 3,
    "06_ringgroup": 3,
    "07_queue_answered": 2,
}


def e164(number: str) -> str:
    return "+" + number


def figures(record: CallRecord) -> tuple[object, ...]:
    """What a call record says about the call's course: outcome, ring, talk, transfer wait."""
    return (
        record.status,
        record.answered_by,
        record.missed_reason,
        record.transferred_to,
        record.ring_seconds,
        record.talk_seconds,
        record.transfer_wait_seconds,
    )


def truths(expected: Path) -> list[dict[str, Any]]:
    """The true outcome of each call of a capture's ``*.expected.json``.

    The FreePBX files list ``calls``; ours list ``expected_calls`` and, apart, what was
    ``measured`` (linkedid, figures), matched here by caller and DID.  Each call has
    ``linkedid``, ``answered``, ``answered_by``, ``missed_reason``, ``did``, ``caller``,
    ``expect_call_record`` and, where measured, ``ring_s_measured`` / ``talk_s_measured``.
    """
    data = json.loads(expected.read_text(encoding="utf-8"))
    if "calls" in data:
        return list(data["calls"])
    measured = list(data.get("measured") or [])
    calls = []
    for call in data.get("expected_calls") or []:
        match = next(
            (m for m in measured if (m["caller"], m["did"]) == (call["caller"], call["did"])), None
        )
        if match is not None:
            measured.remove(match)
        found = {**call, **(match or {})}
        found.setdefault("expect_call_record", match is not None and call.get("tracked", True))
        found.setdefault("transferred_to", None)
        calls.append(found)
    return calls


TRUTH_SLACK = 1.5  # seconds: the truth is measured to the millisecond, records are whole seconds


def assert_true_outcome(record: CallRecord | None, call: dict[str, Any]) -> None:
    """``record`` is what ``call`` (one of `truths`) says: no record for a call that is not
    tracked; else the numbers, outcome, who answered, transfer, ring and talk."""
    if not call["expect_call_record"]:
        assert record is None, call.get("linkedid")
        return
    assert record is not None, call.get("linkedid")
    assert (record.did, record.caller) == (e164(call["did"]), e164(call["caller"]))
    assert (record.status, record.answered_by, record.missed_reason) == (
        "answered" if call["answered"] else "missed",
        call["answered_by"],
        call["missed_reason"],
    )
    assert record.transferred_to == call["transferred_to"]
    assert abs(record.ring_seconds - call["ring_s_measured"]) <= TRUTH_SLACK
    talk = record.talk_seconds + record.transfer_wait_seconds
    assert abs(talk - call["talk_s_measured"]) <= TRUTH_SLACK
