"""The live board: AMI event → every open board updated, with 1 board (the baseline) and
with 200 boards open, measured in one run.

    .venv/bin/python benchmarks/board.py [--boards 200] [--events 60]

A separate process runs the daemon (the demo's PBX on SQLite in a temporary
folder, its HTTP server with the pages on a loopback port).  This process runs
the simulated Asterisk (a real AMI server on 127.0.0.1) and the boards: one
signed-in supervisor's aiohttp session reading ``/board/events`` (Server-Sent
Events) once per board.  Each step sends one AMI event (``ExtensionStatus`` of
manager 101, in use and idle in turn) and notes, per board, when the first
document showing the new state arrived.  Printed per run: latency p50 / p99 /
max over every (event, board), the daemon's CPU seconds per second, and what
one more board costs the daemon: CPU per update and memory.  Then a burst
(``--burst`` events sent as fast as the daemon reads them, the last one a state
of its own): events per second until every board shows the last, with 1 board
and with 200, so a crowd of boards is seen not to slow the daemon's intake.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from yarl import URL

from pbx_tracker.daemon import Daemon
from pbx_tracker.demo import DEMO_SECRET, demo_settings
from pbx_tracker.logging import configure_logging
from pbx_tracker.pipeline import open_writer
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.web.auth import hash_password
from pbx_tracker.web.settings import WebSettings, WebUser

PASSWORD = "board-bench-password"
STATES = ("on_call", "free")  # what 101 shows after ExtensionStatus 1, then 0
HINTS = {"on_call": "1", "free": "0"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_daemon(folder: str, ami_port: int, http_port: int, ready: multiprocessing.Queue) -> None:
    """The daemon in this process until killed."""

    async def main() -> None:
        configure_logging("error", "json")
        settings = demo_settings(Path(folder), ami_port)
        user = WebUser(name="sue", role="supervisor", password_hash=hash_password(PASSWORD))
        settings = settings.model_copy(
            update={
                "web": WebSettings(users=[user], cookie_secure=False),
                "http": settings.http.model_copy(update={"port": http_port}),
            }
        )
        await asyncio.to_thread(upgrade_to_head, settings.database.url)
        async with open_writer(settings) as writer:
            daemon = Daemon(settings, writer)
            task = asyncio.create_task(daemon.run(asyncio.Event()))
            await daemon.ready.wait()
            ready.put(os.getpid())
            await task

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Step:
    """One AMI event sent: the state the boards should show, and how many still do not."""

    number: int
    state: str
    waiting: int
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Viewer:
    """One open board: the state of 101 it shows, and when each step's state arrived."""

    shown: str | None = None
    seen: dict[int, float] = field(default_factory=dict)  # step -> arrival
    step: Step | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def document(self, data: str) -> None:
        doc = json.loads(data)
        anna = next(m for m in doc["managers"] if m["extension"] == "101")
        self.shown = anna["status"]
        self.ready.set()
        step = self.step
        if step is not None and step.state == self.shown and step.number not in self.seen:
            self.seen[step.number] = time.perf_counter()
            step.waiting -= 1
            if step.waiting == 0:
                step.done.set()


async def sign_in(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(f"{base}/login") as answer:
        await answer.read()
    token = session.cookie_jar.filter_cookies(URL(base)).get("pbx_login")
    data = {"name": "sue", "password": PASSWORD, "csrf": token.value if token else ""}
    async with session.post(f"{base}/login", data=data) as answer:
        assert answer.status == 200, answer.status


async def read_board(session: aiohttp.ClientSession, base: str, viewer: Viewer) -> None:
    async with session.get(f"{base}/board/events") as answer:
        assert answer.status == 200, answer.status
        async for line in answer.content:
            if line.startswith(b"data: "):
                viewer.document(line[6:].decode())


async def one_run(
    asterisk: FakeAsterisk, base: str, pid: int, boards: int, events: int, gap: float
) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=0)
    jar = aiohttp.CookieJar(unsafe=True)  # cookies of 127.0.0.1
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as session:
        await sign_in(session, base)
        viewers = [Viewer() for _ in range(boards)]
        rss_before = rss_bytes(pid)
        readers = [asyncio.create_task(read_board(session, base, v)) for v in viewers]
        await asyncio.wait_for(asyncio.gather(*(v.ready.wait() for v in viewers)), 60)
        rss_open = rss_bytes(pid)
        sent: dict[int, float] = {}
        cpu, wall = cpu_seconds(pid), time.perf_counter()
        for step in range(events):
            now = Step(step, STATES[step % 2], boards)
            for viewer in viewers:
                viewer.step = now
            sent[step] = time.perf_counter()
            await asterisk.send_event(
                Event="ExtensionStatus", Exten="101", Context="default", Status=HINTS[now.state]
            )
            with contextlib.suppress(TimeoutError):  # counted as lost
                await asyncio.wait_for(now.done.wait(), 10)
            await asyncio.sleep(gap)  # the next event after a pause, as on a real floor
        cpu_used, elapsed = cpu_seconds(pid) - cpu, time.perf_counter() - wall
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    latencies = [v.seen[s] - sent[s] for v in viewers for s in sent if s in v.seen]
    lost = boards * events - len(latencies)
    latencies.sort()
    return {
        "boards": boards,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "max_ms": 1000 * latencies[-1],
        "lost": lost,
        "cpu_per_s": cpu_used / elapsed,
        "cpu_ms_per_event": 1000 * cpu_used / events,
        "rss_open_kib": (rss_open - rss_before) / 1024,
    }


async def burst(
    asterisk: FakeAsterisk, base: str, pid: int, boards: int, events: int
) -> dict[str, float]:
    """``events`` AMI events as fast as the daemon reads them, the last one a state of its
    own: seconds until every board shows it, and the daemon's CPU meanwhile."""
    connector = aiohttp.TCPConnector(limit=0)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as session:
        await sign_in(session, base)
        viewers = [Viewer() for _ in range(boards)]
        readers = [asyncio.create_task(read_board(session, base, v)) for v in viewers]
        await asyncio.wait_for(asyncio.gather(*(v.ready.wait() for v in viewers)), 60)
        last = Step(0, "unavailable", boards)
        for viewer in viewers:
            viewer.step = last
        cpu, wall = cpu_seconds(pid), time.perf_counter()
        for n in range(events - 1):
            await asterisk.send_event(Event="ExtensionStatus", Exten="101", Status=str(n % 2))
        await asterisk.send_event(Event="ExtensionStatus", Exten="101", Status="4")
        await asyncio.wait_for(last.done.wait(), 120)
        elapsed, cpu_used = time.perf_counter() - wall, cpu_seconds(pid) - cpu
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return {
        "boards": boards,
        "seconds": elapsed,
        "events_per_s": events / elapsed,
        "cpu_s": cpu_used,
    }


async def run(
    args: argparse.Namespace, folder: str
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    async with FakeAsterisk(username="tracker", secret=DEMO_SECRET) as asterisk:
        http_port = free_port()
        ready: multiprocessing.Queue[int] = multiprocessing.Queue()
        process = multiprocessing.Process(
            target=serve_daemon, args=(folder, asterisk.port, http_port, ready), daemon=True
        )
        process.start()
        try:
            pid = await asyncio.to_thread(ready.get, True, 60)
            base = f"http://127.0.0.1:{http_port}"
            paced = [
                await one_run(asterisk, base, pid, boards, args.events, 0.1)
                for boards in (1, args.boards)
            ]
            bursts = [
                await burst(asterisk, base, pid, boards, args.burst) for boards in (1, args.boards)
            ]
            return paced, bursts
        finally:
            process.kill()
            process.join()


def report(results: list[dict[str, float]], bursts: list[dict[str, float]]) -> None:
    print("AMI event -> board updated (the daemon in its own process, SQLite)")
    print(
        f"{'boards':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>5} "
        f"{'daemon CPU/s':>13} {'CPU ms/event':>13} {'RSS of open boards':>19}"
    )
    for r in results:
        print(
            f"{r['boards']:>7} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} "
            f"{r['lost']:>5} {r['cpu_per_s']:>13.3f} {r['cpu_ms_per_event']:>13.2f} "
            f"{r['rss_open_kib']:>15.0f} KiB"
        )
    one, many = results[0], results[-1]
    extra = many["boards"] - one["boards"]
    if extra > 0:
        per_board_cpu = (many["cpu_ms_per_event"] - one["cpu_ms_per_event"]) / extra
        per_board_rss = (many["rss_open_kib"] - one["rss_open_kib"]) / extra
        print(
            f"one more board costs the daemon {1000 * per_board_cpu:.0f} µs of CPU per update "
            f"and {per_board_rss:.0f} KiB of memory"
        )
    print(
        "a burst of AMI events as fast as the daemon reads them, until every board shows the last"
    )
    for b in bursts:
        print(
            f"{b['boards']:>7} boards: {b['seconds']:.2f} s, {b['events_per_s']:,.0f} events/s, "
            f"daemon CPU {b['cpu_s']:.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=200)
    parser.add_argument("--events", type=int, default=60)
    parser.add_argument("--burst", type=int, default=5000, help="AMI events sent at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        report(*asyncio.run(run(args, folder)))


if __name__ == "__main__":
    main()
