"""Reading `cel_pgsql`'s table instead of the CSV file (``cel.table`` in the config).

`cel_pgsql` writes one row per record with a serial ``id``; the read position is
the ``id`` to start from (`Position.offset`; identity ``table:<name>``).  The
event time is a timestamp: naive ones are Asterisk's local time (cel_pgsql's
default), like a ``dateformat`` in the CSV.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.cel.log import CelRow, parse_extra, parse_time
from pbx_tracker.cel.reading import Chunk, Position

__all__ = ["READ_ROWS", "cel_table", "read_table", "table_end"]

_BATCH = 20_000
READ_ROWS = 40_000  # rows of the table one read takes (about 500 calls)


def cel_table(name: str) -> Table:
    """The columns of cel_pgsql's table that pbx-tracker reads."""
    text = [
        "eventtype",
        "cid_name",
        "cid_num",
        "exten",
        "context",
        "channame",
        "appname",
        "appdata",
        "uniqueid",
        "linkedid",
        "peer",
        "extra",
    ]
    columns = [Column(column, String) for column in text]
    return Table(
        name,
        MetaData(),
        Column("id", BigInteger, primary_key=True),
        Column("eventtime", String),
        *columns,
    )


async def read_table(
    engine: AsyncEngine, name: str, position: Position | None, limit: int = READ_ROWS
) -> Chunk:
    """The rows from ``position`` on (all of them the first time), in id order, ``limit``
    rows at most (`Chunk.more` says there are more)."""
    table = cel_table(name)
    start = position.offset if position is not None else 0
    chunk = Chunk()
    last = start - 1
    async with engine.connect() as conn:
        while len(chunk.rows) + len(chunk.bad_lines) < limit:
            batch = min(_BATCH, limit - len(chunk.rows) - len(chunk.bad_lines))
            query = select(table).where(table.c.id > last).order_by(table.c.id).limit(batch)
            rows = (await conn.execute(query)).mappings().all()
            for row in rows:
                last = int(row["id"])
                _take(chunk, name, row)
            if len(rows) < batch:
                break
        else:
            chunk.more = True
    chunk.end = Position(f"table:{name}", last + 1, "")
    return chunk


async def table_end(engine: AsyncEngine, name: str) -> Position:
    """The position after the table's last row."""
    table = cel_table(name)
    async with engine.connect() as conn:
        last = (await conn.execute(select(func.max(table.c.id)))).scalar()
    return Position(f"table:{name}", int(last or 0) + 1, "")


def _take(chunk: Chunk, name: str, row: Any) -> None:
    here = Position(f"table:{name}", int(row["id"]), "")
    try:
        cel = CelRow(
            event=str(row["eventtype"] or ""),
            time=_time(row["eventtime"]),
            caller_name=row["cid_name"] or "",
            caller_number=row["cid_num"] or "",
            exten=row["exten"] or "",
            context=row["context"] or "",
            channel=row["channame"] or "",
            app=row["appname"] or "",
            app_data=row["appdata"] or "",
            uniqueid=row["uniqueid"] or "",
            linkedid=row["linkedid"] or "",
            peer=row["peer"] or "",
            extra=parse_extra(row["extra"]),
        )
    except ValueError as error:
        chunk.bad_lines.append(f"{name} id {here.offset}: {error}")
        return
    if not cel.event or not cel.uniqueid or not cel.linkedid:
        chunk.bad_lines.append(f"{name} id {here.offset}: not a CEL record")
        return
    chunk.rows.append((here, cel))


def _time(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()  # naive: local time, as Asterisk wrote it
    return parse_time(str(value))
