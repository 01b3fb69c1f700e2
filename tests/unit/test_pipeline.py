"""One path for a finished call: labels, remember, store, and the listeners after it."""

from __future__ import annotations

from datetime import UTC, datetime

from structlog.testing import capture_logs

from pbx_tracker.calls.records import CallRecord
from pbx_tracker.pipeline import CallPipeline, Listener, Listeners
from stored import missed_call

CALL = missed_call("1733541121.1", datetime(2026, 12, 7, 9, 30, tzinfo=UTC), "+79161234567")


def test_a_failing_listener_does_not_keep_the_next_ones_from_the_call() -> None:
    """When one part that follows stored calls fails (here the metrics), the callbacks after
    it still hear of the call, and the log names the part that failed."""
    heard: list[tuple[str, str, bool]] = []

    def hears(name: str) -> Listener:
        return lambda record, new: heard.append((name, record.linkedid, new))

    listeners = Listeners()
    listeners.add("first", hears("first"))
    listeners.add("metrics", lambda record, new: 1 / 0)
    listeners.add("callbacks", hears("callbacks"))
    with capture_logs() as logs:
        listeners(CALL, True)
    assert heard == [("first", CALL.linkedid, True), ("callbacks", CALL.linkedid, True)]
    failed = [entry for entry in logs if entry["event"] == "pipeline.listener_failed"]
    assert [(entry["listener"], entry["linkedid"]) for entry in failed] == [
        ("metrics", CALL.linkedid)
    ]


def test_an_untracked_call_is_neither_remembered_nor_stored() -> None:
    """A call on a number nobody tracks gets no record and teaches the router nothing; a
    tracked one is labelled, remembered, then stored, in that order."""
    steps: list[str] = []

    def label(record: CallRecord) -> CallRecord | None:
        steps.append("label")
        return record.replace(source="flyer") if record.did == CALL.did else None

    pipeline = CallPipeline(
        [label],
        lambda record: steps.append(f"store {record.source}"),
        remember=[lambda record: steps.append(f"remember {record.source}")],
    )
    assert pipeline.finished(CALL.replace(did="+74950000000")) is None
    assert steps == ["label"]
    stored = pipeline.finished(CALL)
    assert stored is not None and stored.source == "flyer"
    assert steps == ["label", "label", "remember flyer", "store flyer"]
