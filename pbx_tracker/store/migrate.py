"""Run the Alembic migrations (the only way the schema is made or changed).

Blocking functions: async callers use `asyncio.to_thread(upgrade_to_head, url)`.
The migrations live in `migrations/` at the top of the checkout; a wheel
carries them as the package `pbx_tracker._migrations` (setup.cfg package_dir).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from pbx_tracker.store.engine import make_sync_engine

PACKAGED_MIGRATIONS = "pbx_tracker._migrations"


class MigrationsNotFoundError(RuntimeError):
    """Neither the installed package nor the checkout has the migrations."""


def upgrade_to_head(url: str) -> None:
    upgrade_to(url, "head")


def upgrade_to(url: str, revision: str) -> None:
    """Migrate up to ``revision`` (benchmarks and tests stop before a migration that fills
    what was stored before it)."""
    _run_command(url, lambda config: command.upgrade(config, revision))


def downgrade_to_base(url: str) -> None:
    _run_command(url, lambda config: command.downgrade(config, "base"))


def current_revision(url: str) -> str | None:
    """The revision the database is at; None for an empty database."""
    with _connection(url) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise MigrationsNotFoundError(f"no revisions in {migrations_dir()}")
    return head


def is_at_head(url: str) -> bool:
    return current_revision(url) == head_revision()


def alembic_config() -> Config:
    """An Alembic Config without alembic.ini: the URL never comes from a file."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    return config


def migrations_dir() -> Path:
    """The Alembic folder: installed package first, then the source checkout."""
    if importlib.util.find_spec(PACKAGED_MIGRATIONS) is not None:
        packaged = resources.files(PACKAGED_MIGRATIONS)
        if isinstance(packaged, Path) and (packaged / "env.py").is_file():
            return packaged
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "env.py").is_file():
        return checkout
    raise MigrationsNotFoundError(
        f"Alembic migrations not found: neither {PACKAGED_MIGRATIONS} is installed "
        f"nor {checkout} exists (reinstall pbx-tracker)"
    )


def _run_command(url: str, run: Callable[[Config], None]) -> None:
    config = alembic_config()
    with _connection(url) as connection:
        config.attributes["connection"] = connection
        run(config)
        connection.commit()


@contextmanager
def _connection(url: str) -> Iterator[Connection]:
    engine = make_sync_engine(url, foreign_keys=False)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()
