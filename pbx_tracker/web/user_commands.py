"""`pbx-tracker web user …`: the pages' users kept in the database.

Each command works on the database directly; the running daemons look users up
at every request, so a change applies at the user's next click, and removing a
user or changing their password ends their sessions on every daemon at once.
The users of the config (``web.users``) are listed too, and are changed in the
config.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from pydantic import ValidationError
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.command_error import CommandError
from pbx_tracker.staff import Directory
from pbx_tracker.store.engine import in_transaction
from pbx_tracker.terminal import as_text
from pbx_tracker.web import users
from pbx_tracker.web.auth import hash_password
from pbx_tracker.web.settings import WebSettings, WebUser

__all__ = ["add_user", "change_password", "list_users", "remove_user"]

_T = TypeVar("_T")
COLUMNS = ("name", "role", "extension", "kept in")


async def _run(database_url: str, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
    try:
        return await in_transaction(database_url, work)
    except users.UserError as error:
        raise CommandError(str(error)) from None


def _in_config(web: WebSettings, name: str) -> None:
    if web.user(name) is not None:
        raise CommandError(
            f"user {name!r} is listed in the config (web.users): change or remove them there"
        )


def _new_user(
    directory: Directory, name: str, role: str, extension: str | None, password: str
) -> WebUser:
    """The user as the config would hold them; CommandError names what is wrong."""
    if role == "manager" and not extension:
        raise CommandError("a manager needs --extension: the phone their callbacks ring")
    try:
        user = WebUser.model_validate(
            {
                "name": name,
                "role": role,
                "extension": extension,
                "password_hash": hash_password(password),
            }
        )
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        where = {"name": "NAME", "extension": "--extension"}.get(field, "")
        raise CommandError(f"{where}: {first['msg']}" if where else first["msg"]) from None
    managers = {manager.extension for manager in directory.managers}
    if user.role == "manager" and user.extension not in managers:
        known = ", ".join(sorted(managers)) or "none"
        raise CommandError(
            f"extension {user.extension} is no manager's in the config (managers: {known})"
        )
    return user


async def add_user(
    database_url: str,
    web: WebSettings,
    directory: Directory,
    name: str,
    role: str,
    extension: str | None,
    password: str,
    *,
    now: datetime,
) -> str:
    """Add a user kept in the database; a manager's extension must be a configured one."""
    name = name.strip()
    _in_config(web, name)
    user = _new_user(directory, name, role, extension, password)
    await _run(database_url, lambda conn: users.add_user(conn, user, now))
    phone = f", extension {user.extension}" if user.extension else ""
    return f"added {user.name} ({user.role}{phone}): they can sign in now"


async def change_password(
    database_url: str, web: WebSettings, name: str, password: str, *, now: datetime
) -> str:
    _in_config(web, name)
    stored = hash_password(password)
    if not await _run(database_url, lambda conn: users.set_password(conn, name, stored, now)):
        raise CommandError(f"no user {name!r} in the database")
    return f"{name} has a new password; their open sessions have ended"


async def remove_user(database_url: str, web: WebSettings, name: str) -> str:
    _in_config(web, name)
    if not await _run(database_url, lambda conn: users.remove_user(conn, name)):
        raise CommandError(f"no user {name!r} in the database")
    return f"removed {name}: their open sessions have ended"


async def list_users(database_url: str, web: WebSettings, *, fmt: str) -> str:
    stored = await _run(database_url, users.stored_users)
    configured = {user.name for user in web.users}
    found = [(user, "config") for user in web.users]
    found += [(user, "database") for user in stored if user.name not in configured]
    if fmt == "json":
        rows = [
            {"name": u.name, "role": u.role, "extension": u.extension, "kept_in": kept}
            for u, kept in found
        ]
        return json.dumps(rows, ensure_ascii=False, indent=2)
    if not found:
        return "no users: add one with `pbx-tracker web user add NAME --role admin`"
    table = Table(title="Users of the web pages", title_justify="left")
    for column in COLUMNS:
        table.add_column(column)
    for user, kept in found:
        table.add_row(user.name, user.role, user.extension or "", kept)
    return as_text(table, width=120)
