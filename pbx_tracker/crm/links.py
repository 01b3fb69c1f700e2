"""`StoredLinks`: what one platform keeps of each call between its events, in the
``crm_links`` table (one JSON object per target and call), so a restart or a
second daemon on the same database carries on where the first left off."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.store.engine import dialect_insert
from pbx_tracker.store.models import CrmLinkRow

__all__ = ["StoredLinks", "links_table"]

links_table = cast(Table, CrmLinkRow.__table__)


class StoredLinks:
    """The `pbx_tracker.crm.platform.Links` of ``target``, kept in the database."""

    def __init__(
        self,
        engine: AsyncEngine,
        target: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._target = target
        self._clock = clock

    async def get(self, call_key: str) -> dict[str, Any] | None:
        c = links_table.c
        query = select(c.data).where(c.target == self._target, c.call_key == call_key)
        async with self._engine.connect() as conn:
            data = (await conn.execute(query)).scalar_one_or_none()
        return dict(data) if isinstance(data, dict) else None

    async def put(self, call_key: str, data: dict[str, Any]) -> None:
        values = {
            "target": self._target,
            "call_key": call_key,
            "data": data,
            "updated_at": self._clock(),
        }
        async with self._engine.begin() as conn:
            statement = (
                dialect_insert(conn)(links_table)
                .values(values)
                .on_conflict_do_update(
                    index_elements=[links_table.c.target, links_table.c.call_key],
                    set_={"data": data, "updated_at": values["updated_at"]},
                )
            )
            await conn.execute(statement)

    async def keys(self, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        """Every call this target keeps something of (``call_key`` starting with ``prefix``)."""
        c = links_table.c
        query = select(c.call_key, c.data).where(
            c.target == self._target, c.call_key.startswith(prefix, autoescape=True)
        )
        async with self._engine.connect() as conn:
            return [(row.call_key, dict(row.data)) for row in (await conn.execute(query)).all()]
