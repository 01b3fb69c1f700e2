"""Who is signed in to the pages, and the brake on password guessing, both in the database.

Every daemon on the same database shares them (tables ``web_sessions`` and
``login_failures``, migration 0015): a browser signed in through one daemon is
signed in on all, a restart signs no one out, and a client cannot dodge the
brake by alternating daemons behind the proxy.

- `SessionStore`: a random id (the cookie) -> the user's name, the stamp of the
  password they signed in with, a CSRF token, when it was last used and a
  message for its next page.  Only the SHA-256 of the id is stored: a reader of
  the database cannot take a session over.  A session unused for
  ``session_minutes`` is over.  A page costs one read by primary key (the
  user's stored row joined to it); "last used" is written only when it is more
  than ``touch_seconds`` old (a minute, or a tenth of the idle time if that is
  less), so a session may end that much before ``session_minutes`` after its
  last click.  Each sign-in deletes the sessions that are over and keeps at
  most ``max_sessions`` (the least recently used go).
- `LoginThrottle`: a client with too many failed logins in a row waits before
  it may try again; a failed login from a new client deletes the rows of
  clients whose failures are forgotten, and keeps at most ``max_clients``.

Both run on a clock of wall-clock seconds (``time.time``: the daemons must agree
on the time, as NTP makes them), which tests replace, so they need no sleeps.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx_tracker.store.models import LoginFailureRow, WebSessionRow, WebUserRow
from pbx_tracker.web.settings import WebUser
from pbx_tracker.web.users import user_of_row

__all__ = ["LoginThrottle", "Session", "SessionStore", "session_key"]

Clock = Callable[[], float]
sessions_table = cast(Table, WebSessionRow.__table__)
failures_table = cast(Table, LoginFailureRow.__table__)
users_table = cast(Table, WebUserRow.__table__)
TOUCH_SECONDS = 60.0  # "last used" is written at most this often per session
MAX_COOKIE_CHARS = 128  # ours are 43: anything longer is no session of ours
MAX_FLASH_CHARS = 512
MAX_CLIENT_CHARS = 64


def session_key(session_id: str) -> str:
    """What the database keeps of a session id: its SHA-256, in hex."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --- sessions -------------------------------------------------------------------------


@dataclass(slots=True)
class Session:
    """One signed-in browser: whose it is, its CSRF token, a message for its next page,
    the stamp of the password it signed in with (`pbx_tracker.web.users`), and the
    user's stored row as it was read with the session (None: not in the database)."""

    id: str
    user: str
    csrf: str
    last_seen: float
    flash: str | None = None
    stamp: str = ""
    stored_user: WebUser | None = None


class SessionStore:
    """Sessions in the database, over after ``idle_seconds`` without a request."""

    def __init__(
        self,
        engine: AsyncEngine,
        idle_seconds: float,
        *,
        clock: Clock = time.time,
        max_sessions: int = 10_000,
        touch_seconds: float | None = None,
    ) -> None:
        self.engine = engine
        self.idle_seconds = idle_seconds
        self.touch_seconds = (
            min(TOUCH_SECONDS, idle_seconds / 10) if touch_seconds is None else touch_seconds
        )
        self._clock = clock
        self._max = max_sessions

    async def count(self) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(sessions_table)) or 0)

    async def create(self, user: str, stamp: str = "") -> Session:
        """A new session (a new id: never one the browser had before logging in)."""
        now = self._clock()
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        session = Session(token, user, csrf, now, stamp=stamp)
        async with self.engine.begin() as conn:
            await self._make_room(conn, now)
            await conn.execute(
                insert(sessions_table).values(
                    id_hash=session_key(session.id),
                    user_name=user,
                    stamp=stamp,
                    csrf=session.csrf,
                    created_at=_moment(now),
                    last_used=_moment(now),
                )
            )
        return session

    async def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (now marked used); None if unknown or over."""
        if not session_id or len(session_id) > MAX_COOKIE_CHARS:
            return None
        key = session_key(session_id)
        now = self._clock()
        async with self.engine.connect() as conn:
            row = (await conn.execute(_session_query(key))).first()
            if row is None:
                return None
            last = row.last_used.timestamp()
            if now - last > self.idle_seconds:
                await conn.execute(delete(sessions_table).where(sessions_table.c.id_hash == key))
                await conn.commit()
                return None
            if now - last > self.touch_seconds:
                await conn.execute(_touch(key, now))
                await conn.commit()
                last = now
        stored = None if row.name is None else user_of_row(row)
        return Session(session_id, row.user_name, row.csrf, last, row.flash, row.stamp, stored)

    async def drop(self, session_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(sessions_table).where(sessions_table.c.id_hash == session_key(session_id))
            )

    async def set_flash(self, session: Session, message: str) -> None:
        """Show ``message`` once, on the session's next page (whichever daemon serves it)."""
        session.flash = message[:MAX_FLASH_CHARS]
        await self._store_flash(session.id, session.flash)

    async def take_flash(self, session: Session) -> str | None:
        """The message for this page, if any; it is not shown again (no write when none)."""
        flash, session.flash = session.flash, None
        if flash is not None:
            await self._store_flash(session.id, None)
        return flash

    async def _store_flash(self, session_id: str, flash: str | None) -> None:
        key = session_key(session_id)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(sessions_table).where(sessions_table.c.id_hash == key).values(flash=flash)
            )

    async def _make_room(self, conn: AsyncConnection, now: float) -> None:
        """Delete the sessions that are over, then the least recently used beyond the cap."""
        over = _moment(now - self.idle_seconds)
        await conn.execute(delete(sessions_table).where(sessions_table.c.last_used < over))
        c = sessions_table.c
        await _keep_room_for_one(conn, sessions_table, c.id_hash, c.last_used, self._max)


async def _keep_room_for_one(
    conn: AsyncConnection, table: Table, key: Any, age: Any, most: int
) -> None:
    """Delete the rows least recently used (by ``age``) so one more fits under ``most``."""
    count = int(await conn.scalar(select(func.count()).select_from(table)) or 0)
    if count < most:
        return
    oldest = select(key).order_by(age).limit(count - most + 1)
    await conn.execute(delete(table).where(key.in_(oldest.scalar_subquery())))


def _session_query(key: str) -> Any:
    """The session and its user's stored row (if any), in one read by primary key."""
    return (
        select(
            sessions_table,
            users_table.c.name,
            users_table.c.role,
            users_table.c.extension,
            users_table.c.password_hash,
        )
        .select_from(sessions_table)
        .outerjoin(users_table, users_table.c.name == sessions_table.c.user_name)
        .where(sessions_table.c.id_hash == key)
    )


def _touch(key: str, now: float) -> Any:
    return (
        update(sessions_table).where(sessions_table.c.id_hash == key).values(last_used=_moment(now))
    )


# --- failed logins --------------------------------------------------------------------


class LoginThrottle:
    """After ``max_failures`` failed logins from one client (each within ``window``
    seconds of the one before), it waits ``lockout`` seconds, doubled for each further
    failure up to ``max_lockout``.  A successful login clears the count."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_failures: int = 5,
        window: float = 900.0,
        lockout: float = 60.0,
        max_lockout: float = 900.0,
        clock: Clock = time.time,
        max_clients: int = 10_000,
    ) -> None:
        self.engine = engine
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_lockout = max_lockout
        self._clock = clock
        self._max_clients = max_clients

    async def count(self) -> int:
        """How many clients have failures on record."""
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(failures_table)) or 0)

    async def retry_after(self, client: str) -> int:
        """Seconds the client must wait before trying again (0: it may try now)."""
        async with self.engine.connect() as conn:
            until = await conn.scalar(
                select(failures_table.c.locked_until).where(
                    failures_table.c.client == client[:MAX_CLIENT_CHARS]
                )
            )
        return 0 if until is None else self._wait(until.timestamp())

    async def failed(self, client: str) -> int:
        """Count a failed login; the seconds the client must now wait (0: none)."""
        client = client[:MAX_CLIENT_CHARS]
        try:
            return await self._failed_once(client)
        except IntegrityError:  # another daemon counted this client's first failure just now
            return await self._failed_once(client)

    async def succeeded(self, client: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(failures_table).where(failures_table.c.client == client[:MAX_CLIENT_CHARS])
            )

    def _wait(self, until: float) -> int:
        return max(0, int(until - self._clock() + 0.999))

    async def _failed_once(self, client: str) -> int:
        async with self.engine.begin() as conn:
            return await self._count_failure(conn, client, self._clock())

    async def _count_failure(self, conn: AsyncConnection, client: str, now: float) -> int:
        table = failures_table
        query = select(table.c.failures, table.c.last_failed_at).where(table.c.client == client)
        row = (await conn.execute(query.with_for_update())).first()
        if row is None:
            await self._make_room(conn, now)
            await conn.execute(
                insert(table).values(client=client, failures=1, last_failed_at=_moment(now))
            )
            count = 1
        else:
            recent = now - row.last_failed_at.timestamp() <= self.window
            count = row.failures + 1 if recent else 1
        over = count - self.max_failures
        until = None
        if over >= 0:
            until = now + min(self.max_lockout, self.lockout * 2 ** min(over, 20))
        locked_until = None if until is None else _moment(until)
        await conn.execute(
            update(table)
            .where(table.c.client == client)
            .values(failures=count, last_failed_at=_moment(now), locked_until=locked_until)
        )
        return 0 if until is None else self._wait(until)

    async def _make_room(self, conn: AsyncConnection, now: float) -> None:
        """Forget clients whose failures are over, then the oldest beyond the cap."""
        table = failures_table
        forgotten = _moment(now - self.window)
        unlocked = table.c.locked_until.is_(None) | (table.c.locked_until < _moment(now))
        await conn.execute(delete(table).where((table.c.last_failed_at < forgotten) & unlocked))
        c = table.c
        await _keep_room_for_one(conn, table, c.client, c.last_failed_at, self._max_clients)
