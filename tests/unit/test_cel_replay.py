"""Calls rebuilt from Asterisk's own event log (CEL), read by `replay` like a capture:
the same outcomes as the README states, and the same records as the AMI stream of the
very same calls gives, but for what CEL cannot know."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from pbx_tracker.calls.records import CallRecord
from pbx_tracker.config import load_settings
from pbx_tracker.replay import ReplaySummary, replay_files
from traces import TRACE_CONFIG, TRACES, assert_true_outcome, truths

CEL = TRACES / "cel"
FREEPBX_CONFIG = TRACES / "freepbx" / "pbx-tracker.yaml"
CAPTURES = [(p, TRACE_CONFIG) for p in sorted(CEL.glob("*.cel.csv"))] + [
    (p, FREEPBX_CONFIG) for p in sorted((CEL / "freepbx").glob("*.cel.csv"))
]
IDS = [p.name.removesuffix(".cel.csv") for p, _ in CAPTURES]


def replayed(path: Path, config: Path) -> tuple[dict[str, CallRecord], ReplaySummary]:
    records: list[CallRecord] = []
    summary = replay_files([path], load_settings(config, environ={}), records.append)
    return {record.linkedid: record for record in records}, summary


@pytest.mark.parametrize(("path", "config"), CAPTURES, ids=IDS)
def test_each_call_in_the_cel_log_gets_its_true_outcome(path: Path, config: Path) -> None:
    """Answered and by whom, missed and why, transferred, on which number, how long it rang
    and talked: from CEL alone, as the capture's README states."""
    records, summary = replayed(path, config)
    assert (summary.bad_lines, summary.failed.total()) == ([], 0)
    for call in truths(path.with_name(path.name.replace(".cel.csv", ".expected.json"))):
        record = records.get(call.get("linkedid", ""))
        assert_true_outcome(record, call)
        if record is None:
            continue
        assert record.recording_path == call["recording_path"]
        assert record.recovered_from == "cel"


@pytest.mark.parametrize(("path", "config"), CAPTURES, ids=IDS)
def test_a_cel_record_equals_the_ami_record_of_the_same_call(path: Path, config: Path) -> None:
    """Field for field what the AMI stream of the same calls gives, times to 50 ms, but for
    what CEL cannot know: the router's answers and the Set()s after the first of a run
    (variables), and the order of ring attempts begun at the same moment."""
    from_cel, _ = replayed(path, config)
    from_ami, _ = replayed(path.with_name(path.name.replace(".cel.csv", ".jsonl")), config)
    assert sorted(from_cel) == sorted(from_ami)
    for linkedid, ami in from_ami.items():
        cel = from_cel[linkedid]
        for moment in ("started_at", "answered_at", "ended_at"):
            assert close(getattr(cel, moment), getattr(ami, moment)), (linkedid, moment)
        assert cel.variables.items() <= ami.variables.items()
        assert attempts(cel) == attempts(ami)
        unknowable = {"started_at", "answered_at", "ended_at", "variables", "attempts"}
        same = {k: v for k, v in vars_of(ami).items() if k not in unknowable}
        assert {k: vars_of(cel)[k] for k in same} == {**same, "recovered_from": "cel"}


def test_cel_without_applications_still_tells_the_outcome() -> None:
    """With `apps = all` in cel.conf Asterisk logs no application: outcomes and figures stay
    right, the recording's name and the queue are unknown (README)."""
    folder = CEL / "apps-all"
    for path in sorted(folder.glob("*.cel.csv")):
        from_cel, _ = replayed(path, TRACE_CONFIG)
        from_ami, _ = replayed(
            path.with_name(path.name.replace(".cel.csv", ".jsonl")), TRACE_CONFIG
        )
        for linkedid, ami in from_ami.items():
            cel = from_cel[linkedid]
            assert (cel.status, cel.answered_by, cel.ring_seconds, cel.talk_seconds) == (
                ami.status,
                ami.answered_by,
                ami.ring_seconds,
                ami.talk_seconds,
            )
            assert (cel.recording_path, cel.queue) == (None, None)


def test_unreadable_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    """A torn line and a line of garbage in the log cost only themselves: every call is
    still recovered, and the replay names each bad line."""
    lines = (CEL / "11_concurrent.cel.csv").read_text(encoding="utf-8").splitlines()
    lines.insert(5, "not,a,cel,record")
    lines.insert(20, '"CHAN_START","yesterday at noon","x"')
    broken = tmp_path / "Master.csv"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, summary = replayed(broken, TRACE_CONFIG)
    assert len(records) == 5
    assert [line.split(":")[1] for line in summary.bad_lines] == ["6", "21"]


def test_date_time_event_times_read_as_epoch_ones(tmp_path: Path) -> None:
    """A cel.conf with a dateformat writes times as local date-times: the same calls."""
    source = CEL / "06_ringgroup.cel.csv"
    rows = list(csv.reader(io.StringIO(source.read_text(encoding="utf-8"))))
    for row in rows:
        row[1] = datetime.fromtimestamp(float(row[1])).strftime("%Y-%m-%d %H:%M:%S.%f")
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    dated = tmp_path / "Master.csv"
    dated.write_text(out.getvalue(), encoding="utf-8")
    assert vars_of_all(replayed(dated, TRACE_CONFIG)[0]) == vars_of_all(
        replayed(source, TRACE_CONFIG)[0]
    )


def close(one: datetime | None, other: datetime | None) -> bool:
    if one is None or other is None:
        return one is other
    return abs((one - other).total_seconds()) <= 0.05


def attempts(record: CallRecord) -> Counter[tuple[object, ...]]:
    return Counter((a.manager, a.outcome, a.via, a.number, a.queue) for a in record.attempts)


def vars_of(record: CallRecord) -> dict[str, object]:
    return record.to_json()


def vars_of_all(records: dict[str, CallRecord]) -> dict[str, dict[str, object]]:
    return {linkedid: vars_of(record) for linkedid, record in records.items()}
