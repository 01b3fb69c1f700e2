"""`pbx-tracker demo`: the daemon against a simulated Asterisk, on SQLite, with no setup.

The simulated Asterisk is a real AMI server on a loopback port.  For every
call of a simulated day it first asks the daemon's router over FastAGI whom to
ring (as the shipped dialplan does), then plays the call's AMI events, shaped
like the captured traces, with the phone the router chose: answered, rung out,
a queue call, or all busy when nobody was free.  Managers are busy while on
these calls, and Vera (103) takes a break for part of the day, so the router's
choices follow who is free.  The daemon logs in, correlates and writes records
to a SQLite file exactly as in production; each routing decision and each
record is printed as it happens, then a per-source and a per-manager summary.
A record is printed when its call ends, so its line starts with the time it
ended (and says when it started); at speed 0 the calls are played one after
another, so it starts with the time it started (and says when it ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import secrets
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pbx_tracker.callbacks.tasks import CallbackTask
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction
from pbx_tracker.config import Settings, settings_from_mapping
from pbx_tracker.daemon import Daemon
from pbx_tracker.logging import configure_logging
from pbx_tracker.pipeline import open_writer
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.generated_day import CallSlot, call_slots
from pbx_tracker.sim.routed import DayClock, ManagerBreak, RoutedCall, RoutedDay
from pbx_tracker.sim.visitors import ShownNumber, visit_site
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.web.auth import hash_password
from pbx_tracker.web.pages.layout import plural
from pbx_tracker.web.settings import WebSettings, WebUser
from pbx_tracker.web.snippet import LandingPage

DEMO_NUMBERS = [
    ("74951110001", "yandex-direct", "cpc"),
    ("74951110002", "google-ads", "cpc"),
    ("74951110003", "offline-flyer", "offline"),
]
DEMO_SECRET = "demo-secret"
DEMO_SUPERVISOR = "demo"  # who may watch the live board during the demo
DEMO_POOL = "site"
DEMO_SITE_NUMBER = "+74951110000"  # the site's own number: the pool's fallback
DEMO_DIDS = [(did, source) for did, source, _ in DEMO_NUMBERS]
# the day's calls: the tracked numbers, and the pool (the number a website visit was shown)
DEMO_CALL_TARGETS = [*DEMO_DIDS, (DEMO_POOL, "website")]
CALLBACKS_WAIT = 15.0  # seconds the demo waits at the end for callbacks still under way
DEMO_CALL_GAP = 6.0  # seconds between calls on average: three managers are often, not always, busy


def demo_settings(directory: Path, port: int, database_url: str | None = None) -> Settings:
    """The demo PBX: three tracked numbers, managers 101 to 103, the simulated Asterisk."""
    return settings_from_mapping(
        {
            "node": "demo",
            "ami": {
                "host": "127.0.0.1",
                "port": port,
                "username": "tracker",
                "secret": DEMO_SECRET,
                "reconnect_initial": 0.2,
                "reconnect_max": 2,
            },
            "database": {
                "url": database_url or f"sqlite:///{directory / 'pbx-tracker.sqlite3'}",
                "spill_path": str(directory / "pending-calls.jsonl"),
            },
            "calls": {"dead_letters": str(directory / "dead-letters.jsonl")},
            "recordings_dir": str(directory),
            "cel": {"enabled": False},  # the simulated Asterisk keeps no CEL log
            "tracked_numbers": [
                *(
                    {"did": did, "source": source, "medium": medium}
                    for did, source, medium in DEMO_NUMBERS
                ),
                {"did": DEMO_SITE_NUMBER, "source": "website", "medium": "site number"},
            ],
            "number_pools": [
                {
                    "name": DEMO_POOL,
                    "numbers": ["74951110010-74951110015"],
                    "source": "website",
                    "fallback": DEMO_SITE_NUMBER,
                }
            ],
            "http": {"enabled": True, "port": 0},
            "managers": [
                {"name": name, "extension": ext, "group": "sales"}
                for name, ext in (("Anna", "101"), ("Boris", "102"), ("Vera", "103"))
            ],
            "agi": {"port": 0},
            "routing": {
                "dial_template": "IAX2/{extension}/{extension}",
                "groups": [
                    {"name": "sales", "strategy": "longest_idle", "sticky_days": 30},
                    {"name": "flyer-queue", "strategy": "queue", "queue": "sales"},
                ],
                "numbers": [{"did": "74951110003", "group": "flyer-queue"}],
            },
            "callbacks": {"notify": ["ring_me"], "ring_me": {"context": "callback"}},
            "logging": {"level": "warning"},
        },
        environ={},
    )


def with_board_user(settings: Settings) -> tuple[Settings, str]:
    """The demo's settings with a supervisor who may watch the live board while the day
    plays, and their password (new each run; the pages are on loopback only)."""
    password = secrets.token_urlsafe(9)
    user = WebUser(name=DEMO_SUPERVISOR, role="supervisor", password_hash=hash_password(password))
    web = WebSettings(users=[user], cookie_secure=False)  # plain http on loopback
    return settings.model_copy(update={"web": web}), password


async def run_demo(*, calls: int, speed: float, directory: str | None, seed: int) -> int:
    console = Console(highlight=False)
    with tempfile.TemporaryDirectory(prefix="pbx-tracker-demo-") as scratch:
        folder = Path(directory or scratch)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        configure_logging("warning", "console")
        async with FakeAsterisk(
            username="tracker", secret=DEMO_SECRET, timestamp_events=True
        ) as asterisk:
            settings, password = with_board_user(demo_settings(folder, asterisk.port))
            await asyncio.to_thread(upgrade_to_head, settings.database.url)
            slots = call_slots(calls, dids=DEMO_CALL_TARGETS, seed=seed, mean_gap=DEMO_CALL_GAP)
            console.print(
                f"[bold]pbx-tracker demo[/]: {plural(calls, 'simulated call')}, "
                f"speed {speed or 'unlimited'}x, database {settings.database.url}"
            )
            day = _Day(settings, asterisk, slots, speed, seed, console)
            day.board_password = password
            written = await day.run()
        _print_summary(console, written)
        _print_managers(console, written, day.routed)
        _print_callbacks(console, day.tasks)
        missing = len(slots) - len(written)
        if missing:
            console.print(f"[red]not recorded: {plural(missing, 'call')}[/]")
        return 0 if missing == 0 else 1


def _breaks(slots: list[CallSlot]) -> list[ManagerBreak]:
    """Vera's phone is off from a third to two thirds of the day."""
    if len(slots) < 6:
        return []
    third = len(slots) // 3
    return [ManagerBreak("IAX2/103", slots[third].start - 0.5, slots[2 * third].start - 0.5)]


class _Day:
    """The daemon running while the simulated Asterisk routes and plays the day's calls."""

    def __init__(
        self,
        settings: Settings,
        asterisk: FakeAsterisk,
        slots: list[CallSlot],
        speed: float,
        seed: int,
        console: Console,
    ) -> None:
        self.settings, self.asterisk, self.slots = settings, asterisk, slots
        self.speed, self.seed, self.console = speed, seed, console
        self.written: list[CallRecord] = []
        self.callbacks: list[CallRecord] = []
        self.routed: list[RoutedCall] = []
        self.tasks: dict[int, CallbackTask] = {}
        self.board_password = ""
        self._all_written = asyncio.Event()
        self._tasks_changed = asyncio.Event()

    async def run(self) -> list[CallRecord]:
        stop = asyncio.Event()
        clock = DayClock(self.speed or None)
        async with open_writer(self.settings, on_written=self._on_written) as writer:
            landing = LandingPage(DEMO_POOL, DEMO_SITE_NUMBER, self.settings.phone_region)
            daemon = Daemon(self.settings, writer, clock, landing=landing)
            if daemon.callbacks is not None:
                daemon.callbacks.on_change = self._on_task
            self.asterisk.originate_speed = self.speed or None
            self.asterisk.clock = clock  # callbacks happen on the simulated day too
            runner = asyncio.create_task(daemon.run(stop))
            await asyncio.wait_for(daemon.ready.wait(), timeout=10)
            assert daemon.agi is not None and daemon.http is not None
            slots = await self._visitors_call(f"http://127.0.0.1:{daemon.http.port}")
            started = time.monotonic()
            day = RoutedDay(
                self.asterisk,
                daemon.agi.port,
                speed=self.speed or None,
                clock=clock,
                seed=self.seed,
                on_routed=self._on_routed,
                on_break=self._on_break,
            )
            await asyncio.gather(day.play(slots, _breaks(slots)), self._all_written.wait())
            self.console.print(f"simulated day played in {time.monotonic() - started:.1f} s")
            await self._callbacks_settled()
            stop.set()
            await runner
        return self.written

    async def _visitors_call(self, base_url: str) -> list[CallSlot]:
        """The calls on the pool: a simulated visitor opens the landing page first, and
        calls the number it was shown."""
        self.console.print(f"landing page with the snippet: {base_url}/demo/")
        self.console.print(
            f"live board: {base_url}/board (sign in as {DEMO_SUPERVISOR}, "
            f"password {self.board_password})"
        )
        rng = random.Random(f"pbx-tracker-visitors-{self.seed}")
        slots = []
        async with aiohttp.ClientSession() as session:
            for slot in self.slots:
                if slot.did != DEMO_POOL:
                    slots.append(slot)
                    continue
                shown = await visit_site(
                    session, base_url, rng, pool=DEMO_POOL, fallback=DEMO_SITE_NUMBER
                )
                if shown is None:
                    self.console.print("[red]the visits API refused a visit[/]")
                    shown_number = DEMO_SITE_NUMBER
                else:
                    self.console.print(_visit_line(shown))
                    shown_number = shown.number
                slots.append(dataclasses.replace(slot, did=shown_number.lstrip("+")))
        return slots

    def _on_written(self, record: CallRecord, new: bool) -> None:
        if record.direction is Direction.OUTBOUND:
            self.callbacks.append(record)
            self.console.print(f"  [cyan]{_callback_line(record)}[/]")
            return
        self.written.append(record)
        self.console.print(_record_line(record, by_end=bool(self.speed)))
        if len(self.written) >= len(self.slots):
            self._all_written.set()

    def _on_task(self, what: str, task: CallbackTask) -> None:
        self.tasks[task.id] = task
        self._tasks_changed.set()
        self.console.print(f"  [cyan]{_task_line(what, task)}[/]")

    async def _callbacks_settled(self) -> None:
        """Wait (bounded) until every callback task is closed or its ring-me call is over.

        Not at speed 0: calls are then played without their time, and a callback
        (placed now) could not be told to come after the call it answers.
        """
        if not self.speed:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CALLBACKS_WAIT):
                while any(t.is_open and t.dialable for t in self.tasks.values()):
                    self._tasks_changed.clear()
                    await self._tasks_changed.wait()

    def _on_routed(self, routed: RoutedCall) -> None:
        self.routed.append(routed)
        self.console.print(_route_line(routed))

    def _on_break(self, device: str, off: bool) -> None:
        what = "switched off (break)" if off else "back on"
        self.console.print(f"[yellow]{device} {what}[/]")


def _visit_line(shown: ShownNumber) -> str:
    what = "the site's own number (pool exhausted)" if shown.fallback else "pool number"
    return f"  website visit from a {shown.arrival.label}: shown {shown.display}, {what}"


def _callback_line(record: CallRecord) -> str:
    reached = "picked up" if record.status is CallStatus.ANSWERED else "did not pick up"
    return (
        f"callback call: {record.answered_by} phoned {record.caller}, who {reached}"
        f" (talk {record.talk_seconds}s)"
    )


def _task_line(what: str, task: CallbackTask) -> str:
    who = f"+{task.customer.lstrip('+')}" if task.customer else "a hidden number"
    if what == "opened":
        return f"callback task {task.id} opened: call back {who}, assigned to {task.assignee}"
    if what == "joined":
        return f"callback task {task.id}: {who} tried again ({plural(task.tries, 'time')})"
    if what == "reminded":
        return f"callback task {task.id}: reminder {task.reminders_sent} to {task.assignee}"
    if what == "resolved":
        how = task.resolution.value.replace("_", " ") if task.resolution else "done"
        return f"callback task {task.id} closed: {how} by {task.resolved_by}"
    return f"callback task {task.id}: {what}"


def _route_line(routed: RoutedCall) -> str:
    answer, slot = routed.answer, routed.slot
    if answer.get("ROUTE_STATUS") != "OK":
        target = "[red]nobody free[/]: missed-call path"
    elif answer.get("ROUTE_QUEUE"):
        target = f"queue {answer['ROUTE_QUEUE']}"
    else:
        target = f"ring {answer.get('ROUTE_MANAGER', '?')}"
    reason = escape(answer.get("ROUTE_REASON", ""))
    return f"  route +{slot.caller} → {slot.did}: {target} [dim]({reason})[/]"


def _record_line(record: CallRecord, *, by_end: bool = True) -> str:
    """A finished call, led by the time in whose order the lines are printed: when it
    ended (``by_end``), else when it started (speed 0: calls played one after another)."""
    ended, started = f"{record.ended_at:%H:%M:%S}", f"{record.started_at:%H:%M:%S}"
    when = f"{ended} ended (started {started})" if by_end else f"{started} started (ended {ended})"
    if record.status is CallStatus.ANSWERED:
        outcome = f"[green]answered[/] by {record.answered_by}"
    else:
        outcome = f"[red]missed[/] ({record.missed_reason})"
    recording = Path(record.recording_path).name if record.recording_path else "no recording"
    return (
        f"{when}: {record.caller} → {record.did} {escape(f'[{record.source}]')} {outcome}, "
        f"ring {record.ring_seconds}s, talk {record.talk_seconds}s, {recording}"
        f"{_attribution_note(record)}"
    )


def _attribution_note(record: CallRecord) -> str:
    detail = record.attribution or {}
    if detail.get("method") == "session":
        tags = "/".join(t for t in (record.medium, record.campaign, record.utm_term) if t)
        return f"\n    [dim]website visit {record.session_id} ({escape(tags)})[/]"
    if detail.get("method") in ("unattributed", "ambiguous"):
        return f"\n    [dim]{escape(str(detail.get('reason', '')))}[/]"
    return ""


def _print_summary(console: Console, records: list[CallRecord]) -> None:
    per_source: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        counts = per_source[record.source or "unknown"]
        counts["calls"] += 1
        counts[str(record.status)] += 1
        counts["talk"] += record.talk_seconds
    table = Table(title="Calls per source")
    for column in ("source", "calls", "answered", "missed", "missed %", "talk s"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for source, c in sorted(per_source.items()):
        rate = 100 * c["missed"] / c["calls"] if c["calls"] else 0.0
        table.add_row(
            source, *_cells(c["calls"], c["answered"], c["missed"], f"{rate:.0f}", c["talk"])
        )
    console.print(table)


def _cells(*values: Any) -> list[str]:
    return [str(v) for v in values]


def _print_managers(console: Console, records: list[CallRecord], routed: list[RoutedCall]) -> None:
    offered: Counter[str] = Counter()
    for call in routed:
        for manager in call.answer.get("ROUTE_MANAGER", "").split("&"):
            offered[manager] += 1 if manager else 0
    answered = Counter(r.answered_by for r in records if r.status is CallStatus.ANSWERED)
    strategies = Counter(call.answer.get("ROUTE_STRATEGY", "?") for call in routed)
    table = Table(title="Calls per manager")
    for column in ("manager", "offered by the router", "answered"):
        table.add_column(column, justify="left" if column == "manager" else "right")
    for manager in sorted({m for m in (*offered, *answered) if m}):
        table.add_row(manager, *_cells(offered[manager], answered[manager]))
    console.print(table)
    shown = ", ".join(f"{name} {count}" for name, count in sorted(strategies.items()))
    console.print(f"router decisions: {shown}")


def _print_callbacks(console: Console, tasks: dict[int, CallbackTask]) -> None:
    if not tasks:
        return
    closed = [t for t in tasks.values() if not t.is_open]
    console.print(
        f"callback tasks: {len(tasks)} opened for missed calls, {len(closed)} closed "
        f"({sum(t.resolution == 'called_back' for t in closed)} by a ring-me callback), "
        f"{len(tasks) - len(closed)} still open"
    )
