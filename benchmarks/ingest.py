"""AMI events per second through the whole path, next to panoramisk parsing alone.

    .venv/bin/python benchmarks/ingest.py [--calls 1500] [--pg URL]

A separate process runs the simulated Asterisk (a real AMI server on
127.0.0.1) and sends a day of generated calls, shaped like the captured
traces, encoded once and written in 1 MiB slices as fast as the client
reads.  Measured in this process, one after the other on the same stream:

1. bare panoramisk 1.4: a Manager with one '*' callback that counts events;
2. the whole path: our listener (panoramisk protocol) → correlator → labels →
   writer → database, on SQLite and (with --pg or a reachable local server)
   PostgreSQL; events/s from the first event received to the last record
   committed;
3. commit latency: the same path with calls played in real time x20, the time
   from receiving a call's last Hangup to its record being committed (p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from pbx_tracker.ami.connection import ListenerItem
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.daemon import Daemon
from pbx_tracker.demo import DEMO_DIDS, DEMO_SECRET, demo_settings
from pbx_tracker.logging import configure_logging
from pbx_tracker.pipeline import open_writer
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.generated_day import generate_day
from pbx_tracker.sim.scenarios import merge
from pbx_tracker.sim.wire import encode_message
from pbx_tracker.store.migrate import upgrade_to_head

DIDS = DEMO_DIDS
SECRET = DEMO_SECRET


class TimedDaemon(Daemon):
    """The daemon, noting when the first AMI event reached the correlator."""

    first_event: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        take = self.intake.take

        def timed(item: ListenerItem) -> None:
            if self.first_event is None and isinstance(item, AmiEvent):
                self.first_event = time.perf_counter()
            take(item)

        self.intake.take = timed  # type: ignore[method-assign]


def serve(
    port_queue: multiprocessing.Queue[int], calls: int, speed: float | None, runs: int
) -> None:
    """The simulated Asterisk, in its own process: one full play per client login."""

    async def main() -> None:
        messages = merge(generate_day(calls, dids=DIDS, seed=7, mean_gap=0.5))
        # Encoded once, sent in 1 MiB slices (as in ASTERISK.md's measurements), so the
        # client, not the simulated Asterisk, is what is measured.
        stream = b"".join(encode_message(message) for message in messages)
        async with FakeAsterisk(
            username="tracker", secret=SECRET, timestamp_events=False
        ) as server:
            port_queue.put(server.port)
            for _ in range(runs):
                await server.wait_for_login(120)
                await asyncio.sleep(0.3)  # let the client finish its login round trip
                if speed is None:
                    for start in range(0, len(stream), 1 << 20):
                        await server.send_raw(stream[start : start + (1 << 20)])
                else:
                    await server.play(messages, speed=speed)
                await server.wait_until(lambda: server.clients == 0, 600, "the client to leave")

    asyncio.run(main())


def start_server(calls: int, speed: float | None, runs: int) -> tuple[multiprocessing.Process, int]:
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    process = multiprocessing.Process(target=serve, args=(queue, calls, speed, runs), daemon=True)
    process.start()
    return process, queue.get(timeout=30)


async def bare_panoramisk(port: int, events: int) -> float:
    from panoramisk import Manager

    done = asyncio.Event()
    seen: list[float] = []

    def count(manager: object, message: object) -> None:
        seen.append(time.perf_counter())
        if len(seen) >= events:
            done.set()

    manager = Manager(
        host="127.0.0.1",
        port=port,
        username="tracker",
        secret=SECRET,
        ping_delay=1e5,
        loop=asyncio.get_running_loop(),
    )
    manager.register_event("*", count)
    await manager.connect()
    await asyncio.wait_for(done.wait(), 300)
    manager.close()
    return (len(seen) - 1) / (seen[-1] - seen[0])


async def whole_path(port: int, url: str, folder: Path, expected: int) -> tuple[float, list[float]]:
    settings = demo_settings(folder, port, database_url=url)
    # the ingest path only: no callback tasks or ring-me calls for the generated missed calls
    settings = settings.model_copy(update={"callbacks": CallbackSettings(enabled=False)})
    await asyncio.to_thread(upgrade_to_head, url)
    latencies: list[float] = []
    done = asyncio.Event()

    def on_written(record: CallRecord, new: bool) -> None:
        latencies.append(time.time() - record.ended_at.timestamp())
        if len(latencies) >= expected:
            done.set()

    stop = asyncio.Event()
    async with open_writer(settings, on_written=on_written) as writer:
        daemon = TimedDaemon(settings, writer)
        task = asyncio.create_task(daemon.run(stop))
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.perf_counter() - (daemon.first_event or 0.0)
        events = daemon.correlator.events_seen
        stop.set()
        await task
    return events / elapsed, latencies


def postgres_url(explicit: str | None) -> str | None:
    base = explicit or "postgresql://postgres@127.0.0.1:5432/postgres"
    name = f"pbx_tracker_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as error:
        print(f"PostgreSQL skipped: {error}".strip())
        return None
    return base.rsplit("/", 1)[0] + "/" + name


def fresh_database(engine: str, folder: Path, pg_server: str | None) -> str:
    if engine == "sqlite":
        return f"sqlite:///{folder / 'bench.sqlite3'}"
    url = postgres_url(pg_server)
    assert url is not None
    return url


def drop_postgres(url: str) -> None:
    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--latency-calls", type=int, default=150)
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs; medians shown")
    parser.add_argument("--pg", help="PostgreSQL server URL (a scratch database is created)")
    args = parser.parse_args()
    configure_logging("error", "json")
    events = len(merge(generate_day(args.calls, dids=DIDS, seed=7, mean_gap=0.5)))
    print(f"stream: {args.calls} calls, {events} AMI events")
    with tempfile.TemporaryDirectory() as scratch:
        pg_ok = postgres_url(args.pg)
        if pg_ok:
            drop_postgres(pg_ok)
        engines = ["sqlite", "postgresql"] if pg_ok else ["sqlite"]
        server, port = start_server(args.calls, None, args.runs * (1 + len(engines)))
        bare: list[float] = []
        rates: dict[str, list[float]] = {name: [] for name in engines}
        for run in range(args.runs):  # interleaved, so drift on the machine hits all alike
            bare.append(asyncio.run(bare_panoramisk(port, events)))
            for name in engines:
                url = fresh_database(name, Path(scratch) / f"run{run}", args.pg)
                rates[name].append(asyncio.run(whole_path(port, url, Path(scratch), args.calls))[0])
                if name == "postgresql":
                    drop_postgres(url)
        server.terminate()
        base = statistics.median(bare)
        print(
            f"panoramisk alone ('*' callback, no work): {base:,.0f} events/s "
            f"(median of {args.runs}: {', '.join(f'{b:,.0f}' for b in bare)})"
        )
        for name, values in rates.items():
            rate = statistics.median(values)
            print(
                f"whole path on {name}: {rate:,.0f} events/s ({rate / base:.0%} of panoramisk; "
                f"runs {', '.join(f'{v:,.0f}' for v in values)})"
            )
        databases = {
            name: fresh_database(name, Path(scratch) / "latency", args.pg) for name in engines
        }
        pg = databases.get("postgresql")
        for name, url in databases.items():
            server, port = start_server(args.latency_calls, 20.0, 1)
            _, latencies = asyncio.run(whole_path(port, url, Path(scratch), args.latency_calls))
            server.terminate()
            print(
                f"commit latency on {name} (last Hangup → committed, {len(latencies)} calls, "
                f"played at 20x): p50 {statistics.median(latencies) * 1000:.1f} ms, "
                f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
            )
        if pg:
            drop_postgres(pg)


if __name__ == "__main__":
    main()
