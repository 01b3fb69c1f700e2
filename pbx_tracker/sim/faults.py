"""Calls played into the real daemon (`pbx-tracker run`, its own process) while faults
fire, then every stored record, callback task and reminder compared with what was played.

The core of ``benchmarks/faults.py`` and of its short version in the tests.  A day of
calls (`faults_day`: the simulator's call kinds, every caller a new customer so each
missed call must open exactly one callback task and get exactly one reminder) plays
through `FakeAsterisk` in real time; `fault_plan` fires each kind of fault at seeded
random moments, one at a time, with quiet time after each:

- ``ami_drop``: the AMI link cut mid-call (`FakeAsterisk.drop_connections`);
- ``asterisk_restart``: Asterisk stops for a few seconds and comes back with no
  channels (`FakeAsterisk.restart`); the calls going at that moment are cut (the rest
  of their events never happens; their CEL lines just stop, as after a crash);
- ``db_outage``: the database unreachable (PostgreSQL: `TcpProxy.cut`; SQLite:
  another connection holds the write lock, `SqliteLock`);
- ``daemon_kill``: SIGKILL, down for a few seconds, started again (the calls of the
  gap come back from the CEL file the simulator writes);
- ``spill_disk_full``: a database outage while the writer's spill file is a symlink
  to ``/dev/full`` (every write ENOSPC), swapped back to a plain file before the
  database returns; the in-memory queue is small, so it overflows.

The truth of a call cut by a restart, as Asterisk's own CEL would say after a crash:
it began and (if a manager's leg was bridged before the restart) was answered by that
manager; its end is not logged.  So its record must say answered / missed and who
answered as of the restart, ``complete: false``, and ring or talk ending somewhere
between the restart and the daemon's next login (when it learns the channels are
gone); its missed reason and recording are not judged.

The day and the plan are `sim.fault_plan`'s, the player `sim.fault_player`'s, the
daemon process `sim.daemon_process`'s; `sim.fault_judging` compares, `sim.fault_outcome`
holds the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx_tracker.callbacks.tasks import CallbackTask, list_tasks
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.daemon_process import AMI_SECRET, AMI_USER, DaemonProcess, write_config
from pbx_tracker.sim.daemon_watch import (
    DatabaseWatch,
    cel_position_saved,
    count_is,
    is_true,
    left,
    quiet,
    tasks_at_least,
    until,
)
from pbx_tracker.sim.db_outage import DatabaseOutage
from pbx_tracker.sim.fault_judging import expected_missed, judge_calls, judge_log, judge_tasks
from pbx_tracker.sim.fault_outcome import Outcome
from pbx_tracker.sim.fault_plan import FAULT_KINDS, Fault, Shape, fault_plan, faults_day
from pbx_tracker.sim.fault_player import Player
from pbx_tracker.sim.scenarios import SimCall
from pbx_tracker.store.calls import list_calls
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.store.models import CallRow

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "Outcome",
    "Shape",
    "fault_plan",
    "faults_day",
    "run_with_faults",
]


async def run_with_faults(
    database: str,
    url: str,
    folder: Path,
    *,
    shape: Shape,
    seed: int,
    smtp_port: int,
    reminder_tasks: Callable[[], list[str]],
    progress: Callable[[str], None] = lambda line: None,
) -> Outcome:
    """Play ``shape.calls`` calls into a daemon process on ``url`` (an empty database)
    while the fault plan fires; ``reminder_tasks()``: the X-PBX-Tracker-Task of every
    email the SMTP server on ``smtp_port`` received so far."""
    began = time.time()
    outcome = Outcome(database)
    calls = faults_day(shape, seed=seed, epoch=began)
    outcome.calls = len(calls)
    calling = max(float(call.messages[0]["_ts"]) for call in calls)
    plan = fault_plan(calling + 10.0, shape, seed=seed)  # while calls are being made
    await asyncio.to_thread(upgrade_to_head, url)
    cel = folder / "cel-custom" / "Master.csv"
    cel.parent.mkdir(parents=True, exist_ok=True)
    cel.touch()
    outage = await DatabaseOutage.prepare(database, url)
    engine = make_async_engine(url)
    run = _Run(outcome, calls, plan, shape, folder, outage, engine, reminder_tasks, progress)
    async with FakeAsterisk(
        username=AMI_USER, secret=AMI_SECRET, timestamp_events=True, cel_file=cel
    ) as asterisk:
        player, expected = await run.with_daemon(asterisk, smtp_port)
    try:
        async with engine.connect() as conn:
            records, tasks, stored_rows = await _stored(conn, len(calls))
    finally:
        await engine.dispose()
        await outage.stop()
    outcome.records = stored_rows
    run.judge(player, expected, records, tasks)
    outcome.seconds = time.time() - began
    return outcome


async def _stored(
    conn: AsyncConnection, played: int
) -> tuple[list[CallRecord], list[CallbackTask], int]:
    """The records and callback tasks the daemon stored, and how many call rows."""
    records = await list_calls(conn, limit=10 * played + 100)
    tasks = await list_tasks(conn, status=None, limit=10 * played + 100)
    stored_rows = int((await conn.execute(select(func.count()).select_from(CallRow))).scalar_one())
    return records, tasks, stored_rows


@dataclass
class _Run:
    """One run: its day and plan, the daemon's folder and database, what it tells."""

    outcome: Outcome
    calls: list[SimCall]
    plan: list[Fault]
    shape: Shape
    folder: Path
    outage: DatabaseOutage
    engine: AsyncEngine
    reminder_tasks: Callable[[], list[str]]
    progress: Callable[[str], None]

    def __post_init__(self) -> None:
        self.watch = DatabaseWatch(self.engine)
        self.log_path = self.folder / "daemon.log"
        self.spill = self.folder / "spill.jsonl"

    async def with_daemon(self, asterisk: FakeAsterisk, smtp_port: int) -> tuple[Player, set[str]]:
        """The daemon process through the day: started, the faults fired while the calls
        play, stopped once every record, task and reminder is in (or the settle time is
        over); the player and the customers who must have a callback task."""
        config = write_config(
            self.folder,
            ami_port=asterisk.port,
            database_url=self.outage.daemon_url,
            smtp_port=smtp_port,
            queue_size=self.shape.queue_size,
        )
        with self.log_path.open("ab") as log:
            daemon = DaemonProcess(config, log)
            await daemon.start()
            await asterisk.wait_for_login(timeout=60)
            await until(lambda: cel_position_saved(self.engine), 60, "the first CEL read")
            player = Player(asterisk, self.calls)
            self._announce()
            watching = asyncio.create_task(self.watch.run())
            await self._play(player, asterisk, daemon)
            self.progress(
                f"[{self.outcome.database}] played; waiting for the records, tasks and reminders"
            )
            expected = expected_missed(self.calls, player)
            await self._settle(len(expected))
            self.outcome.daemon_exit = await daemon.stop()
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        return player, expected

    def _announce(self) -> None:
        last = max(float(m["_ts"]) for call in self.calls for m in call.messages)
        database, count = self.outcome.database, len(self.calls)
        self.progress(f"[{database}] playing {count:,} calls over {last:.0f} s; plan:")
        for fault in self.plan:
            self.progress(f"  {fault.describe()}")

    async def _play(self, player: Player, asterisk: FakeAsterisk, daemon: DaemonProcess) -> None:
        """The day in real time, each fault fired at its moment and undone."""
        player.base = time.time()
        playing = asyncio.create_task(player.run())
        try:
            for fault in self.plan:
                await _sleep_until(player, fault.at)
                note = await _fire(fault, player, asterisk, daemon, self.outage, self.spill)
                self.outcome.faults.append(f"{fault.describe()}: {note}")
                self.outcome.fired.append(fault.kind)
                self.progress(f"  fired {fault.describe()}: {note}")
            await playing
        finally:
            if not playing.done():
                playing.cancel()
            await self.outage.end()

    async def _settle(self, tasks: int) -> None:
        """Until every record, ``tasks`` callback tasks and their reminders are in (bounded)."""
        deadline = time.monotonic() + self.shape.settle
        calls = len(self.calls)
        await until(lambda: count_is(self.watch, calls), left(deadline), "every record")
        await until(lambda: tasks_at_least(self.engine, tasks), left(deadline), "every task")
        await until(
            lambda: is_true(len(self.reminder_tasks()) >= tasks), left(deadline), "every reminder"
        )
        await quiet(self.reminder_tasks)

    def judge(
        self,
        player: Player,
        expected: set[str],
        records: list[CallRecord],
        tasks: list[CallbackTask],
    ) -> None:
        """The stored records, tasks and reminders against the day; delays; the daemon log."""
        judge_calls(self.outcome, self.calls, player, records)
        judge_tasks(self.outcome, expected, tasks, self.reminder_tasks())
        for number, ended in player.ended_wall.items():
            seen = self.watch.seen.get(self.calls[number].expected.linkedid)
            if seen is None:
                self.outcome.not_seen_stored += 1
            else:
                self.outcome.delays.append(max(0.0, seen - ended))
        judge_log(self.outcome, self.log_path.read_text(encoding="utf-8", errors="replace"))


async def _fire(
    fault: Fault,
    player: Player,
    asterisk: FakeAsterisk,
    daemon: DaemonProcess,
    outage: DatabaseOutage,
    spill: Path,
) -> str:
    """Do the fault, wait out its length and undo it; a few words on what it hit."""
    going = len(player.going())
    if fault.kind == "ami_drop":
        logins = asterisk.logins
        player.across_drop.update(player.going())
        asterisk.drop_connections()
        await asterisk.wait_until(lambda: asterisk.logins > logins, 60, "login after the drop")
        return f"{going} calls going"
    if fault.kind == "asterisk_restart":
        logins = asterisk.logins
        cut = await player.restart(fault.seconds)
        await asterisk.wait_until(lambda: asterisk.logins > logins, 60, "login after restart")
        cut.relogin = time.time() - player.base - cut.shift
        return f"{going} calls cut; logged in again {cut.relogin - cut.at:.1f} s after it"
    if fault.kind == "daemon_kill":
        await daemon.kill()
        await asyncio.sleep(fault.seconds)
        logins = asterisk.logins
        await daemon.start()
        await asterisk.wait_until(lambda: asterisk.logins > logins, 60, "login after the kill")
        return f"{going} calls going"
    if fault.kind == "db_outage":
        await outage.down_for(fault.seconds)
        return f"{going} calls going"
    await _spill_disk_full(spill, outage, fault.seconds)
    return f"{going} calls going"


async def _spill_disk_full(spill: Path, outage: DatabaseOutage, seconds: float) -> None:
    """A database outage while the spill file is a symlink to /dev/full (every write
    ENOSPC), swapped back to a plain file before the database returns."""
    await until(lambda: is_true(_empty(spill)), 120, "an empty spill file")
    full = spill.with_name(spill.name + ".full")
    full.unlink(missing_ok=True)
    full.symlink_to("/dev/full")
    os.replace(full, spill)
    try:
        await outage.down_for(seconds)
    finally:
        plain = spill.with_name(spill.name + ".plain")
        plain.write_bytes(b"")
        os.replace(plain, spill)


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True


async def _sleep_until(player: Player, at: float) -> None:
    """Until ``at`` seconds of play (the simulated clock: restarts hold it)."""
    while (remaining := at - player.now()) > 0:  # noqa: ASYNC110 - a clock, not an event
        await asyncio.sleep(min(remaining, 0.1))
