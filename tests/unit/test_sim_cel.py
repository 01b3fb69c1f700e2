"""The simulated Asterisk writes the CEL file a real one writes: derived from the AMI events
of the calls, it holds the very records Asterisk logged in the captures, and the calls the
daemon recovers from it are the calls replaying their AMI stream gives."""

from __future__ import annotations

import asyncio
import csv
import json
import re
from collections import defaultdict
from collections.abc import Collection, Iterable
from pathlib import Path

import pytest
import test_cel_replay as cel_replay
from sim_calls import assert_is_expected, generated
from test_cel_replay import CAPTURES, IDS, replayed

from pbx_tracker.cel.reading import read_since
from pbx_tracker.cel.recovery import recover
from pbx_tracker.config import load_settings
from pbx_tracker.replay import topology_of
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.call_template import KINDS
from pbx_tracker.sim.cel_apps import DEFAULT_APPS
from pbx_tracker.sim.cel_log import CelFile, cel_rows
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import merge
from traces import TRACE_CONFIG, TRACES, e164

CEL = TRACES / "cel"
PAIRS = [(p, DEFAULT_APPS) for p in sorted(CEL.glob("*.jsonl"))]
PAIRS += [(p, DEFAULT_APPS) for p in sorted((CEL / "freepbx").glob("*.jsonl"))]
PAIRS += [(p, ("all",)) for p in sorted((CEL / "apps-all").glob("*.jsonl"))]  # apps = all
PAIR_IDS = [str(p.relative_to(CEL)).removesuffix(".jsonl") for p, _ in PAIRS]
TIME, CHANNEL, DATA, PEER = 1, 9, 11, 16  # CEL columns (0-based)
TIME_SLACK = 0.02  # s: Asterisk stamps CEL and AMI apart (README: 17 ms at worst)
LAG = 0.001  # s: how late Asterisk's CEL thread may look up a BRIDGE_EXIT's peers
PROMPTS = ("STREAM_BEGIN", "STREAM_END")  # no AMI event tells a prompt played
# (capture, channel, real data): after a blind transfer moves the channel to
# from-internal-xfer,600,1 AMI's Newexten shows that place with the old application
# (Dial); the Set() that then runs at priority 1 is at the same place: no Newexten.
AFTER_A_JUMP = {
    ("f11_blind_transfer_ringgroup", "Local/101@from-internal-0000001e;2", "__NODEST=600")
}

Row = list[str]
Channels = dict[str, list[tuple[str, Row]]]


# -- the captures: AMI stream and CEL file of the very same calls -----------------------


def capture(path: Path) -> tuple[list[dict[str, str]], float]:
    """The messages of a capture's .jsonl and the epoch of its `_ts == 0`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    messages = [{k: str(v) for k, v in json.loads(line).items()} for line in lines]
    expected = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
    return messages, float(expected["cel"]["ami_t0_epoch"])


def by_channel(lines: Iterable[str]) -> dict[str, list[tuple[str, Row]]]:
    """Each line with its columns, per Uniqueid, in the order written; prompts left out."""
    channels: dict[str, list[tuple[str, Row]]] = defaultdict(list)
    for line in lines:
        row = next(csv.reader([line]))
        if row[0] not in PROMPTS:
            channels[row[14]].append((line, row))
    return dict(channels)


def mine_and_real(jsonl: Path, apps: Collection[str]) -> tuple[Channels, Channels]:
    """The CEL derived from a capture's AMI stream, and the CEL Asterisk wrote, per channel."""
    messages, t0 = capture(jsonl)
    real = jsonl.with_suffix(".cel.csv").read_text(encoding="utf-8").splitlines()
    return by_channel(cel_rows(messages, epoch=t0, apps=apps)), by_channel(real)


def hangup_times(channels: Channels) -> dict[str, float]:
    return {
        row[CHANNEL]: float(row[TIME])
        for rows in channels.values()
        for _, row in rows
        if row[0] == "HANGUP"
    }


def excused(name: str, real: Row, mine: Row, hangups: dict[str, float]) -> int | None:
    """The column AMI cannot tell for this record, if any (see the module of `cel_log`)."""
    if real[0] == "BRIDGE_EXIT" and not real[PEER] and mine[PEER]:
        gone = [hangups.get(peer, -1.0) - float(real[TIME]) for peer in mine[PEER].split(",")]
        if all(0 <= lag <= LAG for lag in gone):
            return PEER
    if (name, real[CHANNEL], real[DATA]) in AFTER_A_JUMP:
        return DATA
    return None


@pytest.mark.parametrize(("jsonl", "apps"), PAIRS, ids=PAIR_IDS)
def test_the_cel_of_a_capture_is_the_cel_asterisk_wrote(jsonl: Path, apps: Collection[str]) -> None:
    """From the AMI stream alone, the simulator logs every record Asterisk logged for the same
    calls (every event of every channel, application, data, context, caller ID, peer and
    extra), each line byte for byte as cel_custom wrote it, times within 20 ms; what AMI
    cannot tell is excused one record at a time: prompts, a peer gone within a millisecond,
    the first step after a transfer's jump."""
    mine, real = mine_and_real(jsonl, apps)
    hangups = hangup_times(real)
    assert sorted(mine) == sorted(real)
    for uniqueid, rows in real.items():
        assert [r[0] for _, r in mine[uniqueid]] == [r[0] for _, r in rows], uniqueid
        for (line, row), (my_line, my_row) in zip(rows, mine[uniqueid], strict=True):
            assert abs(float(my_row[TIME]) - float(row[TIME])) <= TIME_SLACK, line
            column = excused(jsonl.stem, row, my_row, hangups)
            if column is None:
                assert my_line.replace(my_row[TIME], row[TIME], 1) == line
            else:
                kept = [i for i in range(len(row)) if i not in (TIME, column)]
                assert [my_row[i] for i in kept] == [row[i] for i in kept], line


def test_few_records_are_excused() -> None:
    """What AMI cannot tell is rare: 7 of the captures' 1,648 records (prompts aside)."""
    excuses, records = 0, 0
    for jsonl, apps in PAIRS:
        mine, real = mine_and_real(jsonl, apps)
        hangups = hangup_times(real)
        for uniqueid, rows in real.items():
            for (_, row), (_, my_row) in zip(rows, mine[uniqueid], strict=True):
                records += 1
                excuses += excused(jsonl.stem, row, my_row, hangups) is not None
    assert (excuses, records) == (7, 1648)


def test_the_default_applications_are_those_of_the_shipped_cel_conf() -> None:
    """Out of the box the simulator logs the applications the shipped cel.conf lists."""
    conf = (TRACES.parents[2] / "config" / "asterisk" / "cel_pbx_tracker.conf").read_text()
    apps = re.search(r"^apps\s*=\s*(.+)$", conf, re.MULTILINE)
    assert apps is not None
    assert {app.strip() for app in apps.group(1).split(",")} == DEFAULT_APPS


# -- recovering the calls from the derived CEL ------------------------------------------


@pytest.mark.parametrize(("path", "config"), CAPTURES, ids=IDS)
def test_calls_recovered_from_the_derived_cel_are_the_calls_of_the_ami_stream(
    path: Path, config: Path, tmp_path: Path
) -> None:
    """A call rebuilt from the simulator's CEL gets the record its AMI stream gives, field for
    field, and the true outcome: the checks the CEL Asterisk wrote passes (test_cel_replay)."""
    stem = path.name.removesuffix(".cel.csv")
    jsonl = path.with_name(f"{stem}.jsonl")
    messages, t0 = capture(jsonl)
    derived = tmp_path / path.name
    CelFile(derived).append(cel_rows(messages, epoch=t0))
    for suffix in (".jsonl", ".expected.json"):
        (tmp_path / f"{stem}{suffix}").symlink_to(path.with_name(f"{stem}{suffix}"))
    cel_replay.test_each_call_in_the_cel_log_gets_its_true_outcome(derived, config)
    cel_replay.test_a_cel_record_equals_the_ami_record_of_the_same_call(derived, config)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_generated_call_replayed_from_its_cel_is_the_expected_call(
    kind: str, tmp_path: Path
) -> None:
    """Every kind of generated call, read back from the CEL lines of its `SimCall`, is the
    call its ExpectedCall says: answered by whom or missed why, ring and talk time,
    recording, number and source."""
    call = next(c for c in generated(IdAllocator(seed=5)) if c.expected.kind == kind)
    log = tmp_path / "Master.csv"
    CelFile(log).append(call.cel_lines())
    records, summary = replayed(log, TRACE_CONFIG)
    assert (summary.bad_lines, summary.failed.total()) == ([], 0)
    assert_is_expected(records.get(call.expected.linkedid), call.expected)
    record = records[call.expected.linkedid]
    assert (record.did, record.source) == (e164(call.expected.did), call.expected.source)


def test_calls_made_while_the_tracker_is_down_are_recovered_from_the_cel_file(
    tmp_path: Path,
) -> None:
    """Overlapping calls of every kind that happen with no AMI client (`happen_offline`) are
    in the fake Asterisk's CEL file, and the daemon's recovery rebuilds each of them as its
    ExpectedCall says, none left going."""
    ids = IdAllocator(seed=9)
    calls = generated(ids, gap=4.0)
    log = tmp_path / "Master.csv"
    fake = FakeAsterisk(cel_file=log)
    fake.happen_offline(merge(calls), epoch=ids.epoch)
    assert fake.live_channels == {}
    assert log.read_text(encoding="utf-8").splitlines() == cel_rows(merge(calls), epoch=ids.epoch)
    settings = load_settings(TRACE_CONFIG, environ={})
    chunk = read_since(log, None)
    result = recover(
        chunk, topology_of(settings), str(settings.recordings_dir), longest_call=3600.0
    )
    assert (result.going, result.given_up, result.failed) == ({}, [], 0)
    records = {record.linkedid: record for record in result.records}
    assert sorted(records) == sorted(call.expected.linkedid for call in calls)
    for call in calls:
        assert_is_expected(records[call.expected.linkedid], call.expected)


# -- the fake Asterisk's CEL file --------------------------------------------------------


async def test_calls_played_over_ami_are_logged_in_the_cel_file(tmp_path: Path) -> None:
    """A fake Asterisk with a CEL file logs the calls it plays at the times it stamps their
    AMI events, the CEL of a `SimCall`; with CEL disabled it writes nothing."""
    calls = generated(IdAllocator(seed=2))
    fake = FakeAsterisk(cel_file=tmp_path / "Master.csv")
    for call in calls:
        await fake.play(call.messages, epoch=call.epoch)
    lines = (tmp_path / "Master.csv").read_text(encoding="utf-8").splitlines()
    assert lines == [line for call in calls for line in call.cel_lines()]
    quiet = FakeAsterisk(cel_file=tmp_path / "Off.csv")
    quiet.setup.cel_enabled = False
    await quiet.play(calls[0].messages, epoch=calls[0].epoch)
    assert not (tmp_path / "Off.csv").exists()


async def test_calls_that_happen_offline_reach_no_ami_client(tmp_path: Path) -> None:
    """While calls happen offline a logged-in client hears nothing of them; the CEL file
    has them all."""
    call = generated(IdAllocator(seed=4))[0]
    async with FakeAsterisk(cel_file=tmp_path / "Master.csv") as fake:
        reader, writer = await asyncio.open_connection(*fake.address)
        try:
            writer.write(b"Action: Login\r\nUsername: tracker\r\nSecret: tracker-secret\r\n\r\n")
            await fake.wait_for_login()
            fake.happen_offline(call.messages, epoch=call.epoch)
            await fake.send_event(Event="UserEvent", UserEvent="after")
            async with asyncio.timeout(5):
                heard = (await reader.readuntil(b"UserEvent: after\r\n")).decode()
        finally:
            writer.close()
    assert call.expected.linkedid not in heard
    assert (tmp_path / "Master.csv").read_text(encoding="utf-8").splitlines() == call.cel_lines()


def test_a_cel_file_renamed_away_loses_no_record(tmp_path: Path) -> None:
    """Like cel_custom, each record is appended to the file opened for it: a log rotated by
    renaming keeps the records before, the new file gets the ones after."""
    ids = IdAllocator(seed=6)
    messages = merge(generated(ids, gap=4.0))
    log = tmp_path / "Master.csv"
    fake = FakeAsterisk(cel_file=log)
    half = len(messages) // 2
    fake.happen_offline(messages[:half], epoch=ids.epoch)
    log.rename(tmp_path / "Master.csv.1")
    fake.happen_offline(messages[half:], epoch=ids.epoch)
    before = (tmp_path / "Master.csv.1").read_text(encoding="utf-8").splitlines()
    after = log.read_text(encoding="utf-8").splitlines()
    assert before and after
    assert before + after == cel_rows(messages, epoch=ids.epoch)
