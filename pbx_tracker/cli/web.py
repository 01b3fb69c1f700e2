"""`pbx-tracker web …`: the people who sign in to the pages, and their passwords."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from pbx_tracker.cli.common import config_option, fail, load_or_exit, run_command
from pbx_tracker.web.roles import ROLES

__all__ = ["web"]


@click.group()
def web() -> None:
    """The web pages' users: in the database (web user …) or in the config (web.users)."""


@web.command("hash-password")
def web_hash_password() -> None:
    """Ask for a password twice (not shown) and print its hash for web.users[].password_hash."""
    from pbx_tracker.web.auth import hash_password

    click.echo(hash_password(_new_password()))


def _new_password(from_stdin: bool = False) -> str:
    """A password asked twice (not shown), or the first line of stdin; exit 1 if short."""
    from pbx_tracker.web.auth import MIN_PASSWORD_CHARS

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_CHARS:
        fail(f"use at least {MIN_PASSWORD_CHARS} characters")
    return password


def _now() -> datetime:
    return datetime.now(UTC)


_password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)


@web.group("user")
def web_user() -> None:
    """Users kept in the database: add, list, change a password, remove.

    They sign in as the users of web.users in the config do; a change applies at
    their next click (a removed user, or one whose password changed, is signed out)."""


@web_user.command("add")
@config_option
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What they may see.")
@click.option("--extension", metavar="EXT", help="A manager's extension (from managers:).")
@_password_stdin
def web_user_add(
    config_path: str | None, name: str, role: str, extension: str | None, password_stdin: bool
) -> None:
    """Add a user; the password is asked twice (not shown)."""
    from pbx_tracker.web.user_commands import add_user

    settings = load_or_exit(config_path, need_ami_secret=False)
    password = _new_password(password_stdin)
    run_command(
        add_user(
            settings.database.url,
            settings.web,
            settings.directory,
            name,
            role,
            extension,
            password,
            now=_now(),
        )
    )


@web_user.command("list")
@config_option
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def web_user_list(config_path: str | None, fmt: str) -> None:
    """Every user, from the config and the database: name, role, extension, where kept."""
    from pbx_tracker.web.user_commands import list_users

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(list_users(settings.database.url, settings.web, fmt=fmt))


@web_user.command("passwd")
@config_option
@click.argument("name")
@_password_stdin
def web_user_passwd(config_path: str | None, name: str, password_stdin: bool) -> None:
    """Give a user a new password; their open sessions end."""
    from pbx_tracker.web.user_commands import change_password

    settings = load_or_exit(config_path, need_ami_secret=False)
    password = _new_password(password_stdin)
    run_command(change_password(settings.database.url, settings.web, name, password, now=_now()))


@web_user.command("remove")
@config_option
@click.argument("name")
def web_user_remove(config_path: str | None, name: str) -> None:
    """Remove a user; their open sessions end."""
    from pbx_tracker.web.user_commands import remove_user

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(remove_user(settings.database.url, settings.web, name))
