"""`pbx-tracker demo`: the daemon against a simulated Asterisk, on SQLite, with no setup.

The simulated Asterisk is a real AMI server on a loopback port that plays calls
shaped like the captured traces (answered, ring group, queue, no answer, busy,
abandoned; overlapping).  The daemon logs in, correlates and writes records to
a SQLite file exactly as in production; each record is printed as it is
written, then a per-source summary.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pbx_tracker.calls.records import CallRecord, CallStatus
from pbx_tracker.config import Settings, settings_from_mapping
from pbx_tracker.daemon import Daemon
from pbx_tracker.logging import configure_logging
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.scenarios import generate_day, merge
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.store.session import open_writer

DEMO_NUMBERS = [
    ("74951110001", "yandex-direct", "cpc"),
    ("74951110002", "google-ads", "cpc"),
    ("74951110003", "offline-flyer", "offline"),
]
DEMO_SECRET = "demo-secret"
DEMO_DIDS = [(did, source) for did, source, _ in DEMO_NUMBERS]


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
            "tracked_numbers": [
                {"did": did, "source": source, "medium": medium}
                for did, source, medium in DEMO_NUMBERS
            ],
            "managers": [
                {"name": name, "extension": ext, "group": "sales"}
                for name, ext in (("Anna", "101"), ("Boris", "102"), ("Vera", "103"))
            ],
            "agi": {"port": 0},
            "logging": {"level": "warning"},
        },
        environ={},
    )


async def run_demo(*, calls: int, speed: float, directory: str | None, seed: int) -> int:
    console = Console(highlight=False)
    with tempfile.TemporaryDirectory(prefix="pbx-tracker-demo-") as scratch:
        folder = Path(directory or scratch)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        configure_logging("warning", "console")
        async with FakeAsterisk(
            username="tracker", secret=DEMO_SECRET, timestamp_events=True
        ) as asterisk:
            settings = demo_settings(folder, asterisk.port)
            await asyncio.to_thread(upgrade_to_head, settings.database.url)
            day = generate_day(calls, dids=DEMO_DIDS, seed=seed)
            console.print(
                f"[bold]pbx-tracker demo[/]: {calls} simulated calls, "
                f"speed {speed or 'unlimited'}x, database {settings.database.url}"
            )
            written = await _run_day(settings, asterisk, merge(day), len(day), speed, console)
        _print_summary(console, written)
        missing = len(day) - len(written)
        if missing:
            console.print(f"[red]{missing} calls were not recorded[/]")
        return 0 if missing == 0 else 1


async def _run_day(
    settings: Settings,
    asterisk: FakeAsterisk,
    messages: list[dict[str, str]],
    expected: int,
    speed: float,
    console: Console,
) -> list[CallRecord]:
    written: list[CallRecord] = []
    all_written = asyncio.Event()

    def on_written(record: CallRecord, new: bool) -> None:
        written.append(record)
        console.print(_record_line(record))
        if len(written) >= expected:
            all_written.set()

    stop = asyncio.Event()
    async with open_writer(settings, on_written=on_written) as writer:
        daemon = Daemon(settings, writer)
        runner = asyncio.create_task(daemon.run(stop))
        await asyncio.wait_for(daemon.ready.wait(), timeout=10)
        started = time.monotonic()
        await asyncio.gather(asterisk.play(messages, speed=speed or None), all_written.wait())
        console.print(f"simulated day played in {time.monotonic() - started:.1f} s")
        stop.set()
        await runner
    return written


def _record_line(record: CallRecord) -> str:
    when = record.started_at.strftime("%H:%M:%S")
    if record.status is CallStatus.ANSWERED:
        outcome = f"[green]answered[/] by {record.answered_by}"
    else:
        outcome = f"[red]missed[/] ({record.missed_reason})"
    recording = Path(record.recording_path).name if record.recording_path else "no recording"
    return (
        f"{when} {record.caller} → {record.did} {escape(f'[{record.source}]')} {outcome}, "
        f"ring {record.ring_seconds}s, talk {record.talk_seconds}s, {recording}"
    )


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
