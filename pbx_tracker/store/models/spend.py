"""Money spent on advertising, per day and source or campaign."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    Date,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pbx_tracker.store.models.base import Base

WHOLE_SOURCE = "campaign IS NULL"


class AdSpendRow(Base):
    """Money spent on a source (``campaign`` NULL: the whole source) or on one of its
    campaigns on one day, as imported by ``pbx-tracker spend import``.

    One row per (day, source, campaign): a unique constraint for campaigns, a
    partial unique index for whole sources (NULLs are distinct in the former).
    """

    __tablename__ = "ad_spend"
    __table_args__ = (
        UniqueConstraint("day", "source", "campaign"),
        Index(
            "uq_ad_spend_day_source_whole",
            "day",
            "source",
            unique=True,
            sqlite_where=text(WHOLE_SOURCE),
            postgresql_where=text(WHOLE_SOURCE),
        ),
        CheckConstraint("amount >= 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(255))
    campaign: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    imported_at: Mapped[datetime]
