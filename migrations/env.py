"""Alembic environment: the database URL comes from the caller, never alembic.ini.

In order: a connection handed over in `config.attributes["connection"]`
(pbx_tracker.store.migrate, `pbx-tracker db upgrade`), `alembic -x url=…`,
or `$PBX_TRACKER_DATABASE_URL` for developers running `alembic` by hand.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from pbx_tracker.callbacks.schedule import JOBS_TABLE
from pbx_tracker.store.engine import make_sync_engine, normalise_url
from pbx_tracker.store.models import Base

URL_ENV = "PBX_TRACKER_DATABASE_URL"

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(URL_ENV)
    if not url:
        raise SystemExit(f"no database URL: pass -x url=… or set ${URL_ENV}")
    return url


def include_object(
    item: object, name: str | None, kind: str, reflected: bool, compare_to: object
) -> bool:
    """Everything but APScheduler's job table, which the scheduler creates and owns."""
    return not (kind == "table" and name == JOBS_TABLE)


def configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )


def check_foreign_keys(connection: Connection) -> None:
    """Migrations run with SQLite foreign keys off: verify them before commit."""
    if connection.dialect.name != "sqlite":
        return
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"foreign key violations after migrating: {problems[:5]}")


def run_on(connection: Connection) -> None:
    configure(connection)
    with context.begin_transaction():
        context.run_migrations()
        check_foreign_keys(connection)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = make_sync_engine(database_url(), foreign_keys=False)
    try:
        with engine.connect() as new_connection:
            run_on(new_connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    url = normalise_url(database_url(), use_async=False)
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.get_backend_name() == "sqlite",
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
