"""Where each node's reading of the CEL log stands, kept in the database (table
``cel_positions``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.cel.reading import Position
from pbx_tracker.store.engine import dialect_insert
from pbx_tracker.store.models import CelPositionRow

__all__ = ["StoredPositions"]

positions_table = cast(Table, CelPositionRow.__table__)


class StoredPositions:
    """The read position of one node's CEL log (``source``: the file, or ``table:<name>``)."""

    def __init__(self, engine: AsyncEngine, node: str, source: str) -> None:
        self.engine = engine
        self.node = node
        self.source = source

    async def load(self) -> Position | None:
        p = positions_table.c
        query = select(p.identity, p.fingerprint, p.byte_offset).where(
            p.node == self.node, p.source == self.source
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None or row.identity is None:
            return None
        return Position(row.identity, int(row.byte_offset), row.fingerprint or "")

    async def save(self, position: Position | None) -> None:
        if position is None:
            return
        values = {
            "node": self.node,
            "source": self.source,
            "identity": position.identity,
            "fingerprint": position.fingerprint,
            "byte_offset": position.offset,
            "updated_at": datetime.now(UTC),
        }
        async with self.engine.begin() as conn:
            insert = dialect_insert(conn)(positions_table).values(values)
            changes = {k: v for k, v in values.items() if k not in ("node", "source")}
            upsert = insert.on_conflict_do_update(index_elements=["node", "source"], set_=changes)
            await conn.execute(upsert)
