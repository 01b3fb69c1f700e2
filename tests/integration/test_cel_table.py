"""Reading cel_pgsql's table instead of the CSV file: the same calls, each once, from
where the last read stopped (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.calls.correlator import Topology
from pbx_tracker.cel.recovery import recover
from pbx_tracker.cel.table import read_table, table_end
from pbx_tracker.store.engine import make_async_engine
from traces import TRACES

CEL = TRACES / "cel"
TOPOLOGY = Topology()
HOUR = 3600.0
COLUMNS = [
    "eventtype", "eventtime", "cid_name", "cid_num", "cid_ani", "cid_rdnis", "cid_dnid",
    "exten", "context", "channame", "appname", "appdata", "amaflags", "accountcode",
    "uniqueid", "linkedid", "peer", "userfield", "userdeftype", "extra",
]  # fmt: skip
TEXT = [c for c in COLUMNS if c not in ("eventtime", "amaflags")]


def cel_pgsql_table() -> Table:
    """The table cel_pgsql writes (Asterisk's contrib schema): a serial id and the fields."""
    return Table(
        "cel",
        MetaData(),
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("eventtime", DateTime(timezone=False)),
        Column("amaflags", Integer),
        *(Column(name, String(512)) for name in TEXT),
    )


def rows_of(stem: str) -> list[dict[str, object]]:
    """A capture's CEL records as cel_pgsql stores them (local naive times)."""
    text = (CEL / f"{stem}.cel.csv").read_text(encoding="utf-8")
    rows = []
    for values in csv.reader(io.StringIO(text)):
        row: dict[str, object] = dict(zip(COLUMNS, values, strict=True))
        row["eventtime"] = datetime.fromtimestamp(float(values[1]))
        row["amaflags"] = int(values[12] or 0)
        rows.append(row)
    return rows


@pytest.fixture(name="cel_database")
async def _cel_database(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(cel_pgsql_table().metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


async def store(engine: AsyncEngine, stem: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(cel_pgsql_table()), rows_of(stem))


async def test_the_table_gives_the_calls_of_the_file_each_once(cel_database: AsyncEngine) -> None:
    """Calls logged to cel_pgsql's table are recovered like the file's, and a second read
    only finds the calls logged after the first."""
    await store(cel_database, "11_concurrent")
    first = recover(
        await read_table(cel_database, "cel", None), Topology(), "/m", longest_call=3600
    )
    await store(cel_database, "06_ringgroup")
    chunk = await read_table(cel_database, "cel", first.position)
    second = recover(chunk, Topology(), "/m", longest_call=3600)
    again = await read_table(cel_database, "cel", second.position)
    assert len(first.records) == 5
    assert [(r.caller, r.status, r.answered_by) for r in second.records] == [
        ("79161234506", "answered", "102")
    ]
    assert again.rows == []


async def test_the_table_is_read_a_part_at_a_time_and_ends_after_its_last_row(
    cel_database: AsyncEngine,
) -> None:
    """A long table is read in parts that together are all of it; a first start begins
    after its last row, so only the calls logged later are recovered."""
    await store(cel_database, "11_concurrent")
    end = await table_end(cel_database, "cel")
    whole = await read_table(cel_database, "cel", None)
    rows, position = [], None
    while True:
        chunk = await read_table(cel_database, "cel", position, limit=25)
        rows += [row for _, row in chunk.rows]
        position = chunk.end
        if not chunk.more:
            break
    await store(cel_database, "06_ringgroup")
    later = recover(await read_table(cel_database, "cel", end), TOPOLOGY, "/m", longest_call=HOUR)
    assert rows == [row for _, row in whole.rows] and len(rows) > 50
    assert end == whole.end
    assert [r.caller for r in later.records] == ["79161234506"]
