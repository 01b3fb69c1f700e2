"""Who may sign in to the pages: the config's ``web.users`` and the users stored in the
database (``pbx-tracker web user add``, table ``web_users``).

A name is one person.  `add_user` refuses a name the config lists; should the
config list a stored name later, the config's entry wins.  The pages look a
session's user up again on every request (read with the session,
`pbx_tracker.web.sessions`), so a changed role applies at once.  Removing a
user or giving them a new password here ends their sessions on every daemon;
a session also ends when its user's password changes in the config or the
user is no longer there (`password_stamp`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, cast

import structlog
from pydantic import ValidationError
from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx_tracker.store.models import WebSessionRow, WebUserRow
from pbx_tracker.web.settings import WebSettings, WebUser

__all__ = [
    "MAX_NAME_CHARS",
    "UserError",
    "Users",
    "add_user",
    "end_sessions",
    "password_stamp",
    "remove_user",
    "set_password",
    "stored_user",
    "stored_users",
    "user_of_row",
]

log = structlog.get_logger(__name__)

users_table = cast(Table, WebUserRow.__table__)
sessions_table = cast(Table, WebSessionRow.__table__)
MAX_NAME_CHARS = 64


class UserError(ValueError):
    """A user that cannot be added or changed as asked (one line)."""


def password_stamp(user: WebUser) -> str:
    """A short fingerprint of the user's password hash, kept in their sessions."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


class Users:
    """The users of the config, then those of the database."""

    def __init__(self, settings: WebSettings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine

    async def find(self, name: str) -> WebUser | None:
        configured = self.settings.user(name)
        if configured is not None or not name or len(name) > MAX_NAME_CHARS:
            return configured
        async with self.engine.connect() as conn:
            return await stored_user(conn, name)

    def pick(self, name: str, stored: WebUser | None) -> WebUser | None:
        """`find` without a read: ``stored`` is the user's row, read already (None: none)."""
        configured = self.settings.user(name)
        return configured if configured is not None else stored

    async def any(self) -> bool:
        """Whether anyone can sign in at all (else the pages answer 404)."""
        if self.settings.users:
            return True
        async with self.engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(users_table))
        return bool(count)


def user_of_row(row: Any) -> WebUser | None:
    try:
        return WebUser.model_validate(
            {
                "name": row.name,
                "role": row.role,
                "extension": row.extension,
                "password_hash": row.password_hash,
            }
        )
    except ValidationError as error:  # a row changed by hand: no one signs in with it
        log.warning("web.stored_user_unusable", user=row.name, problem=str(error.errors()[0]))
        return None


async def stored_user(conn: AsyncConnection, name: str) -> WebUser | None:
    row = (await conn.execute(select(users_table).where(users_table.c.name == name))).first()
    return None if row is None else user_of_row(row)


async def stored_users(conn: AsyncConnection) -> list[WebUser]:
    rows = await conn.execute(select(users_table).order_by(users_table.c.name))
    return [user for user in map(user_of_row, rows) if user is not None]


async def add_user(conn: AsyncConnection, user: WebUser, now: datetime) -> None:
    """Store a new user; UserError if the name is taken or too long (a name in the
    config is for the caller to refuse).  After a UserError the transaction is
    rolled back."""
    if len(user.name) > MAX_NAME_CHARS:
        raise UserError(f"the name is longer than {MAX_NAME_CHARS} characters")
    taken = await conn.scalar(select(users_table.c.name).where(users_table.c.name == user.name))
    values = user.model_dump() | {"created_at": now, "updated_at": now}
    try:
        if taken is None:
            await conn.execute(insert(users_table).values(**values))
    except IntegrityError:  # added by someone else just now
        taken = user.name
    if taken is not None:
        raise UserError(f"user {user.name!r} already exists")


async def set_password(conn: AsyncConnection, name: str, password_hash: str, now: datetime) -> bool:
    """True when the user exists and has the new hash; their sessions are over."""
    changed = await conn.execute(
        update(users_table)
        .where(users_table.c.name == name)
        .values(password_hash=password_hash, updated_at=now)
    )
    await end_sessions(conn, name)
    return bool(changed.rowcount)


async def remove_user(conn: AsyncConnection, name: str) -> bool:
    """True when the user existed; their sessions are over."""
    removed = await conn.execute(delete(users_table).where(users_table.c.name == name))
    await end_sessions(conn, name)
    return bool(removed.rowcount)


async def end_sessions(conn: AsyncConnection, name: str) -> int:
    """Sign the user out of every browser, on every daemon; how many sessions ended."""
    ended = await conn.execute(delete(sessions_table).where(sessions_table.c.user_name == name))
    return int(ended.rowcount)
