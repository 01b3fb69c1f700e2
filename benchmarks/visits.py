"""Visits started per second through the visits API, next to a constant answer of the same stack.

    .venv/bin/python benchmarks/visits.py [--visits 5000] [--concurrency 50] [--runs 3]
        [--mode both|saturation|steady] [--rates 50,200,500] [--steady-seconds 4]

Each server runs in its own process on 127.0.0.1: the daemon's `HttpServer`
(the same aiohttp application and middlewares) with a `StoredVisitPool` on a
fresh, migrated database: a SQLite file in a temp dir, and a scratch
PostgreSQL database (created and dropped; server from $PBX_TRACKER_BENCH_PG_URL,
default postgresql://postgres@127.0.0.1:5432/postgres; skipped with a note
when unreachable).  Each server also has a constant route,
``POST /api/v1/bench-constant``, that reads and validates the same body as
``POST /api/v1/visits`` and answers a fixed `VisitAnswer` without touching a
pool: the cost of the HTTP stack alone.

This process is the client (one aiohttp ClientSession, ``--concurrency``
requests in flight).  Every visit is a distinct visitor: its own visitor_id
and its own client address in X-Forwarded-For (the servers trust the proxy),
each in a /24 of its own, and a desktop browser's User-Agent, so neither the
per-client and per-network caps, the bot rule nor the rate limiter is what is
measured.
Bodies are realistic (page URL with utm tags, referrer, utm fields, yclid,
ym/ga client ids) and encoded before the clock starts.

``--linger``: the pool's ``linger_seconds`` (its writer and reader keep their
connections between quiet batches).

The pool has ``--numbers`` numbers and a short hold (``--hold`` seconds), so
numbers are handed on all the time: most starts also end an old lease, as on
a busy site at its steady state.  Answers with the fallback (pool exhausted)
are counted and shown.

Two modes (both by default):

* saturation (closed loop): ``--concurrency`` requests always in flight, as
  fast as the server answers: the most visits per second.
* steady rate (open loop, as benchmarks/agi_route.py does for AGI): visit
  starts sent at a fixed rate (``--rates``, per second) for ``--steady-seconds``
  each, whatever the answers: the latency a visitor sees at that load (a real
  site sees a few visits per second).  The achieved rate is printed too: below
  the target, the server (or the client) could not keep up.

Runs alternate (SQLite visits, SQLite constant, PostgreSQL visits, ...);
medians are printed, with p50/p99 latency, the server's CPU per request and
the client's CPU use (2 cores: when the client is near 100 % of a core, the
client, not the server, limits the rate), and for the pool the requests each
group commit answered on average (the pool's `WriteStats`, read from a
benchmark-only route).  Target: visits/s at least half the
constant endpoint's, p99 under 20 ms.  Every run is bounded (``--run-timeout``),
so the benchmark stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import psycopg
from aiohttp import web
from psycopg import sql
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from pbx_tracker.attribution.stored_pool import StoredVisitPool
from pbx_tracker.attribution.visit_pool import VisitAnswer, VisitStart
from pbx_tracker.logging import configure_logging
from pbx_tracker.sim.visitors import BROWSER_USER_AGENT
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.web.app import HttpServer
from pbx_tracker.web.clients import client_key
from pbx_tracker.web.middleware import API_PREFIX
from pbx_tracker.web.settings import HttpSettings

PG_ENV = "PBX_TRACKER_BENCH_PG_URL"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
ORIGIN = "https://example.ru"
VISITS_PATH = f"{API_PREFIX}/visits"
CONSTANT_PATH = f"{API_PREFIX}/bench-constant"
STATS_PATH = "/bench-stats"
CONSTANT_ANSWER = VisitAnswer(
    visit_id="AAAAAAAAAAAAAAAAAAAAAA",
    number="+74951230001",
    display="+7 495 123-00-01",
    fallback=False,
    keep_alive_seconds=600,
).model_dump(mode="json")


# --- the servers ------------------------------------------------------------------


def http_settings() -> HttpSettings:
    """Trust X-Forwarded-For (each visit comes from its own address); default rate limit."""
    return HttpSettings.model_validate(
        {"host": "127.0.0.1", "port": 0, "allowed_origins": [ORIGIN], "trust_proxy": True}
    )


async def constant(request: web.Request) -> web.Response:
    """What `start_visit` does, minus the pool: read, validate, key the client, answer."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType()
    try:
        VisitStart.model_validate_json(await request.read())
    except ValidationError:
        raise web.HTTPBadRequest() from None
    client_key(request, trust_proxy=True)
    return web.json_response(CONSTANT_ANSWER)


def pool_class(name: str) -> type[StoredVisitPool]:
    """``module:Class``: another implementation with the same constructor (to compare)."""
    module, _, attribute = name.partition(":")
    found: type[StoredVisitPool] = getattr(importlib.import_module(module), attribute)
    return found


def serve(url: str, args: argparse.Namespace, ports: multiprocessing.Queue[int]) -> None:
    """One server process: the API with a `StoredVisitPool` on ``url``, plus the constant
    route; runs until killed."""
    numbers, hold = args.numbers, args.hold

    async def main() -> None:
        configure_logging("error", "json")
        engine = make_async_engine(url)
        linger = {"linger_seconds": args.linger} if args.linger else {}  # older pools: none
        pool = pool_class(args.pool)(
            engine,
            name="site",
            numbers=[f"+7495{n:07d}" for n in range(numbers)],
            fallback="+74950000000",
            hold_seconds=hold,
            **linger,
        )
        await pool.restore()
        server = HttpServer(http_settings(), pool)
        server.app.router.add_post(CONSTANT_PATH, constant)

        async def write_stats(request: web.Request) -> web.Response:
            stats = getattr(pool, "stats", None)
            return web.json_response(None if stats is None else asdict(stats))

        server.app.router.add_get(STATS_PATH, write_stats)
        await server.start()
        ports.put(server.port)
        await asyncio.Event().wait()

    asyncio.run(main())


@dataclass
class Server:
    name: str
    process: multiprocessing.Process
    port: int


def start_server(name: str, url: str, args: argparse.Namespace) -> Server:
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    process = multiprocessing.Process(target=serve, args=(url, args, ports), daemon=True)
    process.start()
    return Server(name, process, ports.get(timeout=60))


# --- databases ----------------------------------------------------------------------


def scratch_postgres(server_url: str) -> tuple[str, str] | None:
    """A fresh database on the server: (its URL, its name); None when unreachable."""
    url = make_url(server_url).set(drivername="postgresql")
    admin = url.render_as_string(hide_password=False)
    name = f"pbx_tracker_bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as error:
        shown = url.render_as_string(hide_password=True)
        print(f"PostgreSQL not reachable at {shown} ({' '.join(str(error).split())}): skipped")
        return None
    return url.set(database=name).render_as_string(hide_password=False), name


def drop_postgres(server_url: str, name: str) -> None:
    admin = make_url(server_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(query.format(sql.Identifier(name)))


# --- the client -----------------------------------------------------------------------

Request = tuple[bytes, dict[str, str]]


def visit_requests(first: int, count: int) -> list[Request]:
    """Bodies and headers of ``count`` distinct visitors, encoded before the clock starts."""
    requests = []
    for n in range(first, first + count):
        campaign = f"winter-{n % 17}"
        body = {
            "visitor_id": f"visitor-{n}",
            "page": f"https://example.ru/okna/{n % 50}?utm_source=yandex&utm_medium=cpc"
            f"&utm_campaign={campaign}&utm_term=plastikovye+okna&yclid={n}",
            "referrer": "https://yandex.ru/search/?text=plastikovye+okna",
            "utm_source": "yandex",
            "utm_medium": "cpc",
            "utm_campaign": campaign,
            "utm_term": "plastikovye okna",
            "utm_content": f"ad-{n % 5}",
            "yclid": str(10**12 + n),
            "ym_client_id": str(1700000000000000000 + n),
            "ga_client_id": f"GA1.2.{n}.1700000000",
        }
        address = f"10.{n & 255}.{n >> 8 & 255}.{n >> 16 & 255}"  # a /24 per visitor
        headers = {
            "Content-Type": "application/json",
            "Origin": ORIGIN,
            "X-Forwarded-For": f"203.0.113.7, {address}",
            "User-Agent": BROWSER_USER_AGENT,
        }
        requests.append((json.dumps(body).encode(), headers))
    return requests


@dataclass
class Result:
    rate: float
    latencies: list[float]
    fallbacks: int
    client_cpu: float  # share of one core the client used


async def load(port: int, path: str, requests: list[Request], concurrency: int) -> Result:
    """Send every request, ``concurrency`` at once; any non-200 answer stops the benchmark."""
    url = f"http://127.0.0.1:{port}{path}"
    latencies: list[float] = []
    fallbacks = 0
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal fallbacks
        for body, headers in queue:
            began = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.read()
            latencies.append(time.perf_counter() - began)
            if response.status != 200:
                raise RuntimeError(f"{path}: HTTP {response.status}: {answer[:200]!r}")
            fallbacks += b'"fallback":true' in answer

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cpu, began = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        used = time.process_time() - cpu
    return Result(len(requests) / elapsed, latencies, fallbacks, used / elapsed)


async def paced(port: int, path: str, requests: list[Request], rate: float) -> Result:
    """Send request n at ``n / rate`` seconds from the start (open loop: not waiting for
    the answers); any non-200 answer stops the benchmark.  ``Result.rate``: the rate
    achieved (requests over the time until the last answer)."""
    url = f"http://127.0.0.1:{port}{path}"
    latencies: list[float] = []
    fallbacks = 0
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)  # as many connections as in flight
    timeout = aiohttp.ClientTimeout(total=30)

    async def one(session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> None:
        nonlocal fallbacks
        began = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            answer = await response.read()
        latencies.append(time.perf_counter() - began)
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {answer[:200]!r}")
        fallbacks += b'"fallback":true' in answer

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cpu, began, start = time.process_time(), time.perf_counter(), loop.time()
        tasks = []
        for n, (body, headers) in enumerate(requests):
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            tasks.append(asyncio.create_task(one(session, body, headers)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
        used = time.process_time() - cpu
    return Result(len(requests) / elapsed, latencies, fallbacks, used / elapsed)


async def write_stats(port: int) -> tuple[int, int]:
    """(batches committed, requests they answered) so far: the pool's `WriteStats`."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{STATS_PATH}") as response,
    ):
        stats = await response.json()
    return (0, 0) if stats is None else (stats["batches"], stats["requests"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# rate, p50 and p99 (ms), server CPU (us/request), client CPU (share), fallback share,
# requests per committed batch (0: no pool)
Row = tuple[float, float, float, float, float, float, float]


class Bench:
    """Alternating runs against the servers; rows of results per (server, endpoint)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.next_visitor = 0
        self.results: dict[str, list[Row]] = {}

    def requests(self, count: int) -> list[Request]:
        first, self.next_visitor = self.next_visitor, self.next_visitor + count
        return visit_requests(first, count)

    async def measure(
        self, server: Server, path: str, label: str, rate: float | None = None
    ) -> None:
        """One run: saturation (``rate`` None) or steady ``rate`` per second."""
        if rate is None:
            requests = self.requests(self.args.visits)
            running = load(server.port, path, requests, self.args.concurrency)
        else:
            requests = self.requests(max(1, round(rate * self.args.steady_seconds)))
            running = paced(server.port, path, requests, rate)
        before = await write_stats(server.port)
        cpu = cpu_seconds(server.process.pid)
        result = await asyncio.wait_for(running, self.args.run_timeout)
        cpu_us = (cpu_seconds(server.process.pid) - cpu) / len(requests) * 1e6
        after = await write_stats(server.port)
        batches = after[0] - before[0]
        batch = (after[1] - before[1]) / batches if batches else 0.0
        p50 = percentile(result.latencies, 0.5) * 1000
        p99 = percentile(result.latencies, 0.99) * 1000
        fallback = result.fallbacks / len(requests)
        row = (result.rate, p50, p99, cpu_us, result.client_cpu, fallback, batch)
        self.results.setdefault(label if rate is None else f"{label} @{rate:g}/s", []).append(row)
        print(line(label if rate is None else f"{rate:5g}/s {label}", row))

    async def warm_up(self, server: Server) -> None:
        for path in (VISITS_PATH, CONSTANT_PATH):
            await load(server.port, path, self.requests(500), self.args.concurrency)


def line(label: str, row: Row) -> str:
    rate, p50, p99, cpu, client, fallback, batch = row
    return (
        f"  {label:<20} {rate:6,.0f} req/s  p50 {p50:5.1f} ms  p99 {p99:5.1f} ms"
        f"  server CPU {cpu:4.0f} us/req  client CPU {client:4.0%}  fallback {fallback:3.0%}"
        + (f"  {batch:4.1f} req/commit" if batch else "")
    )


def medians_of(results: dict[str, list[Row]]) -> dict[str, Row]:
    medians: dict[str, Row] = {}
    for label, rows in results.items():
        rate, p50, p99, cpu, client, fallback, batch = (
            statistics.median(row[i] for row in rows) for i in range(7)
        )
        medians[label] = (rate, p50, p99, cpu, client, fallback, batch)
    return medians


CLIENT_NOTE = (
    "  Client CPU: this process (one core at most) sends the load.  Near 100 %, the\n"
    "  client, not the server, limits the rate and adds to the latency; on 2 cores the\n"
    "  client, the server (and PostgreSQL) also share the CPUs, so the figures are\n"
    "  lower bounds of what the server does alone."
)


def report(results: dict[str, list[Row]], names: list[str]) -> None:
    """Saturation: medians, and the targets."""
    medians = medians_of(results)
    print("\nSaturation, medians:")
    for label, row in medians.items():
        print(line(label, row))
    print()
    for name in names:
        visits, fixed = medians[f"{name} visits"], medians[f"{name} constant"]
        ok = visits[0] >= fixed[0] / 2 and visits[2] < 20
        print(
            f"  {name}: visits/s = {visits[0] / fixed[0]:.0%} of the constant endpoint"
            f" (target >= 50 %), p99 {visits[2]:.1f} ms (target < 20 ms): "
            + ("met" if ok else "NOT met")
        )
    print(CLIENT_NOTE)


def steady_report(results: dict[str, list[Row]], names: list[str], rates: list[float]) -> None:
    """Steady rates: one table, a row per rate and server, visits next to constant."""
    medians = medians_of(results)
    print("\nSteady rate, medians (the latency a visitor sees at that load):")
    print(
        f"  {'rate':>7}  {'server':<11}"
        f" {'visits: achieved':>16} {'p50':>7} {'p99':>7} {'CPU/req':>8}"
        f"  {'constant: achieved':>18} {'p50':>7} {'p99':>7} {'CPU/req':>8}  client CPU"
    )
    for rate in rates:
        for name in names:
            visits = medians[f"{name} visits @{rate:g}/s"]
            fixed = medians[f"{name} constant @{rate:g}/s"]
            print(
                f"  {rate:5g}/s  {name:<11}"
                f" {visits[0]:14,.0f}/s {visits[1]:5.1f}ms {visits[2]:5.1f}ms {visits[3]:6.0f}us"
                f"  {fixed[0]:16,.0f}/s {fixed[1]:5.1f}ms {fixed[2]:5.1f}ms {fixed[3]:6.0f}us"
                f"  {visits[4]:4.0%} / {fixed[4]:4.0%}"
            )
    print("  (achieved below the rate: the load was more than the server could take)")
    print(CLIENT_NOTE)


async def run(args: argparse.Namespace, servers: list[Server]) -> None:
    bench = Bench(args)
    print(
        f"pool of {args.numbers} numbers, hold {args.hold} s, linger {args.linger:g} s; "
        "each visit a distinct visitor, client network (X-Forwarded-For, trust_proxy on) "
        "and a browser's User-Agent: no cap, bot rule or rate limit hit"
    )
    for server in servers:
        await bench.warm_up(server)
    names = [server.name for server in servers]
    if args.mode in ("both", "saturation"):
        print(
            f"\nSaturation: {args.visits:,} requests per run, {args.concurrency} in flight, "
            f"{args.runs} runs"
        )
        for _ in range(args.runs):
            for server in servers:
                await bench.measure(server, VISITS_PATH, f"{server.name} visits")
                await bench.measure(server, CONSTANT_PATH, f"{server.name} constant")
        report(bench.results, names)
    if args.mode in ("both", "steady"):
        bench.results = {}
        print(
            f"\nSteady rate: {', '.join(f'{r:g}' for r in args.rates)} starts/s,"
            f" {args.steady_seconds:g} s each, {args.runs} runs"
        )
        for _ in range(args.runs):
            for rate in args.rates:
                for server in servers:
                    await bench.measure(server, VISITS_PATH, f"{server.name} visits", rate)
                    await bench.measure(server, CONSTANT_PATH, f"{server.name} constant", rate)
        steady_report(bench.results, names, args.rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--visits", type=int, default=5000, help="requests per run")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--numbers", type=int, default=1000, help="numbers in the pool")
    parser.add_argument("--hold", type=float, default=0.2, help="lease hold, seconds")
    parser.add_argument("--run-timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--mode", choices=("both", "saturation", "steady"), default="both")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(rate) for rate in text.split(",")],
        default=[50.0, 200.0, 500.0],
        help="steady rates, visit starts per second (comma-separated)",
    )
    parser.add_argument(
        "--steady-seconds", type=float, default=4.0, help="seconds of each steady-rate run"
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=0.0,
        help="the pool's linger_seconds (0, its default: connection per quiet batch)",
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--pool",
        default="pbx_tracker.attribution.stored_pool:StoredVisitPool",
        help="module:Class of the pool (e.g. an older version, to compare)",
    )
    args = parser.parse_args()
    pg_server = os.environ.get(PG_ENV, DEFAULT_PG)
    with tempfile.TemporaryDirectory(prefix="pbx-tracker-bench-") as folder:
        urls = {"SQLite": f"sqlite:///{Path(folder) / 'visits.sqlite3'}"}
        scratch = None if args.skip_postgres else scratch_postgres(pg_server)
        if scratch is not None:
            urls["PostgreSQL"] = scratch[0]
        servers: list[Server] = []
        try:
            for name, url in urls.items():
                upgrade_to_head(url)
                servers.append(start_server(name, url, args))
            asyncio.run(run(args, servers))
        finally:
            for server in servers:
                server.process.kill()
                server.process.join(10)
            if scratch is not None:
                drop_postgres(pg_server, scratch[1])


if __name__ == "__main__":
    main()
