"""Every command that reads or writes the database, when the database cannot be used:
one `error:` line naming it (password masked) and what to check, exit 1, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import Cli

pytestmark = pytest.mark.slow

COMMANDS = [
    ["callbacks", "list"],
    ["callbacks", "done", "1"],
    ["spam", "list", "--from", "2026-11-01", "--to", "2026-11-02"],
    ["spam", "mark", "1", "--by", "101"],
    ["pool", "status"],
    ["report", "sources", "--from", "2026-11-01", "--to", "2026-11-02"],
    ["export", "metrica", "--from", "2026-11-01", "--to", "2026-11-02", "--out", "calls.csv"],
    ["web", "user", "list"],
    ["web", "user", "remove", "anna"],
]
DATABASES = {
    "sqlite not migrated": ("sqlite:///{folder}/empty.sqlite3", "no such table"),
    "postgresql not running": ("postgresql://tracker:pa55word@127.0.0.1:1/pbx", "127.0.0.1"),
}


def write_config(folder: Path, database_url: str) -> Path:
    config = {
        "node": "pbx1",
        "ami": {"secret": "not-used-by-these-commands"},
        "database": {"url": database_url, "spill_path": str(folder / "spill.jsonl")},
        "tracked_numbers": [{"did": "+74951234567", "source": "google"}],
        "number_pools": [{"name": "site", "numbers": ["74951110010-74951110011"]}],
        "managers": [{"name": "Anna", "extension": "101", "group": "sales"}],
    }
    path = folder / "pbx-tracker.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.mark.parametrize("database", sorted(DATABASES))
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
async def test_a_database_that_cannot_be_used_is_one_error_line(
    tmp_path: Path, command: list[str], database: str
) -> None:
    """Every command touching a database that cannot be used exits with one error line naming the
    database (password masked), what is wrong and to run pbx-tracker db upgrade."""
    url, detail = DATABASES[database]
    cli = Cli(write_config(tmp_path, url.format(folder=tmp_path)))
    error = await cli.fails(*command)
    assert error.startswith("error: database ")
    assert detail in error and "pbx-tracker db upgrade" in error
    assert "pa55word" not in error


@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "downgrade", "--yes"]], ids=" ".join)
async def test_migrating_a_database_that_is_not_running_is_one_error_line(
    tmp_path: Path, command: list[str]
) -> None:
    """A sysadmin's first `db upgrade` against a PostgreSQL that is down reads one line
    naming the database (password masked) and what to check, not a traceback."""
    url, detail = DATABASES["postgresql not running"]
    error = await Cli(write_config(tmp_path, url)).fails(*command)
    assert error.startswith("error: cannot ") and detail in error
    assert "pa55word" not in error and "***" in error
