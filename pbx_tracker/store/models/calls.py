"""The calls: inbound calls on tracked numbers with the phones that rang for them,
and the calls managers placed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pbx_tracker.store.models.base import Base, utc_now

SPAM_CALL = "spam"
MISSED_CALL = "status = 'missed'"
# the conversations that end a manager's idle time (store/last_calls.py, migration 0013)
ANSWERED_CALL = "status = 'answered'"
TRANSFERRED_CALL = "status = 'answered' AND transferred_to IS NOT NULL"
# What a report reads of a missed call that opened a callback task (its start and
# every label it may be grouped by): on PostgreSQL the index on missed calls carries
# them, so the callback figures read a small index instead of a year of calls.
MISSED_CALL_LABELS = (
    "started_at",
    "source",
    "medium",
    "campaign",
    "first_touch_source",
    "first_touch_medium",
    "first_touch_campaign",
    "last_touch_source",
    "last_touch_medium",
    "last_touch_campaign",
    "utm_term",
    "did",
)


class CallRow(Base):
    """One inbound call on a tracked number (CallRecord, direction inbound)."""

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("node", "linkedid"),
        CheckConstraint("status IN ('answered', 'missed')", name="status"),
        CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),
        Index("ix_calls_caller_started_at", "caller", "started_at"),
        Index("ix_calls_did_started_at", "did", "started_at"),
        Index("ix_calls_started_at", "started_at"),
        Index("ix_calls_session_id", "session_id"),
        Index(
            "ix_calls_spam_started_at",
            "started_at",
            sqlite_where=text(SPAM_CALL),
            postgresql_where=text(SPAM_CALL),
        ),
        Index(
            "ix_calls_missed_labels",
            "id",
            sqlite_where=text(MISSED_CALL),
            postgresql_where=text(MISSED_CALL),
            postgresql_include=list(MISSED_CALL_LABELS),
        ),
        Index(
            "ix_calls_answered_by_ended_at",
            "answered_by",
            "ended_at",
            sqlite_where=text(ANSWERED_CALL),
            postgresql_where=text(ANSWERED_CALL),
        ),
        Index(
            "ix_calls_transferred_to_ended_at",
            "transferred_to",
            "ended_at",
            sqlite_where=text(TRANSFERRED_CALL),
            postgresql_where=text(TRANSFERRED_CALL),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(64))
    linkedid: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(16), server_default="inbound")
    did: Mapped[str | None] = mapped_column(String(32))
    caller: Mapped[str | None] = mapped_column(String(32))
    caller_name: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(255))
    medium: Mapped[str | None] = mapped_column(String(255))
    campaign: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    missed_reason: Mapped[str | None] = mapped_column(String(32))
    answered_by: Mapped[str | None] = mapped_column(String(64))
    transferred_to: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime]
    ring_seconds: Mapped[int] = mapped_column(Integer)
    talk_seconds: Mapped[int] = mapped_column(Integer)
    recording_path: Mapped[str | None] = mapped_column(Text)
    first_time_caller: Mapped[bool | None] = mapped_column(Boolean)
    previous_call_at: Mapped[datetime | None]  # set by triggers (migration 0006)
    is_target: Mapped[bool | None] = mapped_column(Boolean)
    complete: Mapped[bool] = mapped_column(Boolean)
    session_id: Mapped[str | None] = mapped_column(String(64))
    utm_source: Mapped[str | None] = mapped_column(String(256))
    utm_medium: Mapped[str | None] = mapped_column(String(256))
    utm_campaign: Mapped[str | None] = mapped_column(String(256))
    utm_term: Mapped[str | None] = mapped_column(String(256))
    utm_content: Mapped[str | None] = mapped_column(String(256))
    attribution_method: Mapped[str | None] = mapped_column(String(16))
    attribution_confidence: Mapped[float | None] = mapped_column(Float)
    attribution: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    first_touch_source: Mapped[str | None] = mapped_column(String(255))
    first_touch_medium: Mapped[str | None] = mapped_column(String(255))
    first_touch_campaign: Mapped[str | None] = mapped_column(String(255))
    last_touch_source: Mapped[str | None] = mapped_column(String(255))
    last_touch_medium: Mapped[str | None] = mapped_column(String(255))
    last_touch_campaign: Mapped[str | None] = mapped_column(String(255))
    variables: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    # spam (migration 0008): true = left out of leads and callbacks now; spam_reason is
    # blocked | hidden | repeat | manual while spam, NULL otherwise; spam_changed_by/_at:
    # the last manager who marked or unmarked it (a re-saved call keeps their decision)
    spam: Mapped[bool] = mapped_column(Boolean, server_default=false())
    spam_reason: Mapped[str | None] = mapped_column(String(16))
    spam_changed_by: Mapped[str | None] = mapped_column(String(64))
    spam_changed_at: Mapped[datetime | None]
    # seconds the answering manager's phone rang before they took it (migration 0009)
    answer_seconds: Mapped[float | None] = mapped_column(Float)
    # "cel" for a call rebuilt from Asterisk's CEL log (migration 0014), NULL when heard live
    recovered_from: Mapped[str | None] = mapped_column(String(16))
    # how the first party who answered was reached (migration 0012): answered_via is
    # device | number; answered_number the external number (E.164), or the device no
    # manager declared; transfer_wait_seconds: after the first answer, connected to nobody
    answered_via: Mapped[str | None] = mapped_column(String(16))
    answered_number: Mapped[str | None] = mapped_column(String(64))
    transfer_wait_seconds: Mapped[int] = mapped_column(Integer, server_default="0")


class RingAttemptRow(Base):
    """One phone that rang for an inbound call (RingAttempt), in ringing order by id."""

    __tablename__ = "ring_attempts"
    __table_args__ = (
        Index("ix_ring_attempts_call_id", "call_id"),
        Index("ix_ring_attempts_manager_rang_at", "manager", "rang_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    manager: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(255))
    rang_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
    queue: Mapped[str | None] = mapped_column(String(64))
    # how the leg reached its target (migration 0012): device | number, and the number
    via: Mapped[str | None] = mapped_column(String(16))
    number: Mapped[str | None] = mapped_column(String(64))


class OutboundCallRow(Base):
    """A call a manager placed (CallRecord, direction outbound; caller = the customer)."""

    __tablename__ = "outbound_calls"
    __table_args__ = (
        UniqueConstraint("node", "linkedid"),
        CheckConstraint("status IN ('answered', 'missed')", name="status"),
        Index("ix_outbound_calls_customer_started_at", "customer", "started_at"),
        Index(
            "ix_outbound_calls_manager_ended_at",
            "manager",
            "ended_at",
            sqlite_where=text(ANSWERED_CALL),
            postgresql_where=text(ANSWERED_CALL),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(64))
    linkedid: Mapped[str] = mapped_column(String(64))
    manager: Mapped[str | None] = mapped_column(String(64))
    customer: Mapped[str | None] = mapped_column(String(32))
    did: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    missed_reason: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime]
    ring_seconds: Mapped[int] = mapped_column(Integer)
    talk_seconds: Mapped[int] = mapped_column(Integer)
    recording_path: Mapped[str | None] = mapped_column(Text)
    variables: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    recovered_from: Mapped[str | None] = mapped_column(String(16))  # migration 0014
