"""Route decisions per second over FastAGI, next to a bare panoramisk handler; AGI start-up.

    .venv/bin/python benchmarks/agi_route.py [--sessions 20000] [--concurrency 200] [--runs 3]

Each server runs in its own process on 127.0.0.1; this process plays Asterisk
with `concurrency` sessions open at once (each: the agi_* header block of a
captured call, then a reply to every command until the server closes), and
measures sessions/s and the latency of each session (connect to close).

1. pbx-tracker: the daemon's FastAGI server and `route` handler, the router
   deciding over 20 managers (longest idle, sticky on) with the caller history
   in a SQLite database (5,000 callers, 2,000 of them with an earlier answered
   call), each call's reservation released when its session ends;
2. bare panoramisk 1.4: `fast_agi.Application` with a handler that sends the
   very same command lines (taken from a pbx-tracker session) and decides
   nothing.

The runs alternate (pbx-tracker, panoramisk, pbx-tracker, ...) and the medians
are printed.  Then the classic AGI script (agi_scripts/pbx-tracker-route.agi):
time from starting it to the daemon's first command on its stdout, median of
20 runs, next to `python3 -c pass` with the same interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pbx_tracker.agi.route import RouteHandler
from pbx_tracker.agi.server import AgiSession, FastAgiServer
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction
from pbx_tracker.config import Settings, settings_from_mapping
from pbx_tracker.logging import configure_logging
from pbx_tracker.routing.availability import ManagerBoard
from pbx_tracker.routing.router import Router
from pbx_tracker.routing.sticky import StickyMemory
from pbx_tracker.sim.agi_client import env_for_call, run_agi_session
from pbx_tracker.store.calls import save_calls
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head

SCRIPT = Path(__file__).parents[1] / "agi_scripts" / "pbx-tracker-route.agi"
MANAGERS = [str(200 + n) for n in range(20)]
CALLERS = [f"7916{n:07d}" for n in range(5000)]
DID = "74951110001"


def bench_settings(folder: Path) -> Settings:
    return settings_from_mapping(
        {
            "ami": {"secret": "unused"},
            "database": {"url": f"sqlite:///{folder / 'calls.sqlite3'}"},
            "recordings_dir": str(folder / "monitor"),
            "tracked_numbers": [{"did": DID, "source": "yandex-direct"}],
            "managers": [
                {"name": f"Manager {ext}", "extension": ext, "group": "sales"} for ext in MANAGERS
            ],
            "agi": {"port": 0, "max_sessions": 1000},
            "routing": {"groups": [{"name": "sales", "sticky_days": 30}]},
            "logging": {"level": "error"},
        },
        environ={},
    )


def history(count: int) -> list[CallRecord]:
    """Answered calls of the first `count` callers, each with one of the managers."""
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=5)
    return [
        CallRecord(
            linkedid=f"1790000000.{n}",
            node="bench",
            direction=Direction.INBOUND,
            did="+" + DID,
            caller="+" + caller,
            caller_name=None,
            status=CallStatus.ANSWERED,
            missed_reason=None,
            answered_by=rng.choice(MANAGERS),
            transferred_to=None,
            started_at=start + timedelta(minutes=n),
            answered_at=start + timedelta(minutes=n, seconds=5),
            ended_at=start + timedelta(minutes=n, seconds=65),
            ring_seconds=5,
            talk_seconds=60,
            recording_path=None,
        )
        for n, caller in enumerate(CALLERS[:count])
    ]


async def prepare_database(settings: Settings) -> None:
    await asyncio.to_thread(upgrade_to_head, settings.database.url)
    engine = make_async_engine(settings.database.url)
    async with engine.begin() as conn:
        await save_calls(conn, history(2000))
    await engine.dispose()


def serve_pbx_tracker(folder: str, ports: multiprocessing.Queue[int]) -> None:
    async def main() -> None:
        configure_logging("error", "json")
        settings = bench_settings(Path(folder))
        await prepare_database(settings)
        engine = make_async_engine(settings.database.url)
        board = ManagerBoard(settings.routing, settings.directory)
        sticky = StickyMemory(engine)
        await sticky.preload(datetime.now(UTC) - timedelta(days=30))  # as the daemon does
        route = RouteHandler(Router(board, sticky), settings.recordings_dir)

        async def handler(session: AgiSession) -> None:
            try:
                await route(session)
            finally:  # the call is over: its manager is free for the next one
                board.release(session.request.uniqueid)

        async with FastAgiServer({"route": handler}, settings.agi) as server:
            ports.put(server.port)
            await asyncio.Event().wait()

    asyncio.run(main())


def serve_panoramisk(commands: list[str], ports: multiprocessing.Queue[int]) -> None:
    from panoramisk import fast_agi

    async def main() -> None:
        app = fast_agi.Application()

        async def handler(request: Any) -> None:
            for command in commands:
                await request.send_command(command)
            request.writer.close()

        app.add_route("route", handler)
        server = await asyncio.start_server(app.handler, "127.0.0.1", 0)
        ports.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


Server = tuple[multiprocessing.Process, int]


def start(target: Callable[..., None], *args: object) -> Server:
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    process = multiprocessing.Process(target=target, args=(*args, ports), daemon=True)
    process.start()
    return process, ports.get(timeout=60)


def call_env(n: int) -> list[tuple[str, str]]:
    uniqueid = f"1795348313.{n}"
    caller = CALLERS[n % len(CALLERS)]
    return env_for_call(
        did=DID, caller=caller, uniqueid=uniqueid, channel=f"IAX2/carrier-{n}", caller_name="Ivan"
    )


async def load(port: int, sessions: int, concurrency: int) -> tuple[float, list[float]]:
    """(sessions per second, latency of every session in seconds)."""
    latencies: list[float] = []
    counter = iter(range(sessions))
    variables = {"TRACK_SOURCE": "yandex-direct"}

    async def worker() -> None:
        for n in counter:
            began = time.perf_counter()
            call = await run_agi_session("127.0.0.1", port, call_env(n), variables)
            latencies.append(time.perf_counter() - began)
            if not call.server_closed or not call.commands:
                raise RuntimeError(f"session {n} did not complete: {call}")

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sessions / (time.perf_counter() - began), latencies


async def commands_of_one_session(port: int) -> list[str]:
    call = await run_agi_session("127.0.0.1", port, call_env(10**6), {"TRACK_SOURCE": "x"})
    return call.commands


async def paced(port: int, sessions: int, rate: float) -> list[float]:
    """Latencies of `sessions` started at a steady `rate` per second (open loop)."""
    loop = asyncio.get_running_loop()
    variables = {"TRACK_SOURCE": "yandex-direct"}
    latencies: list[float] = []

    async def one(n: int) -> None:
        began = time.perf_counter()
        await run_agi_session("127.0.0.1", port, call_env(n), variables)
        latencies.append(time.perf_counter() - began)

    start, tasks = loop.time(), []
    for n in range(sessions):
        await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    return latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(
    name: str, server: Server, sessions: int, concurrency: int, results: dict[str, list[Any]]
) -> None:
    process, port = server
    await load(port, min(2000, sessions), concurrency)  # warm-up: caches, connections
    cpu = cpu_seconds(process.pid)
    rate, latencies = await load(port, sessions, concurrency)
    cpu_us = (cpu_seconds(process.pid) - cpu) / sessions * 1e6
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    results.setdefault(name, []).append((rate, p50, p99, cpu_us))
    print(
        f"  {name:<12} {rate:8,.0f} sessions/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
        f"   server CPU {cpu_us:4.0f} us/session"
    )


async def latency_at_rates(servers: dict[str, Server], rates: list[int]) -> None:
    print("\nOpen loop: sessions started at a steady rate, latency of each (start to close):")
    for rate in rates:
        for name, (_, port) in servers.items():
            latencies = await paced(port, min(3000, rate * 5), rate)
            p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
            print(f"  {rate:5}/s  {name:<12} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")


def script_first_command(port: int, python: str) -> float:
    """Seconds from starting the classic AGI script to the first command on its stdout."""
    env_lines = "".join(f"{k}: {v}\n" for k, v in call_env(1) if not k.startswith("agi_network"))
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as conf:
        conf.write(f"[router]\nport = {port}\ntimeout = 1.0\n")
    began = time.perf_counter()
    process = subprocess.Popen(
        [python, str(SCRIPT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PBX_TRACKER_AGI_CONF": conf.name},
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(env_lines.encode() + b"\n")
    process.stdin.flush()
    first = process.stdout.readline()
    elapsed = time.perf_counter() - began
    process.stdin.write(b"200 result=0\n" * 40)
    process.stdin.close()
    process.wait(timeout=10)
    os.unlink(conf.name)
    if not first:
        raise RuntimeError("the AGI script wrote no command")
    return elapsed


def python_pass(python: str) -> float:
    began = time.perf_counter()
    subprocess.run([python, "-c", "pass"], check=True)
    return time.perf_counter() - began


def startup_report(port: int) -> None:
    pythons = dict.fromkeys(p for p in (sys.executable, "/usr/bin/python3") if Path(p).exists())
    print("\nClassic AGI script, start to first command (median of 20):")
    for python in pythons:
        script = statistics.median(script_first_command(port, python) for _ in range(20))
        bare = statistics.median(python_pass(python) for _ in range(20))
        print(f"  {python}: script {script * 1000:.1f} ms, `python3 -c pass` {bare * 1000:.1f} ms")


async def run(args: argparse.Namespace, folder: Path) -> None:
    ours = start(serve_pbx_tracker, str(folder))
    commands = await commands_of_one_session(ours[1])
    servers = {"pbx-tracker": ours, "panoramisk": start(serve_panoramisk, commands)}
    print(f"{len(commands)} commands per session: {', '.join(c.split()[0] for c in commands)}")
    print(f"{args.sessions:,} sessions per run, {args.concurrency} at once, {args.runs} runs")
    results: dict[str, list[Any]] = {}
    try:
        for _ in range(args.runs):
            for name, server in servers.items():
                await measure(name, server, args.sessions, args.concurrency, results)
        report(results)
        await latency_at_rates(servers, args.rates)
        await asyncio.to_thread(startup_report, ours[1])
    finally:
        for process, _ in servers.values():
            process.kill()


def report(results: dict[str, list[Any]]) -> None:
    print("\nMedians:")
    medians = {}
    for name, runs in results.items():
        rate, p50, p99, cpu = (statistics.median(run[i] for run in runs) for i in range(4))
        medians[name] = rate
        print(
            f"  {name:<12} {rate:8,.0f} sessions/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
            f"   server CPU {cpu:4.0f} us/session"
        )
    share = medians["pbx-tracker"] / medians["panoramisk"]
    print(f"  pbx-tracker throughput = {share:.0%} of bare panoramisk (target >= 67 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--rates", type=lambda text: [int(r) for r in text.split(",")], default=[100, 500, 1000]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pbx-tracker-bench-") as folder:
        asyncio.run(run(args, Path(folder)))


if __name__ == "__main__":
    main()
