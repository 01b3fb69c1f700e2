"""Website visits, the pool-number leases shown to them, and pool use, as the store keeps them.

The records the functions of `visits` (SQLAlchemy), `visit_sql` (plain SQL)
and `visit_batches` take and give, and the tables they live in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Row, Table

from pbx_tracker.attribution.pool import Lease
from pbx_tracker.store.models import NumberLeaseRow, PoolStatsRow, VisitRow

__all__ = [
    "PoolUsage",
    "PoolUse",
    "StoredLease",
    "Visit",
    "hour_of",
    "leases_table",
    "stats_table",
    "stored_lease",
    "visits_table",
]

visits_table = cast(Table, VisitRow.__table__)
leases_table = cast(Table, NumberLeaseRow.__table__)
stats_table = cast(Table, PoolStatsRow.__table__)


@dataclass(frozen=True, slots=True)
class Visit:
    """A website visit: where it landed, where it came from, its click and analytics ids."""

    id: str
    pool: str
    started_at: datetime
    last_seen_at: datetime
    landing_page: str | None = None
    referrer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    gclid: str | None = None
    yclid: str | None = None
    fbclid: str | None = None
    ga_client_id: str | None = None
    ym_client_id: str | None = None
    visitor_id: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class StoredLease:
    """A stored lease: `pool.Lease` plus its row id and pool."""

    id: int
    pool: str
    did: str
    visit_id: str
    started_at: datetime
    last_seen_at: datetime
    released_at: datetime | None

    def lease(self) -> Lease:
        """The allocator's view of it (to rebuild a `PoolAllocator`)."""
        return Lease(self.did, self.visit_id, self.started_at, self.last_seen_at, self.released_at)


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """Use of a pool since a given hour."""

    live: int
    peak_in_use: int
    leases_started: int
    exhaustions: int


@dataclass(frozen=True, slots=True)
class PoolUse:
    """What `record_pool_use` adds for one hour (``at``: any time in it)."""

    at: datetime
    leases_started: int = 0
    exhaustions: int = 0
    in_use: int = 0


def hour_of(at: datetime) -> datetime:
    """The start of the UTC hour ``at`` falls in: the key of ``pool_stats``."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def stored_lease(row: Row[Any]) -> StoredLease:
    """The lease of a ``number_leases`` row."""
    return StoredLease(**row._asdict())
