"""The outbox: events waiting for (or done with) the CRMs and messengers, and what each
platform keeps of a call between its events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from pbx_tracker.store.models.base import Base

PENDING_DELIVERY = "delivered_at IS NULL AND failed_at IS NULL"


class CrmOutboxRow(Base):
    """A call event for the CRM webhook, written with the call, deleted never (the
    delivered time and tries stay as the delivery log); `pbx_tracker.crm.outbox`."""

    __tablename__ = "crm_outbox"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("ix_crm_outbox_target_call_key_id", "target", "call_key", "id"),
        Index(
            "ix_crm_outbox_pending_next_attempt_at",
            "next_attempt_at",
            sqlite_where=text(PENDING_DELIVERY),
            postgresql_where=text(PENDING_DELIVERY),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[str] = mapped_column(String(32), server_default="webhook")
    call_key: Mapped[str] = mapped_column(String(160))
    event: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class CrmLinkRow(Base):
    """What one platform (``target``) keeps of one call between its events, e.g.
    Bitrix24's ``CALL_ID`` and the steps done; `pbx_tracker.crm.links`."""

    __tablename__ = "crm_links"
    __table_args__ = (UniqueConstraint("target", "call_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[str] = mapped_column(String(32))
    call_key: Mapped[str] = mapped_column(String(160))
    data: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]
