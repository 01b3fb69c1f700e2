"""No call lost while the daemon is down: the fake Asterisk goes on taking calls and writes
its CEL log, the daemon starts again and recovers them from it, on SQLite and PostgreSQL:
each call recorded once whatever the number of restarts, each missed one called back with
the time the customer called, a call going on across the restart with its true figures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from daemons import WAIT, RunningDaemon, start_daemon, trace_settings
from sim_calls import assert_is_expected, generated
from waiting import until

from pbx_tracker.callbacks.tasks import CallbackTask
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.config import Settings
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import SimCall, make_call, merge
from stored import stored_calls, stored_tasks, tasks_once_taken

LIVE_CALLER = "79167770001"


def cel_site(url: str, asterisk: FakeAsterisk, tmp_path: Path) -> Settings:
    """The traces' config on ``url``; the fake Asterisk writes the CEL log the daemon reads."""
    settings = trace_settings(url, asterisk.port, tmp_path)
    settings.cel.file.parent.mkdir(parents=True, exist_ok=True)
    asterisk.cel_file = settings.cel.file
    return settings


def live_call(ids: IdAllocator) -> SimCall:
    """A call answered by 101 while the daemon listens."""
    return make_call(
        "answered",
        start=10.0,
        did="74951110001",
        caller=LIVE_CALLER,
        caller_name="",
        source="yandex-direct",
        manager="101",
        ids=ids,
    )


async def tasks_when(
    pbx: RunningDaemon, url: str, check: Callable[[list[CallbackTask]], bool]
) -> list[CallbackTask]:
    """The callback tasks once ``check`` holds (re-read after each call the service took)."""
    service = pbx.daemon.callbacks
    assert service is not None
    return await tasks_once_taken(url, service.handled, WAIT, holding=check)


def by_linkedid(records: Sequence[CallRecord]) -> dict[str, CallRecord]:
    found: dict[str, CallRecord] = {}
    for record in records:
        assert record.linkedid not in found, f"{record.linkedid} stored twice"
        found[record.linkedid] = record
    return found


async def test_calls_made_while_the_daemon_was_down_are_recorded_once_and_called_back(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Calls of every kind made while the daemon was stopped are in the call log after it
    starts (marked recovered from CEL, figures as if heard live), each missed one has its
    callback task dated when the customer called, and three more restarts add nothing."""
    settings = cel_site(migrated_url, asterisk, tmp_path)
    ids = IdAllocator(time.time() - 3600, seed=31, first_seq=100)
    live = live_call(ids)
    async with start_daemon(settings, asyncio.Event()) as pbx:
        await asterisk.play(live.messages, epoch=ids.epoch)
        await pbx.wait_for_records(1)
    away = generated(ids, gap=40.0)
    asterisk.happen_offline(merge(away), epoch=ids.epoch)
    missed = [call for call in away if call.expected.status == "missed"]
    async with start_daemon(settings, asyncio.Event()) as pbx:
        await pbx.wait_for_records(len(away))
        found = await tasks_when(pbx, migrated_url, lambda found: len(found) == len(missed))
    for _ in range(3):
        async with start_daemon(settings, asyncio.Event()) as pbx:
            assert pbx.written == []
    stored = by_linkedid(await stored_calls(migrated_url))
    assert sorted(stored) == sorted(call.expected.linkedid for call in [live, *away])
    assert_is_expected(stored[live.expected.linkedid], live.expected, recovered_from=None)
    for call in away:
        assert_is_expected(stored[call.expected.linkedid], call.expected)
    called = {task.customer: task.first_missed_at for task in await stored_tasks(migrated_url)}
    assert len(found) == len(called) == len(missed)
    for call in missed:
        record = stored[call.expected.linkedid]
        assert called[record.caller] == record.started_at
        assert abs(record.started_at.timestamp() - (ids.epoch + call.expected.start)) < 1


def answered_at_index(call: SimCall) -> int:
    """The index of the message after the answered call's two channels are bridged."""
    entered = [i for i, m in enumerate(call.messages) if m.get("Event") == "BridgeEnter"]
    return entered[1] + 1


def answered_by_102(ids: IdAllocator, caller: str, *, ring: float, talk: float) -> SimCall:
    """A google-ads call from ``caller`` that 102 answers after ``ring`` s."""
    return make_call(
        "answered",
        start=5.0,
        did="74951110002",
        caller=caller,
        caller_name="",
        source="google-ads",
        manager="102",
        ring=ring,
        talk=talk,
        ids=ids,
    )


async def test_a_call_going_on_across_a_restart_keeps_its_true_figures(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A call answered while the daemon was down and still talking when it starts again is
    recorded, once it ends, with its true ring and talk time and its recording, complete
    (not answered at the reconnect moment, without recording)."""
    settings = cel_site(migrated_url, asterisk, tmp_path)
    ids = IdAllocator(time.time() - 600, seed=32, first_seq=300)
    call = answered_by_102(ids, "79167770002", ring=6.0, talk=90.0)
    async with start_daemon(settings, asyncio.Event()):
        pass
    cut = answered_at_index(call)
    asterisk.happen_offline(call.messages[:cut], epoch=ids.epoch)
    async with start_daemon(settings, asyncio.Event()) as pbx:
        await asterisk.play(call.messages[cut:], epoch=ids.epoch)
        await pbx.wait_for_records(1)
    [record] = await stored_calls(migrated_url)
    assert_is_expected(record, call.expected, recovered_from=None)
    assert record.complete


async def test_a_call_answered_while_the_ami_link_was_down_is_answered(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A manager who picks up while the AMI link is down is recorded as having answered,
    with the true ring and talk, complete: the gap is told from CEL at the reconnect (it
    was stored as missed, no answer, "complete", and the customer was called back)."""
    settings = cel_site(migrated_url, asterisk, tmp_path)
    ids = IdAllocator(time.time() - 600, seed=33, first_seq=500)
    call = answered_by_102(ids, "79167770003", ring=8.0, talk=20.0)
    answer = next(
        i
        for i, m in enumerate(call.messages)
        if m.get("Event") == "DialEnd" and m.get("DialStatus") == "ANSWER"
    )
    async with start_daemon(settings, asyncio.Event()) as pbx:
        await asterisk.play(call.messages[:answer], epoch=ids.epoch)
        await until(lambda: pbx.daemon.correlator.calls_in_progress != 0, pbx.daemon.handled)
        pbx.daemon.resynced.clear()
        asterisk.drop_connections()  # the link drops: the answer happens in the gap
        cut = answered_at_index(call)
        asterisk.happen_offline(call.messages[answer:cut], epoch=ids.epoch)
        await asyncio.wait_for(pbx.daemon.resynced.wait(), WAIT)
        await asterisk.play(call.messages[cut:], epoch=ids.epoch)
        await pbx.wait_for_records(1)
    [record] = await stored_calls(migrated_url)
    assert_is_expected(record, call.expected, recovered_from=None)
    assert record.complete
    assert await stored_tasks(migrated_url) == []
