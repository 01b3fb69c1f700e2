"""The people who sign in to the pages, their browser sessions and failed sign-ins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pbx_tracker.store.models.base import Base


class WebUserRow(Base):
    """A person who signs in to the pages, added by ``pbx-tracker web user add`` (users
    may also be listed in the config, ``web.users``); `pbx_tracker.web.users`."""

    __tablename__ = "web_users"
    __table_args__ = (
        CheckConstraint("role IN ('manager', 'supervisor', 'marketer', 'admin')", name="role"),
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
