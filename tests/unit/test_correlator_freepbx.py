"""The FreePBX-style captures (tests/data/asterisk-traces/freepbx/) replayed with the
config its admin wrote give every call's true outcome, from JSON Lines and from raw AMI
text alike; and every capture, ours too, gives the same figures in both formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx_tracker.calls.records import CallRecord
from pbx_tracker.config import Settings, load_settings
from pbx_tracker.replay import replay_files
from traces import TRACE_CONFIG, TRACES, assert_true_outcome, e164, figures, truths

FREEPBX = TRACES / "freepbx"
STEMS = sorted(p.name.removesuffix(".expected.json") for p in FREEPBX.glob("*.expected.json"))


def settings_of(config: Path) -> Settings:
    return load_settings(config, environ={})


def replayed(path: Path, config: Path) -> dict[str, CallRecord]:
    """The stored-to-be records of one capture (labelled; untracked calls left out)."""
    records: list[CallRecord] = []
    summary = replay_files([path], settings_of(config), records.append)
    assert not summary.unfinished
    return {record.linkedid: record for record in records}


@pytest.mark.parametrize("fmt", ["jsonl", "raw.txt"])
@pytest.mark.parametrize("stem", STEMS)
def test_each_freepbx_call_gets_its_true_outcome(stem: str, fmt: str) -> None:
    """Answered on a desk or a mobile, missed with the caller-side reason, transferred,
    or not tracked at all: as the capture's README states."""
    records = replayed(FREEPBX / f"{stem}.{fmt}", FREEPBX / "pbx-tracker.yaml")
    for call in truths(FREEPBX / f"{stem}.expected.json"):
        record = records.get(call["linkedid"])
        assert_true_outcome(record, call)
        if record is None:
            continue
        assert record.recording_path == call["recording_path"]
        if call.get("answered_via") == "mobile":
            number = e164(call["answered_number"])
            assert (record.answered_via, record.answered_number) == ("number", number)


def test_the_unconfirmed_mobile_is_an_attempt_not_accepted() -> None:
    """Vera's mobile picked up and pressed 2: kept as her attempt, outcome not_accepted."""
    (record,) = replayed(
        FREEPBX / "f08_followme_mobile_declines.jsonl", FREEPBX / "pbx-tracker.yaml"
    ).values()
    mobile = [(a.manager, a.outcome, a.number) for a in record.attempts if a.via == "number"]
    assert mobile == [("103", "not_accepted", "+79160000103")]


def test_a_queue_member_answering_through_a_local_channel_is_no_transfer() -> None:
    """Queue 400 rings Local/10x@from-queue members; 101 answers: transferred to nobody."""
    (record,) = replayed(
        FREEPBX / "f05_queue_answered.jsonl", FREEPBX / "pbx-tracker.yaml"
    ).values()
    assert (record.answered_by, record.transferred_to, record.queue) == ("101", None, "400")
    assert {a.queue for a in record.attempts} == {"400"}


CAPTURES = [(p, FREEPBX / "pbx-tracker.yaml") for p in sorted(FREEPBX.glob("*.jsonl"))] + [
    (p, TRACE_CONFIG) for p in sorted(TRACES.glob("*.jsonl"))
]


@pytest.mark.parametrize(("capture", "config"), CAPTURES, ids=lambda value: Path(value).stem)
def test_raw_text_and_json_lines_give_the_same_figures(capture: Path, config: Path) -> None:
    """The same capture as raw AMI text (no clock) and as JSON Lines: the same outcome,
    ring, talk and transfer wait for every inbound call."""
    raw = replayed(capture.with_suffix(".raw.txt"), config)
    timed = replayed(capture, config)
    assert sorted(raw) == sorted(timed)
    for linkedid, record in timed.items():
        if record.direction != "inbound":
            continue
        other = raw[linkedid]
        assert figures(other) == figures(record), linkedid
