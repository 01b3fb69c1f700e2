"""`pbx-tracker pool status`: each number pool's use and the size it needs, in the terminal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from rich.console import RenderableType
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.attribution.settings import AttributionSettings, NumberPool
from pbx_tracker.attribution.status import PoolStatus, pool_status
from pbx_tracker.command_error import CommandError
from pbx_tracker.store.engine import in_transaction
from pbx_tracker.terminal import as_text

__all__ = ["show_pool_status"]

_ROWS = (
    ("numbers", "size"),
    ("in use now", "in_use"),
    ("peak in use", "peak_in_use"),
    ("numbers given out", "leases_started"),
    ("fallback shown (exhausted)", "exhaustions"),
    ("new visits, busiest hour", "visits_per_hour"),
    ("minutes on site (median)", "minutes_on_site"),
    ("hold minutes", "hold_minutes"),
    ("recommended size", "recommended_size"),
    ("calls", "calls"),
)


async def show_pool_status(
    database_url: str,
    number_pools: Sequence[NumberPool],
    attribution: AttributionSettings,
    *,
    pool: str | None,
    hours: float,
    fmt: str,
    now: datetime,
) -> str:
    """The status of every pool (or ``pool``) over the last ``hours``, as a table or JSON."""
    if not number_pools:
        raise CommandError("no number pools in the config (number_pools:)")
    pools = [p for p in number_pools if pool is None or p.name == pool]
    if not pools:
        known = ", ".join(p.name for p in number_pools)
        raise CommandError(f"unknown pool {pool!r} (pools: {known})")
    since = now - timedelta(hours=hours)

    async def work(conn: AsyncConnection) -> list[PoolStatus]:
        return [await pool_status(conn, p, attribution, since=since, now=now) for p in pools]

    found = await in_transaction(database_url, work)
    if fmt == "json":
        return json.dumps([status.to_json() for status in found], ensure_ascii=False, indent=2)
    return "\n".join(_table(status, hours) for status in found)


def _table(status: PoolStatus, hours: float) -> str:
    table = Table(
        title=f"Pool {status.pool}, last {hours:g} h", title_justify="left", show_header=False
    )
    table.add_column("")
    table.add_column("", justify="right")
    for label, field in _ROWS:
        table.add_row(label, str(getattr(status, field)))
    for method, count in sorted(status.calls_by_method.items()):
        table.add_row(f"  {method}", str(count))
    if status.unattributed_share is not None:
        table.add_row("without a single visit", f"{status.unattributed_share:.0%}")
    shown: list[RenderableType] = [table]
    if status.size < status.recommended_size:
        missing = status.recommended_size - status.size
        shown.append(f"The pool is smaller than its traffic needs: add {missing} numbers.")
    if status.warning:
        shown.append(f"warning: {status.warning}")
    return as_text(*shown, width=100)
