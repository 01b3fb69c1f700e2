"""How long each report takes over a year of calls (a million on PostgreSQL).

    .venv/bin/python benchmarks/reports.py [--calls 1000000] [--sqlite-calls 100000] [--pg URL]

Generates a year (2025-11-01 .. 2026-10-31, Europe/Moscow) of inbound calls
into a fresh PostgreSQL database (created, then dropped; bulk-loaded with
COPY, in the order the calls happened, as the daemon stores them) and,
smaller, a SQLite file: a realistic mix of sources, campaigns,
keywords, tracked numbers and 20 managers; 15 % missed; repeat callers
(about 1.6 calls per number); ring attempts for about 60 % of the calls (one
to three phones); a callback task for every missed call, most resolved
within minutes to hours; a year of daily ad spend per campaign.  Then every
report runs over the whole year, three times; the median is printed.
Target: under a second per report on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import Table, insert

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import drop_postgres, postgres_url

from pbx_tracker.reports.compute import ReportKind, compute
from pbx_tracker.reports.dimensions import Dimension, ReportScope
from pbx_tracker.reports.period import period_of
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.store.engine import make_async_engine, make_sync_engine
from pbx_tracker.store.migrate import upgrade_to, upgrade_to_head
from pbx_tracker.store.models import (
    AdSpendRow,
    CallbackTaskCallRow,
    CallbackTaskRow,
    CallRow,
    RingAttemptRow,
)

ZONE = ZoneInfo("Europe/Moscow")
FIRST_DAY = date(2025, 11, 1)
DAYS = 365
RUNS = 3
BEFORE_PREVIOUS_CALL = "0005"  # load here, then upgrade: 0006 backfills previous_call_at
SLOW_CASE_SECONDS = 20.0  # a case slower than this in total stops early (median of fewer)
SOURCES = [("yandex", "cpc", 0.4), ("google", "cpc", 0.3), ("vk", "social", 0.1)]
STATIC = [("flyer", "print", 0.1), ("radio", "offline", 0.1)]
MANAGERS = [str(101 + i) for i in range(20)]
CALL_COLUMNS = [
    "id",
    "node",
    "linkedid",
    "direction",
    "did",
    "caller",
    "source",
    "medium",
    "campaign",
    "status",
    "missed_reason",
    "answered_by",
    "started_at",
    "answered_at",
    "ended_at",
    "ring_seconds",
    "talk_seconds",
    "complete",
    "utm_term",
    "first_touch_source",
    "first_touch_medium",
    "first_touch_campaign",
    "last_touch_source",
    "last_touch_medium",
    "last_touch_campaign",
    "variables",
]
RULES = ReportRules(
    target_seconds=30, unique_days=30, model="last_touch", sla_minutes=15, zone=ZONE
)
CASES: list[tuple[str, ReportKind, list[Dimension] | None, ReportRules]] = [
    ("sources", ReportKind.SOURCES, None, RULES),
    ("sources, no window", ReportKind.SOURCES, None, replace(RULES, unique_days=None)),
    ("sources, first touch", ReportKind.SOURCES, None, replace(RULES, model="first_touch")),
    ("campaigns", ReportKind.CAMPAIGNS, None, RULES),
    ("keywords", ReportKind.KEYWORDS, None, RULES),
    ("numbers", ReportKind.NUMBERS, None, RULES),
    ("days", ReportKind.DAYS, None, RULES),
    ("days by hour", ReportKind.DAYS, [Dimension.HOUR], RULES),
    ("source x day", ReportKind.SOURCES, [Dimension.SOURCE, Dimension.DAY], RULES),
    ("managers", ReportKind.MANAGERS, None, RULES),
    ("callbacks", ReportKind.CALLBACKS, None, RULES),
]  # fmt: skip


# -- the generated year ----------------------------------------------------------------------


def _pick(rng: random.Random, weighted: list[tuple[str, str, float]]) -> tuple[str, str]:
    roll, acc = rng.random(), 0.0
    for name, medium, share in weighted:
        acc += share
        if roll < acc:
            return name, medium
    return weighted[-1][0], weighted[-1][1]


def _start(rng: random.Random) -> datetime:
    """A moment of the year, mostly in working hours (Moscow)."""
    day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
    hour = min(23, max(0, int(rng.gauss(14, 3.5))))
    local = datetime(day.year, day.month, day.day, hour, tzinfo=ZONE)
    return (local + timedelta(seconds=rng.randrange(3600))).astimezone(UTC)


def generate(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``count`` calls as row dicts, with their attempts and task.  Ids (from 1) follow
    the start times, and so does the order of the rows on disk, as calls are stored
    when they happen."""
    rng = random.Random(seed)
    callers = max(1, int(count / 1.6))
    waiting: set[str] = set()  # customers with an open task (one each at most)
    starts = sorted(_start(rng) for _ in range(count))
    for call_id, started in enumerate(starts, start=1):
        caller = f"+7916{rng.randrange(callers):07d}" if rng.random() > 0.02 else None
        pool = rng.random() < 0.8
        source, medium = _pick(rng, SOURCES if pool else STATIC)
        campaign = f"{source}-c{rng.randrange(12)}" if pool else None
        first = (_pick(rng, SOURCES)[0], campaign) if pool and rng.random() < 0.3 else None
        missed = rng.random() < 0.15
        manager = None if missed else rng.choice(MANAGERS)
        ring = rng.randrange(2, 40)
        talk = 0 if missed else int(rng.expovariate(1 / 120))
        yield {
            "id": call_id,
            "node": "pbx1",
            "linkedid": f"{call_id}.1",
            "direction": "inbound",
            "did": f"+7495111{rng.randrange(60):04d}",
            "caller": caller,
            "source": source,
            "medium": medium,
            "campaign": campaign,
            "status": "missed" if missed else "answered",
            "missed_reason": "no_answer" if missed else None,
            "answered_by": manager,
            "started_at": started,
            "answered_at": None if missed else started + timedelta(seconds=ring),
            "ended_at": started + timedelta(seconds=ring + talk),
            "ring_seconds": ring,
            "talk_seconds": talk,
            "complete": True,
            "utm_term": f"kw{rng.randrange(200)}" if pool else None,
            "first_touch_source": first[0] if first else (source if pool else None),
            "first_touch_medium": medium if pool else None,
            "first_touch_campaign": first[1] if first else campaign,
            "last_touch_source": source if pool else None,
            "last_touch_medium": medium if pool else None,
            "last_touch_campaign": campaign,
            "variables": "{}",
            "_attempts": _attempts(rng, call_id, started, manager, ring),
            "_task": _task(rng, call_id, started, caller, waiting) if missed else None,
        }


def _attempts(
    rng: random.Random, call_id: int, started: datetime, manager: str | None, ring: int
) -> list[tuple[Any, ...]]:
    if rng.random() > 0.6:
        return []
    phones = rng.sample(MANAGERS, rng.randint(1, 3))
    if manager is not None and manager not in phones:
        phones[-1] = manager
    outcomes = ("noanswer", "noanswer", "cancel", "busy", "chanunavail")
    found = []
    for phone in phones:
        outcome = "answer" if phone == manager else rng.choice(outcomes)
        ended = started + timedelta(seconds=ring)
        found.append((call_id, phone, f"PJSIP/{phone}-1", started, ended, outcome))
    return found


def _task(
    rng: random.Random, call_id: int, started: datetime, caller: str | None, waiting: set[str]
) -> tuple[Any, ...]:
    done = rng.random() < 0.9 or caller is None or caller in waiting
    if not done and caller is not None:
        waiting.add(caller)
    resolved = started + timedelta(minutes=rng.expovariate(1 / 40)) if done else None
    resolution = rng.choice(("called_back", "answered_inbound", "closed_by_manager"))
    by = rng.choice(MANAGERS)
    return (
        call_id,
        "pbx1",
        caller,
        caller is not None,
        "done" if done else "open",
        by,
        started,
        started,
        started,
        resolved,
        resolution if done else None,
        by if done else None,
        resolved or started,
    )


TASK_COLUMNS = [
    "id",
    "node",
    "customer",
    "dialable",
    "status",
    "assignee",
    "created_at",
    "first_missed_at",
    "last_missed_at",
    "resolved_at",
    "resolution",
    "resolved_by",
    "updated_at",
]
ATTEMPT_COLUMNS = ["call_id", "manager", "channel", "rang_at", "ended_at", "outcome"]


def spend_rows() -> Iterator[tuple[Any, ...]]:
    rng = random.Random(11)
    now = datetime.now(UTC)
    for offset in range(DAYS):
        day = FIRST_DAY + timedelta(days=offset)
        for source, _, _ in SOURCES:
            for campaign in range(12):
                amount = Decimal(rng.randrange(10000, 500000)) / 100
                yield (day, source, f"{source}-c{campaign}", amount, "RUB", now)


# -- loading ---------------------------------------------------------------------------------


def load_postgres(url: str, count: int) -> None:
    """COPY the generated year into the migrated database at ``url``."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        tasks: list[tuple[Any, ...]] = []
        attempts: list[tuple[Any, ...]] = []
        columns = ", ".join(CALL_COLUMNS)
        with cur.copy(f"COPY calls ({columns}) FROM STDIN") as copy:
            for row in generate(count):
                copy.write_row([row[name] for name in CALL_COLUMNS])
                attempts += row["_attempts"]
                if row["_task"]:
                    tasks.append(row["_task"])
        with cur.copy(f"COPY ring_attempts ({', '.join(ATTEMPT_COLUMNS)}) FROM STDIN") as copy:
            for attempt in attempts:
                copy.write_row(attempt)
        with cur.copy(f"COPY callback_tasks ({', '.join(TASK_COLUMNS)}) FROM STDIN") as copy:
            for task in tasks:
                copy.write_row(task)
        with cur.copy("COPY callback_task_calls (task_id, call_id) FROM STDIN") as copy:
            for task in tasks:
                copy.write_row((task[0], task[0]))
        spend = "day, source, campaign, amount, currency, imported_at"
        with cur.copy(f"COPY ad_spend ({spend}) FROM STDIN") as copy:
            for line in spend_rows():
                copy.write_row(line)
        for table in ("calls", "callback_tasks"):
            cur.execute(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")
    print(f"loaded {count} calls, {len(attempts)} ring attempts, {len(tasks)} callback tasks")


def load_sqlite(url: str, count: int) -> None:
    engine = make_sync_engine(url)
    tables = {
        name: cast(Table, model.__table__)
        for name, model in (
            ("calls", CallRow),
            ("attempts", RingAttemptRow),
            ("tasks", CallbackTaskRow),
            ("links", CallbackTaskCallRow),
            ("spend", AdSpendRow),
        )
    }
    calls, attempts, tasks = [], [], []
    for row in generate(count):
        call = {name: row[name] for name in CALL_COLUMNS} | {"variables": {}}
        calls.append(call)
        attempts += [dict(zip(ATTEMPT_COLUMNS, a, strict=True)) for a in row["_attempts"]]
        if row["_task"]:
            tasks.append(dict(zip(TASK_COLUMNS, row["_task"], strict=True)))
    spend_columns = ["day", "source", "campaign", "amount", "currency", "imported_at"]
    with engine.begin() as conn:
        conn.execute(insert(tables["calls"]), calls)
        conn.execute(insert(tables["attempts"]), attempts)
        conn.execute(insert(tables["tasks"]), tasks)
        conn.execute(
            insert(tables["links"]), [{"task_id": t["id"], "call_id": t["id"]} for t in tasks]
        )
        conn.execute(
            insert(tables["spend"]),
            [dict(zip(spend_columns, s, strict=True)) for s in spend_rows()],
        )
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    print(f"loaded {count} calls into SQLite")


# -- timing ----------------------------------------------------------------------------------


async def time_reports(url: str) -> dict[str, float]:
    engine = make_async_engine(url)
    last = FIRST_DAY + timedelta(days=DAYS - 1)
    medians: dict[str, float] = {}
    try:
        for name, kind, group_by, rules in CASES:
            period = period_of(FIRST_DAY.isoformat(), last.isoformat(), rules.zone)
            times: list[float] = []
            while len(times) < RUNS and sum(times) < SLOW_CASE_SECONDS:
                async with engine.connect() as conn:
                    scope = ReportScope.of(engine.dialect.name, rules, period)
                    began = time.perf_counter()
                    report = await compute(conn, kind, scope, group_by)
                    times.append(time.perf_counter() - began)
            medians[name] = statistics.median(times)
            runs = f", {len(times)} runs" if len(times) < RUNS else ""
            print(
                f"  {name}: {medians[name]:.3f} s ({len(report.rows)} rows{runs})", file=sys.stderr
            )
    finally:
        await engine.dispose()
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls on PostgreSQL")
    parser.add_argument("--sqlite-calls", type=int, default=100_000, help="0: no SQLite run")
    parser.add_argument("--pg", help="PostgreSQL server URL (a scratch database is created)")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    url = postgres_url(args.pg)
    if url is not None:
        try:
            upgrade_to(url, BEFORE_PREVIOUS_CALL)
            began = time.perf_counter()
            load_postgres(url, args.calls)
            print(f"PostgreSQL load: {time.perf_counter() - began:.0f} s")
            began = time.perf_counter()
            upgrade_to_head(url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")  # as autovacuum would after the backfills
            print(
                f"PostgreSQL upgrade to head (previous_call_at backfill): "
                f"{time.perf_counter() - began:.0f} s"
            )
            results[f"PostgreSQL, {args.calls:,} calls"] = asyncio.run(time_reports(url))
        finally:
            drop_postgres(url)
    if args.sqlite_calls:
        with tempfile.TemporaryDirectory() as scratch:
            sqlite_url = f"sqlite:///{Path(scratch) / 'bench.sqlite3'}"
            upgrade_to(sqlite_url, BEFORE_PREVIOUS_CALL)
            load_sqlite(sqlite_url, args.sqlite_calls)
            upgrade_to_head(sqlite_url)
            results[f"SQLite, {args.sqlite_calls:,} calls"] = asyncio.run(time_reports(sqlite_url))
    _print_table(results)


def _print_table(results: dict[str, dict[str, float]]) -> None:
    engines = list(results)
    print(f"\nmedian of {RUNS} runs over the whole year, seconds")
    print(f"{'report':<24}" + "".join(f"{name:>30}" for name in engines))
    for name, *_ in CASES:
        print(f"{name:<24}" + "".join(f"{results[e][name]:>30.3f}" for e in engines))


if __name__ == "__main__":
    main()
