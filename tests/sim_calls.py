"""Generated calls of every kind and the check that a record is the call its
`ExpectedCall` says (shared by the tests of the simulator's CEL and of CEL recovery)."""

from __future__ import annotations

from pbx_tracker.calls.records import CallRecord
from pbx_tracker.sim.call_template import KINDS
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import ExpectedCall, SimCall, make_call

SLACK = 1.0  # s: records count whole seconds
DIDS = {"74951110001": "yandex-direct", "74951110002": "google-ads", "74951110003": "offline-flyer"}


def generated(ids: IdAllocator, gap: float = 30.0) -> list[SimCall]:
    """One call of every kind, ring and talk times changed where the kind allows."""
    calls = []
    for number, (kind, spec) in enumerate(KINDS.items()):
        did = sorted(DIDS)[number % len(DIDS)]
        ring = 15.0 if kind == "no_answer" else 7.5 if spec.ring else None
        call = make_call(
            kind,
            start=gap * number,
            did=did,
            caller=f"7903555{number:04d}",
            caller_name='Анна "Смирнова"',
            source=DIDS[did],
            manager="102",
            ring=ring,
            talk=42.0 if spec.talk else None,
            ids=ids,
        )
        calls.append(call)
    return calls


def assert_is_expected(
    record: CallRecord | None, expected: ExpectedCall, recovered_from: str | None = "cel"
) -> None:
    """``record`` is the call ``expected`` says, rebuilt from ``recovered_from``."""
    assert record is not None, expected.kind
    digits = (record.did.lstrip("+"), record.caller.lstrip("+"))  # E.164 once labelled
    assert digits == (expected.did, expected.caller)
    assert (record.status, record.missed_reason, record.answered_by) == (
        expected.status,
        expected.missed_reason,
        expected.answered_by,
    ), expected.kind
    assert abs(record.ring_seconds - expected.ring_seconds) <= SLACK, expected.kind
    assert abs(record.talk_seconds - expected.talk_seconds) <= SLACK, expected.kind
    assert record.recording_path == expected.recording_path
    assert record.recovered_from == recovered_from
