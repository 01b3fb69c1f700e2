"""`pbx-tracker run` killed with SIGKILL in the middle of recovering a long downtime from the
CEL log, then started again: every call recorded once and every missed customer called
back once, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from service_process import service_env, start
from sim_calls import DIDS
from sqlalchemy import func, select

from pbx_tracker.callbacks.tasks import CallbackTask
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.call_template import KINDS
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import SimCall, make_call, merge
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.store.models import CallRow
from stored import connected, stored_tasks

pytestmark = pytest.mark.slow

WAIT = 120.0
POLL = 0.02  # s between two looks at the database another process writes
CALLS = 600  # about 4.4 MiB of CEL
T = TypeVar("T")


def downtime(ids: IdAllocator) -> list[SimCall]:
    """``CALLS`` overlapping calls of every kind, each from its own customer."""
    kinds, dids = list(KINDS), sorted(DIDS)
    return [
        make_call(
            kinds[number % len(kinds)],
            start=3.0 * number,
            did=dids[number % len(dids)],
            caller=f"7916{number:07d}",
            caller_name="",
            source=DIDS[dids[number % len(dids)]],
            manager="102",
            ids=ids,
        )
        for number in range(CALLS)
    ]


async def count_calls(url: str) -> int:
    async with connected(url) as conn:
        return int((await conn.execute(select(func.count()).select_from(CallRow))).scalar())


async def until(check: Callable[[], Awaitable[T]]) -> T:
    """Look again every `POLL` (another process writes) until ``check()`` is true."""
    async with asyncio.timeout(WAIT):
        while not (found := await check()):  # noqa: ASYNC110 - nothing here tells when
            await asyncio.sleep(POLL)
    return found


async def logged(path: Path, event: str) -> bool:
    text = await asyncio.to_thread(path.read_text, encoding="utf-8", errors="replace")
    return f'"event": "{event}"' in text


async def stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), WAIT)


async def test_a_kill_9_in_the_middle_of_recovery_loses_and_doubles_nothing(
    database_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """The daemon is killed while it stores the calls of a downtime it read from CEL; the
    next start reads them again: all of them are there, none twice, and each missed
    customer has exactly one callback task."""
    log = tmp_path / "cel-custom" / "Master.csv"
    log.parent.mkdir()
    env = service_env(
        tmp_path,
        asterisk.port,
        PBX_TRACKER_DATABASE__URL=database_url,
        PBX_TRACKER_CEL__FILE=str(log),
        PBX_TRACKER_CALLS__DEAD_LETTERS=str(tmp_path / "dead-letters.jsonl"),
    )
    await asyncio.to_thread(upgrade_to_head, database_url)
    daemon_log = tmp_path / "daemon.log"
    with daemon_log.open("wb") as output:
        first = await start(env, output)
        await until(lambda: logged(daemon_log, "cel.first_read"))
        assert await stop(first) == 0
        ids = IdAllocator(time.time() - 4 * 3600, seed=41, first_seq=1000)
        calls = downtime(ids)
        asterisk.cel_file = log
        asterisk.happen_offline(merge(calls), epoch=ids.epoch)
        killed = await start(env, output)
        at_kill = await until(lambda: count_calls(database_url))
        killed.kill()
        assert await killed.wait() == -signal.SIGKILL
        again = await start(env, output)
        await until(lambda: _all_stored(database_url))
        missed = {f"+{c.expected.caller}" for c in calls if c.expected.status == "missed"}
        found = await until(lambda: _tasks_of(database_url, len(missed)))
        assert await stop(again) == 0
    assert 0 < at_kill < CALLS
    assert await count_calls(database_url) == CALLS
    assert sorted(task.customer or "" for task in found) == sorted(missed)


async def _all_stored(url: str) -> bool:
    return await count_calls(url) >= CALLS


async def _tasks_of(url: str, count: int) -> list[CallbackTask] | None:
    found = await stored_tasks(url)
    return found if len(found) >= count else None
