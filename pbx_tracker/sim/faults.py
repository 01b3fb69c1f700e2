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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks.tasks import CallbackTask, list_tasks
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.call_template import KINDS
from pbx_tracker.sim.db_outage import SqliteLock, TcpProxy
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import SimCall, make_call, merge
from pbx_tracker.store.calls import list_calls
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.store.models import CallRow, CelPositionRow

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "Outcome",
    "Shape",
    "fault_plan",
    "faults_day",
    "run_with_faults",
]

FAULT_KINDS = ("ami_drop", "asterisk_restart", "db_outage", "daemon_kill", "spill_disk_full")
DIDS = (
    ("74951110001", "yandex-direct"),
    ("74951110002", "google-ads"),
    ("74951110003", "offline-flyer"),
)
MANAGERS = ("101", "102", "103")
AMI_USER, AMI_SECRET = "tracker", "tracker-secret"
SLACK = 1.0  # s: records count whole seconds
CUT_SLACK = 1.5  # s: a cut call's end is between the restart and the next login
_WEIGHTS = {"answered": 35, "ringgroup": 15, "queue": 15, "no_answer": 12, "abandoned": 12}
_WEIGHTS["busy"] = 11
_POLL = 0.25  # s between two looks at the database the daemon writes
_HOLD_POLL = 0.02  # s: the player looks again while held by a restart
_EXAMPLES = 5


# -- what is played ---------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """How busy the day is and how long its faults last (seconds)."""

    calls: int = 5000
    mean_gap: float = 0.12  # between two calls' starts: 5,000 calls in about 10 minutes
    longest_talk: float = 60.0
    no_answer_rings: tuple[float, ...] = (10.0, 15.0, 20.0, 30.0)
    rounds: int = 2  # each kind of fault this many times
    shortest_outage: float = 5.0
    longest_outage: float = 60.0
    longest_kill: float = 15.0
    longest_restart: float = 5.0
    queue_size: int = 50  # the writer's in-memory queue: small, so outages spill
    settle: float = 240.0  # s after the play for everything to be stored and sent


def faults_day(shape: Shape, *, seed: int, epoch: float) -> list[SimCall]:
    """``shape.calls`` overlapping calls of every kind, each from a caller of its own."""
    rng = random.Random(f"pbx-tracker-faults-day-{seed}")
    ids = IdAllocator(epoch, seed=seed)
    kinds = list(KINDS)
    rng.shuffle(kinds)
    kinds = kinds[: shape.calls]
    rest = shape.calls - len(kinds)
    kinds += rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()), k=rest)
    calls, start = [], 1.0
    for number, kind in enumerate(kinds):
        did, source = rng.choice(DIDS)
        spec = KINDS[kind]
        ring: float | None = None
        if kind == "no_answer":
            ring = rng.choice(shape.no_answer_rings)
        elif spec.ring:
            ring = round(rng.uniform(1.5, 12.0), 1)
        talk = round(rng.uniform(3.0, shape.longest_talk), 1) if spec.talk else None
        call = make_call(
            kind,
            start=start,
            did=did,
            caller=f"7917{number:07d}",
            caller_name="",
            source=source,
            manager=rng.choice(MANAGERS),
            ring=ring,
            talk=talk,
            ids=ids,
        )
        calls.append(call)
        start = round(start + rng.expovariate(1.0 / shape.mean_gap), 3)
    return calls


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, when (seconds after the play's start) and how long."""

    kind: str
    at: float
    seconds: float

    def describe(self) -> str:
        length = "" if self.kind == "ami_drop" else f" for {self.seconds:.1f} s"
        return f"{self.at:7.1f} s  {self.kind}{length}"


def fault_plan(play_seconds: float, shape: Shape, *, seed: int) -> list[Fault]:
    """Each kind ``shape.rounds`` times in seeded order at seeded moments, one at a time:
    the play is cut in equal slots, a fault takes at most 90 % of its slot (the next one
    waits for it to be undone)."""
    rng = random.Random(f"pbx-tracker-faults-{seed}")
    kinds = [kind for kind in FAULT_KINDS for _ in range(shape.rounds)]
    rng.shuffle(kinds)
    if not kinds:  # rounds=0: the same day without faults, for comparison
        return []
    slot = play_seconds / len(kinds)
    plan = []
    for number, kind in enumerate(kinds):
        outage = rng.uniform(shape.shortest_outage, shape.longest_outage)
        seconds = {
            "ami_drop": 0.0,
            "asterisk_restart": rng.uniform(1.0, shape.longest_restart),
            "db_outage": outage,
            "daemon_kill": rng.uniform(1.0, shape.longest_kill),
            "spill_disk_full": outage,
        }[kind]
        seconds = min(seconds, slot * 0.9)
        at = number * slot + rng.uniform(0.05, 0.1) * slot
        plan.append(Fault(kind, round(at, 1), round(seconds, 1)))
    return plan


# -- the daemon as a process ------------------------------------------------------


class DaemonProcess:
    """`pbx-tracker run --config CONFIG` in its own process, output to ``log``."""

    def __init__(self, config: Path, log: IO[bytes]) -> None:
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PBX_TRACKER_") and key != "NOTIFY_SOCKET"
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pbx_tracker", "run", "--config", str(self.config),
            env=env, stdout=self.log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self.starts += 1

    async def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            await self.process.wait()
            self.process = None

    async def stop(self, timeout: float = 60.0) -> int | None:  # noqa: ASYNC109
        """SIGTERM and wait (SIGKILL after ``timeout``): the exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            return await process.wait()


def write_config(
    folder: Path, *, ami_port: int, database_url: str, smtp_port: int, queue_size: int
) -> Path:
    """The daemon's config: the simulator's PBX, email reminders at once, CEL file here."""
    config: dict[str, Any] = {
        "node": "pbx",
        "phone_region": "RU",
        "ami": {
            "host": "127.0.0.1",
            "port": ami_port,
            "username": AMI_USER,
            "secret": AMI_SECRET,
            "reconnect_initial": 0.2,
            "reconnect_max": 2.0,
        },
        "database": {
            "url": database_url,
            "spill_path": str(folder / "spill.jsonl"),
            "queue_size": queue_size,
        },
        "calls": {
            "inbound_contexts": ["from-trunk"],
            "did_variable": "TRACK_DID",
            "target_seconds": 30,
            "dead_letters": str(folder / "dead-letters.jsonl"),
        },
        "recordings_dir": "/var/spool/asterisk/monitor",
        "tracked_numbers": [{"did": did, "source": source} for did, source in DIDS],
        "managers": [
            {"name": f"M{ext}", "extension": ext, "group": "sales", "email": f"m{ext}@example.ru"}
            for ext in MANAGERS
        ],
        "agi": {"enabled": False},
        "cel": {"file": str(folder / "cel-custom" / "Master.csv")},
        "callbacks": {
            "notify": ["email"],
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "sender": "tracker@example.ru"},
            "remind_after_minutes": [0.0],
            "sla_minutes": 1440,
        },
        "logging": {"level": "info", "format": "json"},
    }
    path = folder / "pbx-tracker.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# -- playing the day --------------------------------------------------------------


@dataclass
class _Cut:
    at: float  # simulated seconds (the calls' `_ts` clock) of the restart
    shift: float  # the player's shift when they were cut (their events' clock)
    relogin: float | None = None  # when the daemon was logged in again (same clock)


class Player:
    """Plays the day's messages in real time; a restart holds it and cuts the calls going."""

    def __init__(self, asterisk: FakeAsterisk, calls: Sequence[SimCall]) -> None:
        self.asterisk = asterisk
        self.calls = calls
        self.messages = merge(calls)
        self._owner = {id(m): number for number, call in enumerate(calls) for m in call.messages}
        self.sent = [0] * len(calls)
        self.ended_wall: dict[int, float] = {}  # call → wall time its last event was played
        self.cut: dict[int, _Cut] = {}
        self.across_drop: set[int] = set()  # calls going when the AMI link was cut
        self.base = time.time()  # wall time of `_ts` 0 (`run` sets it again)
        self.shift = 0.0  # seconds the play was held (restarts)
        self.playing = asyncio.Event()
        self.playing.set()
        self.done = asyncio.Event()

    def now(self) -> float:
        """The simulated time (the calls' `_ts` clock)."""
        return time.time() - self.base - self.shift

    def going(self) -> list[int]:
        return [
            number
            for number, call in enumerate(self.calls)
            if 0 < self.sent[number] < len(call.messages) and number not in self.cut
        ]

    async def run(self) -> None:
        """Play every message; `base` is the wall time of `_ts` 0 (set just before)."""
        try:
            for message in self.messages:
                number = self._owner[id(message)]
                await self._until(float(message["_ts"]))
                if number in self.cut:
                    continue
                await self.asterisk.play([message], None, epoch=self.base + self.shift)
                self.sent[number] += 1
                if self.sent[number] == len(self.calls[number].messages):
                    self.ended_wall[number] = time.time()
        finally:
            self.done.set()

    async def _until(self, at: float) -> None:
        while True:
            await self.playing.wait()
            left = at - self.now()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05) if left > 0.05 else left)

    async def restart(self, asterisk_down: float) -> _Cut:
        """Asterisk restarts: the calls going are cut, the play holds while it is down."""
        self.playing.clear()
        held = time.time()
        cut = _Cut(self.now(), self.shift)
        for number in self.going():
            self.cut[number] = cut
            self.ended_wall[number] = held
        try:
            await self.asterisk.restart(down_for=asterisk_down)
        finally:
            self.shift += time.time() - held
            self.playing.set()
        return cut


# -- the run ----------------------------------------------------------------------


@dataclass
class Outcome:
    """What one run played and what the daemon kept of it."""

    database: str
    calls: int = 0
    records: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    cut_by_restart: int = 0
    recovered_from_cel: int = 0
    incomplete: int = 0
    tasks_expected: int = 0
    tasks_opened: int = 0
    tasks_lost: list[str] = field(default_factory=list)
    tasks_duplicated: list[str] = field(default_factory=list)
    reminders_expected: int = 0
    reminders_sent: int = 0
    reminders_missing: list[str] = field(default_factory=list)
    reminders_repeated: list[str] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    not_seen_stored: int = 0
    faults: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)  # the kinds, in order
    known: dict[str, list[str]] = field(default_factory=dict)  # explained classes
    gap_customers: set[str] = field(default_factory=set)  # callers of GAP_LOST calls
    log_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    daemon_exit: int | None = None

    @property
    def clean(self) -> bool:
        problems = (self.lost, self.duplicated, self.wrong, self.tasks_lost)
        more = (self.tasks_duplicated, self.reminders_missing, self.reminders_repeated)
        return not any(problems) and not any(more)

    def lines(self) -> list[str]:
        """The figures, for people."""
        delays = sorted(self.delays)
        worst = f"{delays[-1]:.1f} s" if delays else "-"
        typical = f"median {statistics.median(delays):.2f} s" if delays else ""
        p95 = f", 95% {delays[int(0.95 * (len(delays) - 1))]:.1f} s" if delays else ""
        out = [
            f"[{self.database}] {self.calls:,} calls played, {self.records:,} records written"
            f" ({self.recovered_from_cel:,} from CEL, {self.incomplete:,} incomplete,"
            f" {self.cut_by_restart:,} cut by an Asterisk restart) in {self.seconds:.0f} s",
            f"  lost {len(self.lost)}, duplicated {len(self.duplicated)}, wrong {len(self.wrong)}",
            f"  callback tasks: expected {self.tasks_expected:,}, opened {self.tasks_opened:,}"
            f" (lost {len(self.tasks_lost)}, twice {len(self.tasks_duplicated)})",
            f"  reminders: expected {self.reminders_expected:,}, sent {self.reminders_sent:,}"
            f" (missing {len(self.reminders_missing)}, repeated {len(self.reminders_repeated)})",
            f"  call end -> record stored: worst {worst} ({typical}{p95}; polled every"
            f" {_POLL} s; {self.not_seen_stored} never seen)",
            "  daemon log: " + ", ".join(f"{k} {v}" for k, v in self.log_counts.items()),
            f"  daemon exit code at the end: {self.daemon_exit}",
        ]
        out += [f"  fault {fault}" for fault in self.faults]
        for name, items in self.known.items():
            out.append(f"  known class ({len(items)}): {name}")
            out += [f"    {item}" for item in items[:_EXAMPLES]]
        for name, items in (
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("wrong", self.wrong),
            ("task lost", self.tasks_lost),
            ("task twice", self.tasks_duplicated),
            ("reminder missing", self.reminders_missing),
            ("reminder repeated", self.reminders_repeated),
        ):
            out += [f"    {name}: {item}" for item in items[:_EXAMPLES]]
            if len(items) > _EXAMPLES:
                out.append(f"    {name}: … {len(items) - _EXAMPLES} more")
        return out


LOGGED = {
    "database unavailable": "store.database_unavailable",
    "spill ENOSPC": "store.spill_write_failed",
    "spill emptied": "store.spill_emptied",
    "CEL recovered": "cel.recovered",
    "event failed": "calls.event_failed",
    "errors": '"level": "error"',
}


class _Watch:
    """When each call first appears in the database (looked at every `_POLL`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.seen: dict[str, float] = {}
        self._last = 0

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # an outage of ours: look again
                await self.look()
            await asyncio.sleep(_POLL)

    async def look(self) -> int:
        async with self.engine.connect() as conn:
            query = select(CallRow.id, CallRow.linkedid).where(CallRow.id > self._last)
            rows = (await conn.execute(query)).all()
        now = time.time()
        for row_id, linkedid in rows:
            self.seen.setdefault(linkedid, now)
            self._last = max(self._last, row_id)
        return len(self.seen)


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
    last = max(float(m["_ts"]) for call in calls for m in call.messages)
    calling = max(float(call.messages[0]["_ts"]) for call in calls)
    plan = fault_plan(calling + 10.0, shape, seed=seed)  # while calls are being made
    await asyncio.to_thread(upgrade_to_head, url)
    cel = folder / "cel-custom" / "Master.csv"
    cel.parent.mkdir(parents=True, exist_ok=True)
    cel.touch()
    spill = folder / "spill.jsonl"
    proxy: TcpProxy | None = None
    lock: SqliteLock | None = None
    daemon_url = url
    if database == "sqlite":
        lock = SqliteLock(Path(make_url(url).database or ""))
    else:
        parsed = make_url(url)
        proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        await proxy.start()
        daemon_url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
    engine = make_async_engine(url)
    watch = _Watch(engine)
    log_path = folder / "daemon.log"
    async with FakeAsterisk(
        username=AMI_USER, secret=AMI_SECRET, timestamp_events=True, cel_file=cel
    ) as asterisk:
        config = write_config(
            folder,
            ami_port=asterisk.port,
            database_url=daemon_url,
            smtp_port=smtp_port,
            queue_size=shape.queue_size,
        )
        with log_path.open("ab") as log:
            daemon = DaemonProcess(config, log)
            await daemon.start()
            await asterisk.wait_for_login(timeout=60)
            await _until(lambda: _cel_position_saved(engine), 60, "the first CEL read")
            player = Player(asterisk, calls)
            progress(f"[{database}] playing {len(calls):,} calls over {last:.0f} s; plan:")
            for fault in plan:
                progress(f"  {fault.describe()}")
            watching = asyncio.create_task(watch.run())
            player.base = time.time()
            playing = asyncio.create_task(player.run())
            try:
                for fault in plan:
                    await _sleep_until(player, fault.at)
                    note = await _fire(fault, player, asterisk, daemon, proxy, lock, spill)
                    outcome.faults.append(f"{fault.describe()}: {note}")
                    outcome.fired.append(fault.kind)
                    progress(f"  fired {fault.describe()}: {note}")
                await playing
            finally:
                if not playing.done():
                    playing.cancel()
                if proxy is not None:
                    await proxy.resume()
                if lock is not None:
                    await lock.release()
            progress(f"[{database}] played; waiting for the records, tasks and reminders")
            expected = _expected_missed(calls, player)
            settle = time.monotonic() + shape.settle
            await _until(lambda: _count_is(watch, len(calls)), _left(settle), "every record")
            await _until(
                lambda: _tasks_at_least(engine, len(expected)), _left(settle), "every task"
            )
            await _until(
                lambda: _async(len(reminder_tasks()) >= len(expected)),
                _left(settle),
                "every reminder",
            )
            await _quiet(reminder_tasks)
            outcome.daemon_exit = await daemon.stop()
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    try:
        async with engine.connect() as conn:
            records = await list_calls(conn, limit=10 * len(calls) + 100)
            tasks = await list_tasks(conn, status=None, limit=10 * len(calls) + 100)
            stored_rows = int(
                (await conn.execute(select(func.count()).select_from(CallRow))).scalar_one()
            )
    finally:
        await engine.dispose()
        if proxy is not None:
            await proxy.stop()
    outcome.records = stored_rows
    _judge_calls(outcome, calls, player, records)
    _judge_tasks(outcome, expected, tasks, reminder_tasks())
    for number, ended in player.ended_wall.items():
        seen = watch.seen.get(calls[number].expected.linkedid)
        if seen is None:
            outcome.not_seen_stored += 1
        else:
            outcome.delays.append(max(0.0, seen - ended))
    text = log_path.read_text(encoding="utf-8", errors="replace")
    outcome.log_counts = {name: text.count(needle) for name, needle in LOGGED.items()}
    _explain_repeats(outcome, text)
    outcome.seconds = time.time() - began
    return outcome


async def _fire(
    fault: Fault,
    player: Player,
    asterisk: FakeAsterisk,
    daemon: DaemonProcess,
    proxy: TcpProxy | None,
    lock: SqliteLock | None,
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
        await _database_down(proxy, lock, fault.seconds)
        return f"{going} calls going"
    await _until(lambda: _async(_empty(spill)), 120, "an empty spill file")
    full = spill.with_name(spill.name + ".full")
    full.unlink(missing_ok=True)
    full.symlink_to("/dev/full")
    os.replace(full, spill)
    try:
        await _database_down(proxy, lock, fault.seconds)
    finally:
        plain = spill.with_name(spill.name + ".plain")
        plain.write_bytes(b"")
        os.replace(plain, spill)
    return f"{going} calls going"


async def _database_down(proxy: TcpProxy | None, lock: SqliteLock | None, seconds: float) -> None:
    if proxy is not None:
        await proxy.cut()
        try:
            await asyncio.sleep(seconds)
        finally:
            await proxy.resume()
    elif lock is not None:
        await lock.take()
        try:
            await asyncio.sleep(seconds)
        finally:
            await lock.release()


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True


async def _sleep_until(player: Player, at: float) -> None:
    """Until ``at`` seconds of play (the simulated clock: restarts hold it)."""
    while (left := at - player.now()) > 0:  # noqa: ASYNC110 - a clock, not an event
        await asyncio.sleep(min(left, 0.1))


async def _until(
    check: Callable[[], Any],
    timeout: float,  # noqa: ASYNC109
    what: str,
) -> None:
    """Look again every `_POLL` until ``await check()`` is true (bounded)."""
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            while not await check():  # noqa: ASYNC110 - another process: nothing tells us
                await asyncio.sleep(_POLL)
    except TimeoutError:
        print(f"gave up waiting for {what} after {timeout:.0f} s", file=sys.stderr)


async def _async(value: bool) -> bool:
    return value


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


async def _quiet(reminder_tasks: Callable[[], list[str]], seconds: float = 3.0) -> None:
    """A few seconds more: a reminder sent twice would arrive now."""
    count = len(reminder_tasks())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL)
        if len(reminder_tasks()) != count:
            count, deadline = len(reminder_tasks()), time.monotonic() + seconds


async def _cel_position_saved(engine: AsyncEngine) -> bool:
    with contextlib.suppress(Exception):
        async with engine.connect() as conn:
            query = select(func.count()).select_from(CelPositionRow)
            return int((await conn.execute(query)).scalar_one()) > 0
    return False


async def _count_is(watch: _Watch, count: int) -> bool:
    with contextlib.suppress(Exception):
        return await watch.look() >= count
    return False


async def _tasks_at_least(engine: AsyncEngine, count: int) -> bool:
    with contextlib.suppress(Exception):
        async with engine.connect() as conn:
            return len(await list_tasks(conn, status=None, limit=count + 10)) >= count
    return False


# -- judging ----------------------------------------------------------------------


def _answered_at(call: SimCall) -> float | None:
    """`_ts` of the call's answer (None: never answered)."""
    expected = call.expected
    if expected.status != "answered":
        return None
    return float(call.messages[0]["_ts"]) + expected.ring_seconds


def _truth_status(number: int, call: SimCall, player: Player) -> str:
    cut = player.cut.get(number)
    if cut is None:
        return call.expected.status
    answered = _answered_at(call)
    return "answered" if answered is not None and answered <= cut.at else "missed"


def _expected_missed(calls: Sequence[SimCall], player: Player) -> set[str]:
    """The customers who must have a callback task: every missed call's caller."""
    return {
        "+" + call.expected.caller
        for number, call in enumerate(calls)
        if _truth_status(number, call, player) == "missed"
    }


def _judge_calls(
    outcome: Outcome, calls: Sequence[SimCall], player: Player, records: list[CallRecord]
) -> None:
    by_linkedid: dict[str, list[CallRecord]] = {}
    for record in records:
        by_linkedid.setdefault(record.linkedid, []).append(record)
    played = {call.expected.linkedid for call in calls}
    for linkedid, found in by_linkedid.items():
        if len(found) > 1:
            outcome.duplicated.append(f"{linkedid}: {len(found)} records")
        if linkedid not in played:
            outcome.wrong.append(f"{linkedid}: a record of a call never played")
    outcome.cut_by_restart = len(player.cut)
    outcome.recovered_from_cel = sum(1 for r in records if r.recovered_from == "cel")
    outcome.incomplete = sum(1 for r in records if not r.complete)
    for number, call in enumerate(calls):
        expected = call.expected
        found = by_linkedid.get(expected.linkedid, [])
        if not found:
            outcome.lost.append(f"{expected.linkedid} ({expected.kind}, {_fate(number, player)})")
            continue
        problems = _differences(number, call, player, found[0])
        if not problems:
            continue
        text = (
            f"{expected.linkedid} ({expected.kind}, {_fate(number, player)},"
            f" recovered_from={found[0].recovered_from}, complete={found[0].complete}): "
            + "; ".join(problems)
        )
        if number in player.across_drop and found[0].recovered_from is None:
            outcome.known.setdefault(GAP_LOST, []).append(text)
            outcome.gap_customers.add("+" + expected.caller)
        else:
            outcome.wrong.append(text)


def _fate(number: int, player: Player) -> str:
    cut = player.cut.get(number)
    return "played whole" if cut is None else f"cut by the restart at {cut.at:.1f} s"


def _differences(number: int, call: SimCall, player: Player, record: CallRecord) -> list[str]:
    expected = call.expected
    problems = []

    def differ(name: str, got: object, want: object) -> None:
        if got != want:
            problems.append(f"{name} {got!r} != {want!r}")

    differ("did", (record.did or "").lstrip("+"), expected.did)
    differ("caller", (record.caller or "").lstrip("+"), expected.caller)
    differ("source", record.source, expected.source)
    cut = player.cut.get(number)
    if cut is None:
        differ("status", str(record.status), expected.status)
        differ("missed_reason", record.missed_reason and str(record.missed_reason),
               expected.missed_reason)  # fmt: skip
        differ("answered_by", record.answered_by, expected.answered_by)
        if abs(record.ring_seconds - expected.ring_seconds) > SLACK:
            problems.append(f"ring {record.ring_seconds} != {expected.ring_seconds:.1f}")
        if abs(record.talk_seconds - expected.talk_seconds) > SLACK:
            problems.append(f"talk {record.talk_seconds} != {expected.talk_seconds:.1f}")
        differ("recording_path", record.recording_path, expected.recording_path)
        return problems
    status = _truth_status(number, call, player)
    differ("status", str(record.status), status)
    differ(
        "answered_by", record.answered_by, expected.answered_by if status == "answered" else None
    )
    differ("complete", record.complete, False)
    relogin = cut.relogin if cut.relogin is not None else cut.at
    start = float(call.messages[0]["_ts"])
    answered = _answered_at(call)
    if status == "answered" and answered is not None:
        low, high, got, what = cut.at - answered, relogin - answered, record.talk_seconds, "talk"
    else:
        low, high, got, what = cut.at - start, relogin - start, record.ring_seconds, "ring"
    if not low - CUT_SLACK <= got <= high + CUT_SLACK:
        problems.append(f"{what} {got} not in [{low:.1f}, {high:.1f}]")
    return problems


def _judge_tasks(
    outcome: Outcome, expected: set[str], tasks: list[CallbackTask], reminders: list[str]
) -> None:
    outcome.tasks_expected = len(expected)
    outcome.tasks_opened = len(tasks)
    per_customer = Counter(task.customer or "" for task in tasks)
    outcome.tasks_lost = sorted(expected - per_customer.keys())
    outcome.tasks_duplicated = [f"{c}: {n} tasks" for c, n in per_customer.items() if n > 1]
    for task in tasks:
        if task.customer in expected:
            continue
        text = f"{task.customer}: task #{task.id} for a customer who never missed a call"
        if task.customer in outcome.gap_customers:
            outcome.known.setdefault(GAP_TASK, []).append(text)
        else:
            outcome.tasks_duplicated.append(text)
    outcome.tasks_duplicated += [
        f"{task.customer}: task #{task.id} counts {task.tries} missed calls (one was made)"
        for task in tasks
        if task.tries != 1
    ]
    outcome.reminders_expected = len(tasks)
    outcome.reminders_sent = len(reminders)
    sent = Counter(reminders)
    for task in tasks:
        count = sent.get(str(task.id), 0)
        if count == 0:
            outcome.reminders_missing.append(f"task #{task.id} ({task.customer})")
        elif count > 1:
            outcome.reminders_repeated.append(f"task #{task.id} ({task.customer}): {count}")
        if task.reminders_sent != count == 1:
            outcome.reminders_repeated.append(
                f"task #{task.id}: {count} emails, the task says {task.reminders_sent}"
            )
    known = {str(task.id) for task in tasks}
    outcome.reminders_repeated += [f"email for unknown task {t}" for t in sent if t not in known]


GAP_LOST = (
    "AMI gap: a call going when the AMI link was cut, whose events during the gap (its"
    " answer) the daemon never heard; its live record stays complete=true, so the CEL"
    " record (right) never replaces it"
)
GAP_TASK = "AMI gap: a callback task opened for such a call, answered but stored as missed"
RESENT = (
    "reminder sent again: the email went out while the database was down, recording it"
    " failed (callbacks.job_failed) and the sweep scheduled the reminder again"
)


RESENT_CUT = (
    "reminder sent again: its job was cut after the email went out (callbacks.job_cut)"
    " when the leader stepped down (callbacks.leadership_lost), and it ran again later"
)


def _explain_repeats(outcome: Outcome, log_text: str) -> None:
    """Move the repeats the daemon's log explains (a reminder job that failed or was cut
    after its email went out) from `reminders_repeated` to known classes."""
    why: dict[str, str] = {}
    for line in log_text.splitlines():
        for event, name in (("callbacks.job_failed", RESENT), ("callbacks.job_cut", RESENT_CUT)):
            if f'"{event}"' not in line:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("kind") == "remind":
                    why.setdefault(str(entry.get("task_id")), name)
    rest: list[str] = []
    for item in outcome.reminders_repeated:
        task = item.split("#", 1)[1].split(" ", 1)[0].rstrip(":") if "#" in item else ""
        if task in why:
            outcome.known.setdefault(why[task], []).append(item)
        else:
            rest.append(item)
    outcome.reminders_repeated = rest


def outcome_json(outcome: Outcome) -> str:
    """The outcome as one JSON object (for machines)."""
    data = dict(outcome.__dict__)
    data["delays"] = sorted(outcome.delays)[-1:] if outcome.delays else []
    return json.dumps(data, ensure_ascii=False, default=str)
