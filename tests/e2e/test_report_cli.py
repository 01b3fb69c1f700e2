"""`pbx-tracker report …` and `pbx-tracker spend import` as a marketer runs them.

Each command is `python -m pbx_tracker …` in a subprocess with a config file
written by the test (the `migrated_url` database: SQLite and PostgreSQL), on
a small data set (Moscow time, the report zone):

    call  start (2026-11-02)  caller  source       campaign  status    by   ring  talk
    k1    09:00               A       yandex       brand     answered  101    10    90
    k2    10:00               B       yandex       brand     missed    -      20     0
    k3    11:00               A       google       -         answered  102     6    20
    k4    2026-11-03 00:30    C       yandex       brand     answered  101     4    40

k2 rang 101 (noanswer) and opened a callback task, called back by 101 at 10:12.
The tests check what the user sees: stdout, the one-line error, the exit code.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from cli_runner import Cli
from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.store.models import (
    AdSpendRow,
    CallbackTaskCallRow,
    CallbackTaskRow,
    CallRow,
    RingAttemptRow,
)

pytestmark = pytest.mark.slow

MOSCOW = ZoneInfo("Europe/Moscow")
SPEND_CSV = """date,source,campaign,amount
2026-11-02,yandex,brand,"1000,50"
2026-11-02,google,,300
2026-11-03,yandex,brand,499.50
"""
calls_table = cast(Table, CallRow.__table__)
spend_table = cast(Table, AdSpendRow.__table__)


def moscow(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=MOSCOW).astimezone(UTC)


def _call(name: str, start: datetime, caller: str, source: str, campaign: str | None,
          by: str | None, ring: int, talk: int) -> dict[str, Any]:  # fmt: skip
    return {
        "node": "pbx1",
        "linkedid": name,
        "direction": "inbound",
        "did": "+74951110001" if source == "yandex" else "+74951110002",
        "caller": caller,
        "source": source,
        "medium": "cpc",
        "campaign": campaign,
        "status": "missed" if by is None else "answered",
        "answered_by": by,
        "started_at": start,
        "answered_at": None if by is None else start + timedelta(seconds=ring),
        "ended_at": start + timedelta(seconds=ring + talk),
        "ring_seconds": ring,
        "talk_seconds": talk,
        "complete": True,
        "variables": {},
    }


async def seed(engine: AsyncEngine) -> None:
    calls = [
        _call("k1", moscow(2, 9), "+79160000001", "yandex", "brand", "101", 10, 90),
        _call("k2", moscow(2, 10), "+79160000002", "yandex", "brand", None, 20, 0),
        _call("k3", moscow(2, 11), "+79160000001", "google", None, "102", 6, 20),
        _call("k4", moscow(3, 0, 30), "+79160000003", "yandex", "brand", "101", 4, 40),
    ]
    async with engine.begin() as conn:
        ids = []
        for row in calls:
            statement = insert(calls_table).values(row).returning(calls_table.c.id)
            ids.append(int((await conn.execute(statement)).scalar_one()))
        attempt = {
            "call_id": ids[1],
            "manager": "101",
            "channel": "PJSIP/101-01",
            "rang_at": moscow(2, 10),
            "ended_at": moscow(2, 10) + timedelta(seconds=20),
            "outcome": "noanswer",
        }
        await conn.execute(insert(cast(Table, RingAttemptRow.__table__)).values(attempt))
        task = {
            "node": "pbx1",
            "customer": "+79160000002",
            "dialable": True,
            "status": "done",
            "assignee": "101",
            "created_at": moscow(2, 10),
            "first_missed_at": moscow(2, 10),
            "last_missed_at": moscow(2, 10),
            "first_call_id": ids[1],
            "resolved_at": moscow(2, 10, 12),
            "resolution": "called_back",
            "resolved_by": "101",
            "updated_at": moscow(2, 10, 12),
        }
        tasks = cast(Table, CallbackTaskRow.__table__)
        task_id = (await conn.execute(insert(tasks).values(task).returning(tasks.c.id))).scalar()
        links = cast(Table, CallbackTaskCallRow.__table__)
        await conn.execute(insert(links).values(task_id=task_id, call_id=ids[1]))


def write_config(tmp_path: Path, database_url: str) -> Path:
    config = {
        "node": "pbx1",
        "ami": {"secret": "unused"},
        "database": {"url": database_url, "spill_path": str(tmp_path / "spill.jsonl")},
        "calls": {"target_seconds": 30},
        "managers": [
            {"name": "Anna", "extension": "101"},
            {"name": "Boris", "extension": "102"},
        ],
        "routing": {"timezone": "Europe/Moscow"},
        "callbacks": {"sla_minutes": 15},
        "logging": {"level": "error", "format": "json"},
    }
    path = tmp_path / "pbx-tracker.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture
async def cli(tmp_path: Path, engine: AsyncEngine, migrated_url: str) -> Cli:
    await seed(engine)
    return Cli(write_config(tmp_path, migrated_url))


async def spend_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(spend_table))).scalar_one())


PERIOD = ("--from", "2026-11-02", "--to", "2026-11-03")


async def test_spend_import_then_a_table_for_people(cli: Cli, tmp_path: Path) -> None:
    """spend import says how many rows it imported for which days, and report sources then shows
    each source's figures with money grouped by thousands and the report zone in the heading."""
    spend = tmp_path / "spend.csv"
    spend.write_text(SPEND_CSV)
    assert await cli.ok("spend", "import", str(spend)) == (
        f"3 ad spend rows imported from {spend} for 2026-11-02 to 2026-11-03\n"
    )
    out = await cli.ok("report", "sources", *PERIOD)
    lines = out.splitlines()
    assert "Europe/Moscow" in lines[0]
    assert "target call ≥ 30 s" in out
    yandex = next(line for line in lines if line.strip().startswith("│ yandex"))
    # 3 calls, 3 callers, all first-time, no spam, target k1 k4, 1 missed = 33.3%, waits
    # 10 and 4 s
    # -> 0:07, talk 130 s, cost 1000.50 + 499.50 = 1 500.00, per call 500.00, per
    # target 750.00, per lead 500.00
    cells = [cell.strip() for cell in yandex.strip("│ ").split("│")]
    assert cells == [
        "yandex", "3", "3", "3", "0", "2", "2", "1", "33.3%", "0:07", "0:02:10",
        "1 500.00", "500.00", "750.00", "500.00",
    ]  # fmt: skip
    total = next(line for line in lines if "Total" in line)
    assert "1 800.00" in total  # 1500 + google's 300


async def test_csv_and_json_carry_raw_numbers(cli: Cli, tmp_path: Path) -> None:
    """The CSV and JSON forms of a report carry raw numbers for scripts, with the period given in
    UTC and the days cut in the report zone."""
    spend = tmp_path / "spend.csv"
    spend.write_text(SPEND_CSV)
    await cli.ok("spend", "import", str(spend))
    out = await cli.ok("report", "campaigns", *PERIOD, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    brand = next(row for row in table if row["campaign"] == "brand")
    assert (brand["source"], brand["calls"], brand["missed_rate"]) == ("yandex", "3", "0.333333")
    assert (brand["cost"], brand["cost_per_call"]) == ("1500.0", "500.0")
    google = next(row for row in table if row["source"] == "google")
    assert (google["campaign"], google["cost"]) == ("", "300.0")

    document = json.loads(await cli.ok("report", "days", *PERIOD, "--format", "json"))
    assert document["timezone"] == "Europe/Moscow"
    assert document["from"] == "2026-11-01T21:00:00Z"  # Moscow midnight
    assert document["to"] == "2026-11-03T21:00:00Z"
    assert [(row["day"], row["calls"]) for row in document["rows"]] == [
        ("2026-11-02", 3),
        ("2026-11-03", 1),  # k4 at 00:30 Moscow is still the 2nd in UTC
    ]
    assert document["total"]["unique_callers"] == 3
    assert document["total"]["callbacks_in_sla"] == 1  # k2's task, 12 minutes


async def test_csv_writes_text_from_outside_as_text_never_a_formula(
    cli: Cli, engine: AsyncEngine
) -> None:
    """A UTM tag stored through the public visits API starts its cell with a quote, as
    OWASP's CSV Injection page advises; the numbers stay plain numbers."""
    link = '=HYPERLINK("http://evil.example/","click")'
    hostile = _call("k5", moscow(2, 12), "+79160000005", link, "-brand", "102", 5, 60)
    async with engine.begin() as conn:
        await conn.execute(insert(calls_table).values(hostile))
    out = await cli.ok("report", "campaigns", *PERIOD, "--format", "csv")
    header, *rows = csv.reader(io.StringIO(out))
    table = [dict(zip(header, row, strict=True)) for row in rows]
    evil = next(row for row in table if row["source"].endswith(link))
    assert (evil["source"], evil["campaign"]) == (f"'{link}", "'-brand")
    assert (evil["calls"], evil["talk_seconds"], evil["wait_seconds"]) == ("1", "60", "5.0")
    sources = await cli.ok("report", "sources", *PERIOD, "--format", "csv")
    assert f"'{link}" in [row[0] for row in csv.reader(io.StringIO(sources))]


async def test_managers_and_callbacks_tables(cli: Cli) -> None:
    """report managers shows each manager's answered calls, calls missed while free, talk and
    callbacks, and report callbacks by source shows tasks done within the SLA."""
    out = await cli.ok("report", "managers", *PERIOD)
    anna = next(line for line in out.splitlines() if "101 Anna" in line)
    cells = [cell.strip() for cell in anna.strip("│ ").split("│")]
    # answered k1 k4, missed while free k2, no answer speed (no "answer" leg), talk 130 s,
    # 1 callback, done, 12.0 minutes
    assert cells == ["101 Anna", "2", "1", "—", "0:02:10", "1", "1", "12.0"]
    out = await cli.ok("report", "callbacks", *PERIOD, "--group-by", "source")
    yandex = next(line for line in out.splitlines() if line.strip().startswith("│ yandex"))
    assert [cell.strip() for cell in yandex.strip("│ ").split("│")] == [
        "yandex", "3", "1", "33.3%", "1", "1", "1", "100.0%", "12.0",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("--from", "2026-13-01", "--to", "2026-11-03"),
            "error: --from '2026-13-01': write a date (2026-11-01) or a date and time "
            "(2026-11-01T09:30)",
        ),
        (
            ("--from", "2026-11-03", "--to", "2026-11-02"),
            "error: --to 2026-11-02 is not after --from 2026-11-03: the period is empty",
        ),
        (
            (*PERIOD, "--group-by", "source,colour"),
            "error: --group-by 'colour' is unknown: use source, medium, campaign, keyword, "
            "number, manager, day, hour",
        ),
    ],
)
async def test_bad_input_is_one_line(cli: Cli, args: tuple[str, ...], error: str) -> None:
    """A bad date, an empty period or an unknown --group-by exits 1 with one line saying what to
    write."""
    assert await cli.fails("report", "sources", *args) == error


async def test_a_bad_spend_line_stores_nothing(
    cli: Cli, tmp_path: Path, engine: AsyncEngine
) -> None:
    """A spend file with a bad amount, a wrong header or a bad date exits 1 with one line naming the
    file and line, and stores nothing; a missing file says it cannot be read."""
    spend = tmp_path / "spend.csv"
    spend.write_text(SPEND_CSV + "2026-11-04,yandex,brand,12.345\n")
    assert await cli.fails("spend", "import", str(spend)) == (
        f"error: {spend} line 5: amount '12.345' is not a sum of money (write 1234.50 or "
        "1234,50, at most two decimals)"
    )
    assert await spend_rows(engine) == 0
    spend.write_text("day,source,amount\n2026-11-02,yandex,5\n")
    assert await cli.fails("spend", "import", str(spend)) == (
        f"error: {spend} line 1: the header must be date,source,campaign,amount[,currency], "
        "not day,source,amount"
    )
    spend.write_text("date;source;campaign;amount\n2026-11-02;yandex;;1 000,00\n02.11.2026;x;;1\n")
    assert await cli.fails("spend", "import", str(spend)) == (
        f"error: {spend} line 3: date '02.11.2026' is not a day written YYYY-MM-DD"
    )
    assert await spend_rows(engine) == 0
    assert await cli.fails("spend", "import", str(tmp_path / "missing.csv")) == (
        f"error: {tmp_path / 'missing.csv'}: cannot read: No such file or directory"
    )


async def test_semicolons_and_a_reimport(cli: Cli, tmp_path: Path, engine: AsyncEngine) -> None:
    """A spend file with semicolons and a comma decimal is read, and importing the same day again
    replaces its amount and currency."""
    spend = tmp_path / "spend.csv"
    spend.write_text("date;source;campaign;amount;currency\n2026-11-02;yandex;;1 000,00;\n")
    assert (await cli.ok("spend", "import", str(spend))).startswith("1 ad spend rows imported")
    spend.write_text("date;source;campaign;amount;currency\n2026-11-02;yandex;;250;RUB\n")
    await cli.ok("spend", "import", str(spend))
    assert await spend_rows(engine) == 1
    document = json.loads(await cli.ok("report", "sources", *PERIOD, "--format", "json"))
    yandex = next(row for row in document["rows"] if row["source"] == "yandex")
    assert (yandex["cost"], document["currency"]) == (250.0, "RUB")
