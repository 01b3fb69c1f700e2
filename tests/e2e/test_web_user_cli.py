"""`pbx-tracker web user …` as a sysadmin uses it: a subprocess, a config file, a real
database (SQLite and PostgreSQL), the password on stdin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import Cli, table_rows
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.web import users
from pbx_tracker.web.auth import hash_password, verify_password

pytestmark = pytest.mark.slow

ROOT_HASH = hash_password("root-password-1", n=2**4, r=1, p=1)


def write_config(tmp_path: Path, database_url: str) -> Path:
    config = {
        "node": "pbx1",
        "ami": {"secret": "not-used-by-these-commands"},
        "database": {"url": database_url, "spill_path": str(tmp_path / "spill.jsonl")},
        "tracked_numbers": [{"did": "+74951234567", "source": "google"}],
        "managers": [{"name": "Anna", "extension": "101", "group": "sales"}],
        "web": {"users": [{"name": "root", "role": "admin", "password_hash": ROOT_HASH}]},
    }
    path = tmp_path / "pbx-tracker.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture
def cli(tmp_path: Path, migrated_url: str) -> Cli:
    return Cli(write_config(tmp_path, migrated_url), ("web", "user"))


async def stored_hash(engine: AsyncEngine, name: str) -> str | None:
    async with engine.connect() as conn:
        user = await users.stored_user(conn, name)
    return None if user is None else user.password_hash


async def test_add_list_change_and_remove(cli: Cli, engine: AsyncEngine) -> None:
    """web user add stores a user who can sign in at once, list shows config and database users with
    where each is kept, passwd changes the password and remove removes the user."""
    added = await cli.ok(
        "add", "anna", "--role", "manager", "--extension", "101", "--password-stdin",
        stdin="anna-password-1\n",
    )  # fmt: skip
    assert added.strip() == "added anna (manager, extension 101): they can sign in now"
    first = await stored_hash(engine, "anna")
    assert first is not None and verify_password("anna-password-1", first)
    await cli.ok("add", "vera", "--role", "marketer", "--password-stdin", stdin="vera-pass-1\n")

    rows = table_rows(await cli.ok("list"), ["name", "role", "extension", "kept in"])
    assert [list(row.values()) for row in rows] == [
        ["root", "admin", "", "config"],
        ["anna", "manager", "101", "database"],
        ["vera", "marketer", "", "database"],
    ]
    listed = json.loads(await cli.ok("list", "--format", "json"))
    assert listed == [
        {"name": "root", "role": "admin", "extension": None, "kept_in": "config"},
        {"name": "anna", "role": "manager", "extension": "101", "kept_in": "database"},
        {"name": "vera", "role": "marketer", "extension": None, "kept_in": "database"},
    ]

    changed = await cli.ok("passwd", "anna", "--password-stdin", stdin="a-new-password\n")
    assert "new password" in changed
    second = await stored_hash(engine, "anna")
    assert second is not None and verify_password("a-new-password", second)
    assert not verify_password("anna-password-1", second)

    assert "removed vera" in await cli.ok("remove", "vera")
    assert await stored_hash(engine, "vera") is None


@pytest.mark.parametrize(
    ("args", "stdin", "error"),
    [
        (["add", "bob", "--role", "manager"], "long-enough-1\n", "a manager needs --extension"),
        (
            ["add", "bob", "--role", "admin", "--extension", "1x"],
            "long-enough-1\n",
            "--extension: must be 1 to 10 digits",
        ),
        (["add", " ", "--role", "admin"], "long-enough-1\n", "NAME: String should have"),
        (
            ["add", "bob", "--role", "manager", "--extension", "109"],
            "long-enough-1\n",
            "extension 109 is no manager's in the config (managers: 101)",
        ),
        (["add", "root", "--role", "admin"], "long-enough-1\n", "listed in the config"),
        (["add", "bob", "--role", "admin"], "short\n", "at least 8 characters"),
        (["add", "x" * 65, "--role", "admin"], "long-enough-1\n", "longer than 64"),
        (["passwd", "nobody"], "long-enough-1\n", "no user 'nobody' in the database"),
        (["passwd", "root"], "long-enough-1\n", "listed in the config"),
        (["remove", "nobody"], None, "no user 'nobody' in the database"),
    ],
)
async def test_what_is_refused(
    cli: Cli, engine: AsyncEngine, args: list[str], stdin: str | None, error: str
) -> None:
    """A manager without an extension or with one not in the config, a bad extension or name, a name
    from the config, a short password or an unknown user is refused with one line saying why, and
    nothing is stored."""
    flags = ["--password-stdin"] if stdin is not None else []
    assert error in await cli.fails(*args, *flags, stdin=stdin)
    async with engine.connect() as conn:
        assert await users.stored_users(conn) == []


async def test_a_name_is_added_once(cli: Cli) -> None:
    """Adding a user whose name is taken exits 1 saying the user already exists."""
    await cli.ok("add", "vera", "--role", "marketer", "--password-stdin", stdin="vera-pass-1\n")
    again = await cli.fails(
        "add", "vera", "--role", "admin", "--password-stdin", stdin="vera-pass-1\n"
    )
    assert again == "error: user 'vera' already exists"


async def test_a_database_not_migrated_says_so(tmp_path: Path) -> None:
    """web user list on a database without schema tells the sysadmin to run pbx-tracker db
    upgrade."""
    empty = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    cli = Cli(write_config(tmp_path, empty), ("web", "user"))
    assert "pbx-tracker db upgrade" in await cli.fails("list")
