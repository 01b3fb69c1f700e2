"""Website visits and the pool numbers they were shown (dynamic number pools)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from pbx_tracker.store.models.base import Base

URL_LENGTH = 2048
LABEL_LENGTH = 256
LIVE_LEASE = "released_at IS NULL"


class VisitRow(Base):
    """A website visit (session) shown a pool number: where it came from and who it is.

    ``id`` is unguessable (``secrets.token_urlsafe(16)``, made by the caller);
    ``visitor_id`` is the browser's first-party id, the same across visits.
    """

    __tablename__ = "visits"
    __table_args__ = (
        Index("ix_visits_visitor_id_started_at", "visitor_id", "started_at"),
        Index("ix_visits_pool_started_at", "pool", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    pool: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    landing_page: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    referrer: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    utm_source: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    utm_medium: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    utm_campaign: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    utm_term: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    utm_content: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    gclid: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    yclid: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    fbclid: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    ga_client_id: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    ym_client_id: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    visitor_id: Mapped[str | None] = mapped_column(String(64))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))


class NumberLeaseRow(Base):
    """A pool number (DID) shown to one visit from ``started_at``; ``released_at`` NULL
    while live.  At most one live lease per DID (a partial unique index).

    "Who held DID X at t" uses two bounded index range scans (see
    pbx_tracker.attribution.visits): the latest lease started by t on
    (did, started_at), and the leases released within the grace before t on
    (did, released_at).
    """

    __tablename__ = "number_leases"
    __table_args__ = (
        Index("ix_number_leases_did_started_at", "did", "started_at"),
        Index("ix_number_leases_did_released_at", "did", "released_at"),
        Index("ix_number_leases_visit_id", "visit_id"),
        Index(
            "uq_number_leases_live_did",
            "did",
            unique=True,
            sqlite_where=text(LIVE_LEASE),
            postgresql_where=text(LIVE_LEASE),
        ),
        Index(
            "ix_number_leases_live_pool",
            "pool",
            sqlite_where=text(LIVE_LEASE),
            postgresql_where=text(LIVE_LEASE),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pool: Mapped[str] = mapped_column(String(64))
    did: Mapped[str] = mapped_column(String(32))
    visit_id: Mapped[str] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"))
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    released_at: Mapped[datetime | None]


class PoolStatsRow(Base):
    """Use of one number pool in one hour: leases started, exhaustions, peak numbers in use."""

    __tablename__ = "pool_stats"

    pool: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    leases_started: Mapped[int] = mapped_column(Integer, server_default="0")
    exhaustions: Mapped[int] = mapped_column(Integer, server_default="0")
    peak_in_use: Mapped[int] = mapped_column(Integer, server_default="0")
