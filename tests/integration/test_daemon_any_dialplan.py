"""The live listener on dialplans other than ours: the FreePBX-style captures and the
synthetic scenes of tests/dialplans.py, played by a fake Asterisk on loopback into a
running daemon, end as the rows their true outcomes state (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml
from daemons import start_daemon, trace_settings
from dialplans import EPOCH, MANAGERS, MOBILES, SCENES, Expected, Pbx

from pbx_tracker.calls.records import CallRecord
from pbx_tracker.replay import replay_files
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_with_epoch
from stored import stored_calls
from traces import TRACES, e164, figures

FREEPBX = TRACES / "freepbx"
FREEPBX_CONFIG = FREEPBX / "pbx-tracker.yaml"
SLACK = 1.5  # seconds: the captures' figures are measured, the rows are whole seconds


def freepbx_truth() -> list[dict[str, object]]:
    """Every call of the FreePBX captures with its true outcome (expected.json files)."""
    calls = []
    for path in sorted(FREEPBX.glob("*.expected.json")):
        calls.extend(json.loads(path.read_text(encoding="utf-8"))["calls"])
    return calls


async def test_freepbx_captures_through_the_listener(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Every captured FreePBX call is stored as its README states: answered on a desk or a
    mobile, missed with the reason, transferred, untracked numbers left out; with the
    same ring, talk and transfer wait as `replay` gives from the capture."""
    settings = trace_settings(migrated_url, asterisk.port, tmp_path, config=FREEPBX_CONFIG)
    truth = freepbx_truth()
    tracked = [call for call in truth if call["expect_call_record"]]
    async with start_daemon(settings, asyncio.Event()) as running:
        for path in sorted(FREEPBX.glob("*.jsonl")):
            messages, epoch = trace_with_epoch(path)
            await asterisk.play(messages, epoch=epoch)
        await running.wait_for_records(len(tracked))
    rows = {row.linkedid: row for row in await stored_calls(migrated_url)}
    assert sorted(rows) == sorted(str(call["linkedid"]) for call in tracked)
    replayed: list[CallRecord] = []
    replay_files(sorted(FREEPBX.glob("*.jsonl")), settings, replayed.append)
    for record in replayed:  # live and replayed: the same figures
        assert figures(rows[record.linkedid]) == figures(record)
    for call in tracked:
        row = rows[str(call["linkedid"])]
        assert (row.did, row.caller) == (e164(str(call["did"])), e164(str(call["caller"])))
        assert (row.status, row.answered_by, row.missed_reason, row.transferred_to) == (
            "answered" if call["answered"] else "missed",
            call["answered_by"],
            call["missed_reason"],
            call["transferred_to"],
        ), call["linkedid"]
        assert abs(row.ring_seconds - float(str(call["ring_s_measured"]))) <= SLACK
        assert row.recording_path == call["recording_path"]
        if call.get("answered_via") == "mobile":
            number = e164(str(call["answered_number"]))
            assert (row.answered_via, row.answered_number) == ("number", number)


def scene_config(tmp_path: Path) -> Path:
    """The config an admin of the scenes' PBX writes: managers' desks and mobiles, DIDs."""
    config = {
        "node": "pbx",
        "phone_region": "RU",
        "ami": {"host": "127.0.0.1", "username": "tracker", "secret": "tracker-secret"},
        "calls": {"inbound_contexts": ["from-trunk"], "did_variable": "FROM_DID"},
        "tracked_numbers": [
            {"did": "74951110001", "source": "yandex-direct"},
            {"did": "74951110002", "source": "google-ads"},
            {"did": "74951110003", "source": "offline-flyer"},
        ],
        "number_pools": [
            {"name": "site", "numbers": ["74951110010-74951110019"], "source": "pool"}
        ],
        "managers": [
            {
                "name": f"Manager {extension}",
                "extension": extension,
                "devices": [device],
                "external_numbers": [n for n, owner in MOBILES.items() if owner == extension],
            }
            for extension, device in MANAGERS.items()
        ],
        "agi": {"enabled": False},
    }
    path = tmp_path / "scenes.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def test_scenes_through_the_listener(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Mobiles that confirm or not, a queue abandon, an IVR hang-up, a forward to a stranger,
    a national DID and a blind transfer, live: each row as truly happened."""
    config = scene_config(tmp_path)
    settings = trace_settings(migrated_url, asterisk.port, tmp_path, config=config)
    wanted: dict[str, Expected] = {}
    async with start_daemon(settings, asyncio.Event()) as running:
        for number, scene in enumerate(SCENES.values()):
            pbx = Pbx(epoch=EPOCH + 1000 * number)
            want = scene(pbx)
            wanted[e164(want.caller)] = want
            await asterisk.play(pbx.messages(), epoch=pbx.epoch)
        await running.wait_for_records(len(wanted))
    rows = {row.caller: row for row in await stored_calls(migrated_url)}
    assert sorted(rows) == sorted(wanted)
    for caller, want in wanted.items():
        assert_row(rows[caller], want)


def assert_row(row: CallRecord, want: Expected) -> None:
    """The stored row is the scene's true outcome (the DID in E.164)."""
    assert row.did == e164("7" + want.did[1:] if want.did.startswith("8") else want.did)
    assert (row.status, row.answered_by, row.missed_reason, row.transferred_to) == (
        want.status,
        want.answered_by,
        want.reason,
        want.transferred_to,
    ), row.caller
    assert (row.ring_seconds, row.talk_seconds) == (want.ring, want.talk), row.caller
    assert (row.answered_via, row.answered_number) == (want.via, want.number), row.caller
    assert (row.queue, row.transfer_wait_seconds) == (want.queue, want.transfer_wait)
