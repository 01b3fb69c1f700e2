"""How fast "who held DID X at time t" is with months of lease history.

    .venv/bin/python benchmarks/attribution_lookup.py [--days 180] [--visits-per-day 3000]
        [--numbers 60] [--lookups 2000] [--pg URL]

Fills a fresh database (SQLite, and PostgreSQL when reachable) with the leases a
pool of ``--numbers`` DIDs gives ``--visits-per-day`` visits a day for ``--days``
days (each visit holds its number 5 to 40 minutes), then times `leases_at` — the
query attribution runs for every call on a pool number — at random moments of
that history, and prints p50/p99 per lookup and the database's query plan.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import drop_postgres, postgres_url

from pbx_tracker.attribution.visits import leases_at, leases_table, visits_table
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head

START = datetime(2026, 1, 1, tzinfo=UTC)
GRACE = timedelta(minutes=5)
HOLD = timedelta(minutes=20)
CHUNK = 20_000


def history(
    days: int, per_day: int, numbers: int, seed: int = 7
) -> list[tuple[str, datetime, datetime]]:
    """(did, started, released) of every lease, each number handed on in turn."""
    rng = random.Random(seed)
    dids = [f"+7495333{n:04d}" for n in range(numbers)]
    free_at = {did: START for did in dids}
    leases = []
    gap = timedelta(days=1) / per_day
    moment = START
    for _ in range(days * per_day):
        moment += gap
        did = min(dids, key=free_at.__getitem__)
        start = max(moment, free_at[did])
        end = start + timedelta(minutes=rng.uniform(5, 40))
        free_at[did] = end + timedelta(minutes=5)  # quarantine
        leases.append((did, start, end))
    return leases


async def fill(engine: AsyncEngine, leases: list[tuple[str, datetime, datetime]]) -> None:
    for offset in range(0, len(leases), CHUNK):
        chunk = leases[offset : offset + CHUNK]
        visits = [
            {"id": f"v{offset + i}", "pool": "site", "started_at": s, "last_seen_at": e}
            for i, (_, s, e) in enumerate(chunk)
        ]
        rows = [
            {
                "pool": "site",
                "did": did,
                "visit_id": f"v{offset + i}",
                "started_at": s,
                "last_seen_at": e,
                "released_at": e,
            }
            for i, (did, s, e) in enumerate(chunk)
        ]
        async with engine.begin() as conn:
            await conn.execute(insert(visits_table), visits)
            await conn.execute(insert(leases_table), rows)


async def time_lookups(
    engine: AsyncEngine, leases: list[tuple[str, datetime, datetime]], lookups: int
) -> tuple[list[float], float]:
    rng = random.Random(11)
    samples = rng.sample(leases, lookups)
    latencies = []
    found = 0
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("ANALYZE"))
        for did, start, end in samples:
            t = start + (end - start) * rng.random()
            began = time.perf_counter()
            held = await leases_at(conn, did, t, GRACE, hold=HOLD)
            latencies.append((time.perf_counter() - began) * 1000)
            found += bool(held)
    return latencies, found / lookups


async def plan(engine: AsyncEngine, did: str, t: datetime) -> list[str]:
    explain = "EXPLAIN QUERY PLAN" if engine.dialect.name == "sqlite" else "EXPLAIN"
    query = (
        f"{explain} SELECT * FROM number_leases WHERE did = :did AND started_at <= :t "
        "ORDER BY started_at DESC, id DESC LIMIT 1"
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(text(query), {"did": did, "t": t})).all()
    return [" ".join(str(part) for part in row) for row in rows]


async def run(url: str, leases: list[tuple[str, datetime, datetime]], lookups: int) -> None:
    await asyncio.to_thread(upgrade_to_head, url)
    engine = make_async_engine(url)
    try:
        began = time.perf_counter()
        await fill(engine, leases)
        filled = time.perf_counter() - began
        latencies, hit = await time_lookups(engine, leases, lookups)
        shown = await plan(engine, leases[0][0], leases[len(leases) // 2][1])
    finally:
        await engine.dispose()
    name = url.split(":", 1)[0]
    p50 = statistics.median(latencies)
    p99 = sorted(latencies)[int(0.99 * len(latencies))]
    print(
        f"{name:10} {len(leases):>9,} leases (filled in {filled:.0f} s): "
        f"leases_at p50 {p50:.2f} ms, p99 {p99:.2f} ms, {hit:.0%} found a holder"
    )
    for line in shown:
        print(f"{'':10}   plan: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--visits-per-day", type=int, default=3000)
    parser.add_argument("--numbers", type=int, default=60)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--pg", help="PostgreSQL server URL (default: local, if reachable)")
    args = parser.parse_args()
    leases = history(args.days, args.visits_per_day, args.numbers)
    print(
        f"{args.days} days x {args.visits_per_day} visits/day on {args.numbers} numbers; "
        f"{args.lookups} lookups at random moments, grace {GRACE}, hold {HOLD}"
    )
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(f"sqlite:///{Path(folder) / 'lookup.sqlite3'}", leases, args.lookups))
    pg = postgres_url(args.pg)
    if pg is not None:
        try:
            asyncio.run(run(pg, leases, args.lookups))
        finally:
            drop_postgres(pg)


if __name__ == "__main__":
    main()
