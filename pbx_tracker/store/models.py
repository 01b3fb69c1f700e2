"""Tables of the call store. Alembic migrations (migrations/) create them.

Times are `UTCDateTime`: timezone-aware UTC in Python on both engines
(PostgreSQL `timestamptz`; SQLite text in UTC, read back as aware UTC).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """DateTime(timezone=True) that refuses naive values and returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} (times must be timezone-aware)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


def _now() -> datetime:
    return datetime.now(UTC)


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
    created_at: Mapped[datetime] = mapped_column(default=_now, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=_now, server_default=func.now())
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
    created_at: Mapped[datetime] = mapped_column(default=_now, server_default=func.now())
    recovered_from: Mapped[str | None] = mapped_column(String(16))  # migration 0014


class CelPositionRow(Base):
    """Where the next read of a node's CEL log starts (migration 0014): the file's
    identity (device:inode) and first-line fingerprint and the byte offset, or for
    cel_pgsql's table (``source`` ``table:<name>``) the id to start from."""

    __tablename__ = "cel_positions"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(512), primary_key=True)
    identity: Mapped[str | None] = mapped_column(String(64))
    fingerprint: Mapped[str | None] = mapped_column(String(32))
    byte_offset: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime]


OPEN_CUSTOMER_TASK = "status = 'open' AND customer IS NOT NULL"


class CallbackTaskRow(Base):
    """A customer to call back: opened by a missed call, joined by the next ones,
    done when the customer is reached or a manager closes it.

    At most one open task per customer (a partial unique index, so two daemons
    sharing PostgreSQL cannot open two); hidden callers (customer NULL) get a
    task per missed call.
    """

    __tablename__ = "callback_tasks"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'done')", name="status"),
        CheckConstraint(
            "resolution IN ('answered_inbound', 'called_back', 'closed_by_manager')",
            name="resolution",
        ),
        CheckConstraint(
            "(status = 'open' AND resolution IS NULL)"
            " OR (status = 'done' AND resolution IS NOT NULL)",
            name="resolved",
        ),
        Index(
            "uq_callback_tasks_open_customer",
            "customer",
            unique=True,
            sqlite_where=text(OPEN_CUSTOMER_TASK),
            postgresql_where=text(OPEN_CUSTOMER_TASK),
        ),
        Index("ix_callback_tasks_status_assignee_created_at", "status", "assignee", "created_at"),
        Index("ix_callback_tasks_status_created_at", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(64))
    customer: Mapped[str | None] = mapped_column(String(32))
    dialable: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(8), server_default="open")
    assignee: Mapped[str | None] = mapped_column(String(64))
    group_name: Mapped[str | None] = mapped_column(String(64))
    did: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(255))
    tries: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime]
    first_missed_at: Mapped[datetime]
    last_missed_at: Mapped[datetime]
    first_call_id: Mapped[int | None]  # the call that opened it (migration 0009)
    reminders_sent: Mapped[int] = mapped_column(Integer, server_default="0")
    last_reminder_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    snoozed_until: Mapped[datetime | None]
    first_attempt_at: Mapped[datetime | None]
    ringme_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(String(32))
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_call: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class CallbackTaskCallRow(Base):
    """A missed call of a callback task (the call that opened it and those that joined)."""

    __tablename__ = "callback_task_calls"
    __table_args__ = (Index("ix_callback_task_calls_call_id", "call_id"),)

    task_id: Mapped[int] = mapped_column(
        ForeignKey("callback_tasks.id", ondelete="CASCADE"), primary_key=True
    )
    call_id: Mapped[int] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )


class CallbackEventRow(Base):
    """What happened to a callback task, in order of id: the audit trail of callback speed."""

    __tablename__ = "callback_events"
    __table_args__ = (Index("ix_callback_events_task_id", "task_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("callback_tasks.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]]


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


# reports find the callback tasks of a period by their first missed call
Index("ix_callback_tasks_first_missed_at", CallbackTaskRow.first_missed_at)


PENDING_DELIVERY = "delivered_at IS NULL AND failed_at IS NULL"


class CrmOutboxRow(Base):
    """A call event for the CRM webhook, written with the call, deleted never (the
    delivered time and tries stay as the delivery log); `pbx_tracker.crm.outbox`."""

    __tablename__ = "crm_outbox"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("ix_crm_outbox_call_key_id", "call_key", "id"),
        Index(
            "ix_crm_outbox_pending_next_attempt_at",
            "next_attempt_at",
            sqlite_where=text(PENDING_DELIVERY),
            postgresql_where=text(PENDING_DELIVERY),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
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


class WebUserRow(Base):
    """A person who signs in to the pages, added by ``pbx-tracker web user add`` (users
    may also be listed in the config, ``web.users``); `pbx_tracker.web.users`."""

    __tablename__ = "web_users"
    __table_args__ = (
        CheckConstraint("role IN ('manager', 'marketer', 'admin')", name="role"),
        CheckConstraint("role <> 'manager' OR extension IS NOT NULL", name="manager_extension"),
    )

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    extension: Mapped[str | None] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebSessionRow(Base):
    """A browser signed in to the pages (migration 0015; `pbx_tracker.web.sessions`).

    ``id_hash`` is the SHA-256 of the session cookie, never the cookie itself: a
    reader of the database cannot sign in with what they read.  ``stamp`` is the
    fingerprint of the password the user signed in with, ``flash`` a message for
    the session's next page."""

    __tablename__ = "web_sessions"
    __table_args__ = (
        Index("ix_web_sessions_user_name", "user_name"),
        Index("ix_web_sessions_last_used", "last_used"),
    )

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64))
    stamp: Mapped[str] = mapped_column(String(64))
    csrf: Mapped[str] = mapped_column(String(64))
    flash: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime]
    last_used: Mapped[datetime]


class LoginFailureRow(Base):
    """Failed sign-ins in a row from one client, and until when it must wait
    (migration 0015; `pbx_tracker.web.sessions.LoginThrottle`)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_last_failed_at", "last_failed_at"),)

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failed_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
