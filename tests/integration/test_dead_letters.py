"""AMI events the correlator cannot apply, through the real daemon and a fake Asterisk on
loopback: a warning line each, a count on /metrics, a bounded dead-letter file that
`pbx-tracker replay` reads.

The correlator applies every captured event, so the failing one comes from a config
that cannot tell whose phone ``IAX2/poison`` is (a test double of our own config, not of
the correlator): the correlator's own failure path keeps the event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cli_runner import Cli
from daemons import WAIT, RunningDaemon, start_daemon, trace_settings
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs
from waiting import until

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.ami.dead_letters import DeadLetters
from pbx_tracker.calls.correlator import Correlator, FailedEvent
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.records import CallRecord, CallStatus
from pbx_tracker.config import Manager, Settings
from pbx_tracker.daemon import Daemon
from pbx_tracker.replay import replay_files, topology_of
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from pbx_tracker.store.migrate import upgrade_to_head
from stored import missed_call
from traces import TRACE_CONFIG, TRACES

POISON = "IAX2/poison"
TOKEN = "status-token-0123456789"
CALLER_NAME = "Ivan Petrov"


class UnreadablePhone(Settings):
    """The config, except that asking whose phone ``IAX2/poison`` is raises."""

    def manager_for_channel(self, channel: str) -> Manager | None:
        if channel.startswith(POISON):
            raise ValueError("unreadable phone")
        return super().manager_for_channel(channel)


def poisoned(settings: Settings) -> Correlator:
    """The real correlator on ``settings``, but with the `UnreadablePhone` lookup (the
    rest of the daemon keeps the plain config)."""
    return Correlator(topology_of(UnreadablePhone.model_validate(settings, from_attributes=True)))


def poison_call(number: int) -> dict[str, str]:
    """A carrier's Newchannel from the poisoned phone: an event the correlator fails on."""
    uniqueid = f"1733541121.{900 + number}"
    return {
        "Event": "Newchannel",
        "Channel": f"{POISON}-{number:08d}",
        "CallerIDNum": "79161234599",
        "CallerIDName": CALLER_NAME,
        "Context": "from-trunk",
        "Exten": "74951110001",
        "Uniqueid": uniqueid,
        "Linkedid": uniqueid,
    }


def dead_letter_settings(
    tmp_path: Path, port: int, dead_letters: Path, max_events: int = 10_000
) -> Settings:
    """The traces' config on SQLite with HTTP (for /metrics) and the dead-letter file."""
    return trace_settings(
        f"sqlite:///{tmp_path / 'pbx-tracker.sqlite3'}",
        port,
        tmp_path,
        PBX_TRACKER_HTTP__ENABLED="true",
        PBX_TRACKER_HTTP__PORT="0",
        PBX_TRACKER_HTTP__STATUS_TOKEN=TOKEN,
        PBX_TRACKER_CALLS__DEAD_LETTERS=str(dead_letters),
        PBX_TRACKER_CALLS__DEAD_LETTERS_MAX_EVENTS=str(max_events),
    )


@asynccontextmanager
async def running(settings: Settings, correlator: Correlator) -> AsyncIterator[RunningDaemon]:
    """The daemon on a migrated database, correlating with ``correlator``."""
    await asyncio.to_thread(upgrade_to_head, settings.database.url)
    async with start_daemon(settings, asyncio.Event()) as daemon:
        daemon.daemon.correlator = correlator
        yield daemon


async def wait_for(daemon: Daemon, condition: Callable[[], bool]) -> None:
    """Until ``condition()`` holds after an AMI item was taken in (bounded), then until the
    dead letters kept so far are written."""
    await until(condition, daemon.handled)
    await daemon.dead_letters.flush()


async def send_poison(asterisk: FakeAsterisk, daemon: Daemon, numbers: range) -> None:
    failed = daemon.correlator.events_failed
    for number in numbers:
        await asterisk.send_event(**poison_call(number))
    await wait_for(daemon, lambda: daemon.correlator.events_failed >= failed + len(numbers))


async def scrape(daemon: Daemon) -> dict[str, float]:
    """``/metrics`` as the monitoring sees it: sample name → value."""
    assert daemon.http is not None
    url = f"http://127.0.0.1:{daemon.http.port}/metrics"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as answer:
        assert answer.status == 200
        text = await answer.text()
    families = text_string_to_metric_families(text)
    return {sample.name: sample.value for family in families for sample in family.samples}


def named(logs: list[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


def lines(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_failed_event_is_one_warning_a_count_and_a_dead_letter(
    asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """An event the correlator cannot apply shows up as one warning naming it (never the
    caller's name), on /metrics, and as a line of the dead-letter file."""
    path = tmp_path / "state" / "dead-letters.jsonl"
    settings = dead_letter_settings(tmp_path, asterisk.port, path)
    with capture_logs() as logs:
        async with running(settings, poisoned(settings)) as daemon:
            await send_poison(asterisk, daemon.daemon, range(1))
            metrics = await scrape(daemon.daemon)
    (warning,) = named(logs, "calls.event_failed")
    assert warning == {
        "event": "calls.event_failed",
        "log_level": "warning",
        "ami_event": "Newchannel",
        "linkedid": "1733541121.900",
        "error": "ValueError",
    }
    assert CALLER_NAME not in repr(logs)
    assert metrics["pbx_tracker_ami_events_failed_total"] == 1
    (line,) = lines(path)
    assert line["_error"] == "ValueError"
    assert {k: v for k, v in line.items() if k not in {"_error", "Timestamp"}} == poison_call(0)
    assert abs(float(line["Timestamp"]) - datetime.now(UTC).timestamp()) < WAIT


async def test_replay_reads_the_dead_letter_file(asterisk: FakeAsterisk, tmp_path: Path) -> None:
    """`pbx-tracker replay --dry-run` reads the dead-letter file like any capture and says
    how many of its events the correlator could not apply."""
    path = tmp_path / "dead-letters.jsonl"
    settings = dead_letter_settings(tmp_path, asterisk.port, path)
    async with running(settings, poisoned(settings)) as daemon:
        await send_poison(asterisk, daemon.daemon, range(3))
    run = await Cli(TRACE_CONFIG, ("replay",))("--dry-run", str(path))
    assert run.code == 0, run
    again = Correlator(topology_of(settings))  # the plain config: what it fails on, if any
    again.feed_all(read_capture(path))
    summary = run.err.strip().splitlines()[-1]
    assert summary.startswith("1 file, 3 AMI messages, "), run.err
    failed = again.events_failed
    assert summary.endswith(
        f", {failed} AMI message{'' if failed == 1 else 's'} could not be applied"
    )
    assert [event.get("Uniqueid") for event in read_capture(path)] == [
        poison_call(n)["Uniqueid"] for n in range(3)
    ]


async def test_replay_fails_the_same_events_again(asterisk: FakeAsterisk, tmp_path: Path) -> None:
    """Replayed on the config the daemon failed with, the dead letters fail again, and the
    replay's summary counts them by event and error."""
    path = tmp_path / "dead-letters.jsonl"
    settings = dead_letter_settings(tmp_path, asterisk.port, path)
    async with running(settings, poisoned(settings)) as daemon:
        await send_poison(asterisk, daemon.daemon, range(3))
    unreadable = UnreadablePhone.model_validate(settings, from_attributes=True)
    summary = replay_files([path], unreadable, lambda record: None)
    assert (summary.events, summary.failed) == (3, {"Newchannel: ValueError": 3})


async def test_dead_letter_file_stays_bounded(asterisk: FakeAsterisk, tmp_path: Path) -> None:
    """Past its limit the dead-letter file rotates to `.1`: both together never hold more
    than ``dead_letters_max_events`` events, and they are the newest."""
    path = tmp_path / "dead-letters.jsonl"
    settings = dead_letter_settings(tmp_path, asterisk.port, path, max_events=4)
    with capture_logs() as logs:
        async with running(settings, poisoned(settings)) as daemon:
            await send_poison(asterisk, daemon.daemon, range(7))
            metrics = await scrape(daemon.daemon)
    kept = lines(path.with_name("dead-letters.jsonl.1")) + lines(path)
    assert [line["Uniqueid"] for line in kept] == [poison_call(n)["Uniqueid"] for n in (4, 5, 6)]
    assert len(named(logs, "calls.event_failed")) == 7
    assert metrics["pbx_tracker_ami_events_failed_total"] == 7


async def test_unwritable_folder_does_not_stop_the_daemon(
    asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """With a dead-letter folder that cannot be written, the problem is logged once, each
    failure is still logged and counted, and calls are still recorded."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be\n")
    settings = dead_letter_settings(tmp_path, asterisk.port, blocker / "dead-letters.jsonl")
    with capture_logs() as logs:
        async with running(settings, poisoned(settings)) as daemon:
            await send_poison(asterisk, daemon.daemon, range(2))
            await send_poison(asterisk, daemon.daemon, range(2, 3))
            await asterisk.play(trace_events(TRACES / "01_answered_simple.jsonl"))
            await daemon.wait_for_records(1)
            metrics = await scrape(daemon.daemon)
    (problem,) = named(logs, "calls.dead_letters_failed")
    assert problem["path"] == str(blocker / "dead-letters.jsonl")
    failures = named(logs, "calls.event_failed")
    unreadable = [f["linkedid"] for f in failures if f["ami_event"] == "Newchannel"]
    assert unreadable == [poison_call(n)["Linkedid"] for n in range(3)]
    assert metrics["pbx_tracker_ami_events_failed_total"] == len(failures)
    assert [record.caller for record in daemon.written] == ["+79161234501"]


async def test_unreadable_channel_at_resync_does_not_stop_the_daemon(
    asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A live channel the daemon cannot take in after a reconnect is logged, and the calls
    after it are still recorded."""
    settings = dead_letter_settings(tmp_path, asterisk.port, tmp_path / "dead-letters.jsonl")
    with capture_logs() as logs:
        async with running(settings, poisoned(settings)) as daemon:
            await send_poison(asterisk, daemon.daemon, range(1))  # now a live channel
            asterisk.drop_connections()
            await wait_for(daemon.daemon, lambda: bool(named(logs, "daemon.event_failed")))
            await asterisk.play(trace_events(TRACES / "01_answered_simple.jsonl"))
            await daemon.wait_for_records(1)
    assert named(logs, "daemon.event_failed")[0]["ami_event"] == "resync"
    assert [record.caller for record in daemon.written] == ["+79161234501"]


class StrangerAnswers(Correlator):
    """The real correlator, except that ``UserEvent: stranger`` finishes a call answered
    through a number no manager declared (a test double of our own code)."""

    def feed(self, event: AmiEvent) -> list[CallRecord]:
        if event.get("UserEvent") == "stranger":
            return [stranger_call()]
        return super().feed(event)


def stranger_call() -> CallRecord:
    """A call on a tracked number answered on +79160000104, which no manager declared."""
    started = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    return missed_call("1733541121.950", started, "79161234598").replace(
        did="74951110001",
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_at=started + timedelta(seconds=4),
        ended_at=started + timedelta(seconds=60),
        ring_seconds=4,
        talk_seconds=56,
        answered_via="number",
        answered_number="+79160000104",
    )


async def test_call_answered_by_an_undeclared_number_is_a_warning(
    asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A call answered by a number no manager declared is stored and logged as a warning
    naming that number, so the admin can declare it."""
    settings = dead_letter_settings(tmp_path, asterisk.port, tmp_path / "dead-letters.jsonl")
    with capture_logs() as logs:
        async with running(settings, StrangerAnswers(topology_of(settings))) as daemon:
            await asterisk.send_event(Event="UserEvent", UserEvent="stranger")
            await daemon.wait_for_records(1)
    (warning,) = named(logs, "calls.answered_by_undeclared")
    assert (warning["linkedid"], warning["answered_number"]) == ("1733541121.950", "+79160000104")
    assert warning["log_level"] == "warning"
    assert [record.answered_by for record in daemon.written] == [None]


def failure(number: int) -> FailedEvent:
    event = AmiEvent(poison_call(number), 1733541121.0 + number)
    return FailedEvent(event, "KeyError", event.get("Linkedid"))


@pytest.mark.parametrize(
    ("max_events", "kept"), [(1, [5]), (3, [4, 5]), (4, [2, 3, 4, 5]), (6, [0, 1, 2, 3, 4, 5])]
)
async def test_earlier_file_counts_towards_the_limit(
    tmp_path: Path, max_events: int, kept: list[int]
) -> None:
    """After a restart the dead letters already on disk count: the files never hold more
    than the limit, and keep the newest events."""
    path = tmp_path / "dead-letters.jsonl"
    for numbers in (range(3), range(3, 6)):  # two daemon runs, each with its writer
        dead_letters = DeadLetters(path, max_events)
        dead_letters.keep(failure(n) for n in numbers)
        await dead_letters.flush()
    files = [path.with_name(path.name + ".1"), path]
    found = [line for file in files if file.exists() for line in lines(file)]
    assert [line["Uniqueid"] for line in found] == [poison_call(n)["Uniqueid"] for n in kept]
    # no Timestamp header from Asterisk: the event's time is written in its place
    assert [float(line["Timestamp"]) for line in found] == [1733541121.0 + n for n in kept]
