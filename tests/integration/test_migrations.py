"""Alembic migrations on real SQLite and PostgreSQL: up, down, up, and models == schema."""

from __future__ import annotations

import asyncio
import configparser
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from pbx_tracker.store.engine import make_sync_engine
from pbx_tracker.store.migrate import (
    alembic_config,
    current_revision,
    downgrade_to_base,
    head_revision,
    is_at_head,
    migrations_dir,
    upgrade_to,
    upgrade_to_head,
)
from pbx_tracker.store.models import MISSED_CALL_LABELS, Base

REPO = Path(__file__).resolve().parents[2]
TABLES = {
    "calls",
    "ring_attempts",
    "outbound_calls",
    "callback_tasks",
    "callback_task_calls",
    "callback_events",
    "visits",
    "number_leases",
    "ad_spend",
    "crm_outbox",
    "crm_links",
    "pool_stats",
    "web_users",
    "cel_positions",
    "web_sessions",
    "login_failures",
}


def _tables(url: str) -> set[str]:
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _schema_differences(url: str) -> list[Any]:
    """What `alembic check` would report: models.py vs the database."""
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


class TestMigrations:
    async def test_up_down_up(self, database_url: str) -> None:
        """An empty database goes to head, back to base and to head again."""
        assert await asyncio.to_thread(current_revision, database_url) is None
        assert not await asyncio.to_thread(is_at_head, database_url)

        await asyncio.to_thread(upgrade_to_head, database_url)
        assert await asyncio.to_thread(current_revision, database_url) == head_revision()
        assert await asyncio.to_thread(is_at_head, database_url)
        assert await asyncio.to_thread(_tables, database_url) == TABLES

        await asyncio.to_thread(downgrade_to_base, database_url)
        assert await asyncio.to_thread(current_revision, database_url) is None
        assert await asyncio.to_thread(_tables, database_url) == set()

        await asyncio.to_thread(upgrade_to_head, database_url)
        assert await asyncio.to_thread(_tables, database_url) == TABLES

    async def test_upgrade_twice_is_harmless(self, migrated_url: str) -> None:
        """Running `db upgrade` on a database at head changes nothing."""
        await asyncio.to_thread(upgrade_to_head, migrated_url)
        assert await asyncio.to_thread(is_at_head, migrated_url)

    async def test_models_match_the_migrated_schema(self, migrated_url: str) -> None:
        """Autogenerate finds nothing to add: the migrations build exactly models.py."""
        assert await asyncio.to_thread(_schema_differences, migrated_url) == []

    async def test_missed_calls_index_carries_the_report_labels(self, migrated_url: str) -> None:
        """Alembic does not compare an index's INCLUDE list: 0010 is checked here."""

        def indexes() -> list[dict[str, Any]]:
            engine = make_sync_engine(migrated_url)
            try:
                with engine.connect() as conn:
                    return inspect(conn).get_indexes("calls")
            finally:
                engine.dispose()

        found = await asyncio.to_thread(indexes)
        index = next(i for i in found if i["name"] == "ix_calls_missed_labels")
        assert index["column_names"] == ["id"]
        if migrated_url.startswith("postgresql"):
            assert index["dialect_options"]["postgresql_include"] == list(MISSED_CALL_LABELS)

    async def test_comparison_sees_a_missing_schema(self, database_url: str) -> None:
        """The comparison above is not vacuous: on an empty database it lists the tables."""
        differences = await asyncio.to_thread(_schema_differences, database_url)
        added = {diff[1].name for diff in differences if diff[0] == "add_table"}
        assert added == TABLES


class TestMigrationsFolder:
    def test_checkout_folder_is_found(self) -> None:
        """From a checkout or an editable install the top-level migrations/ is used."""
        folder = migrations_dir()
        assert (folder / "env.py").is_file()
        assert folder.resolve() == (REPO / "migrations").resolve()

    def test_alembic_command_line_takes_the_url_from_x(self, tmp_path: Path) -> None:
        """Developers run `alembic -x url=…` from the repository root."""
        url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
        env = {k: v for k, v in os.environ.items() if k != "PBX_TRACKER_DATABASE_URL"}
        command = [sys.executable, "-m", "alembic", "-x", f"url={url}", "upgrade", "head"]
        subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, timeout=60)
        assert current_revision(url) == head_revision()


@pytest.mark.slow
def test_wheel_ships_the_migrations(tmp_path: Path) -> None:
    """A built wheel carries pbx_tracker._migrations and migrates SQLite from it."""
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "pbx_tracker/_migrations/env.py" in names
    assert "pbx_tracker/_migrations/script.py.mako" in names
    assert "pbx_tracker/_migrations/versions/0001_calls.py" in names

    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q"]
    subprocess.run([*pip, "--target", str(target), str(wheel)], check=True, timeout=120)
    # PYTHONPATH puts the installed wheel before the checkout's editable install
    folder, revision = _migrate_with(sys.executable, tmp_path, {"PYTHONPATH": str(target)})
    assert Path(folder) == target / "pbx_tracker" / "_migrations"
    assert revision == head_revision()


@pytest.mark.slow
def test_fresh_editable_install_maps_the_migrations(tmp_path: Path) -> None:
    """`pip install -e` maps pbx_tracker._migrations onto migrations/ (pypa/setuptools#4248)."""
    source = _copy_sources(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the dependencies come from the test environment, the project from the copy
    (Path(site) / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [str(python), "-m", "pip", "install", "--no-deps", "-q", "-e", str(source)]
    subprocess.run(pip, check=True, timeout=300)
    folder, revision = _migrate_with(python, tmp_path, {})
    assert Path(folder) == source / "migrations"
    assert revision == head_revision()


def _migrate_with(python: Path | str, tmp_path: Path, env: dict[str, str]) -> list[str]:
    """Migrate a new SQLite file with that interpreter: (migrations folder, revision)."""
    url = f"sqlite:///{tmp_path / 'installed.sqlite3'}"
    script = (
        "import pbx_tracker.store.migrate as m; "
        f"m.upgrade_to_head({url!r}); "
        f"print(m.migrations_dir()); print(m.current_revision({url!r}))"
    )
    result = subprocess.run(
        [str(python), "-c", script],
        cwd=tmp_path,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.split()


def _copy_sources(tmp_path: Path) -> Path:
    """A copy of what packaging needs, so the shared checkout gets no build/ folder."""
    source = tmp_path / "src"
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        if (REPO / name).exists():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO / name).read_bytes())
    for folder in ("pbx_tracker", "migrations"):
        _copy_python_tree(REPO / folder, source / folder)
    return source


def _build_wheel(tmp_path: Path) -> Path:
    source = _copy_sources(tmp_path)
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("pbx_tracker-*.whl")
    return wheel


def _copy_python_tree(source: Path, target: Path) -> None:
    for path in source.rglob("*"):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(path.read_bytes())


def test_setup_cfg_lists_every_package() -> None:
    """setup.cfg lists packages by hand (for the migrations mapping): none may be missing."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    listed = set(parser["options"]["packages"].split())
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "pbx_tracker").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    missing = on_disk - listed
    assert not missing, f"add to [options] packages in setup.cfg: {sorted(missing)}"
    assert {"pbx_tracker._migrations", "pbx_tracker._migrations.versions"} <= listed


async def test_0006_backfills_previous_call_at(database_url: str) -> None:
    """Calls stored before 0006 get the start of their caller's previous call."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    await asyncio.to_thread(upgrade_to, database_url, "0005")
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    # (linkedid, caller, hours after t0), stored out of order
    calls = [("c3", "A", 3), ("c1", "A", 1), ("b1", "B", 2), ("h", None, 0), ("c2", "A", 2)]

    def insert_and_upgrade() -> dict[str, Any]:
        engine = make_sync_engine(database_url)
        try:
            with engine.begin() as conn:
                for linkedid, caller, hours in calls:
                    start = t0 + timedelta(hours=hours)
                    if engine.dialect.name == "sqlite":
                        start = start.replace(tzinfo=None)  # stored as UTC text
                    conn.execute(
                        text(
                            "INSERT INTO calls (node, linkedid, direction, caller, status,"
                            " started_at, ended_at, ring_seconds, talk_seconds, complete,"
                            " variables) VALUES ('pbx1', :linkedid, 'inbound', :caller,"
                            " 'missed', :start, :start, 0, 0, true, '{}')"
                        ),
                        {"linkedid": linkedid, "caller": caller, "start": start},
                    )
            upgrade_to_head(database_url)
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT linkedid, previous_call_at FROM calls"))
                return {row[0]: row[1] for row in rows}
        finally:
            engine.dispose()

    found = await asyncio.to_thread(insert_and_upgrade)
    assert {k for k, v in found.items() if v is None} == {"c1", "b1", "h"}
    for linkedid, hours in {"c2": 1, "c3": 2}.items():
        value = found[linkedid]  # SQLite: UTC text; PostgreSQL: an aware datetime
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        assert moment.replace(tzinfo=moment.tzinfo or UTC) == t0 + timedelta(hours=hours)


async def test_0009_backfills_the_answer_speed_and_the_first_call(database_url: str) -> None:
    """Calls stored before 0009 get their answering leg's ring time; tasks their first
    linked call."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert, select

    from pbx_tracker.store.models import (
        CallbackTaskCallRow,
        CallbackTaskRow,
        CallRow,
        RingAttemptRow,
    )

    await asyncio.to_thread(upgrade_to, database_url, "0008")
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    calls, attempts = CallRow.__table__, RingAttemptRow.__table__
    tasks, links = CallbackTaskRow.__table__, CallbackTaskCallRow.__table__

    def call(linkedid: str, by: str | None, minutes: int) -> dict[str, Any]:
        start = t0 + timedelta(minutes=minutes)
        return {
            "node": "pbx1", "linkedid": linkedid, "direction": "inbound", "caller": "+7916",
            "status": "answered" if by else "missed", "answered_by": by,
            "started_at": start, "answered_at": start + timedelta(seconds=9) if by else None,
            "ended_at": start + timedelta(seconds=60), "ring_seconds": 9, "talk_seconds": 0,
            "complete": True, "variables": {},
        }  # fmt: skip

    def insert_and_upgrade() -> tuple[dict[str, Any], Any]:
        engine = make_sync_engine(database_url)
        try:
            with engine.begin() as conn:
                ids = {
                    name: conn.execute(insert(calls).values(row).returning(calls.c.id)).scalar()
                    for name, row in (
                        ("answered", call("a", "101", 0)),
                        ("missed", call("m1", None, 5)),
                        ("again", call("m2", None, 9)),
                    )
                }
                for manager, outcome, after in (("102", "noanswer", 0), ("101", "answer", 2)):
                    conn.execute(
                        insert(attempts).values(
                            call_id=ids["answered"], manager=manager, channel=f"PJSIP/{manager}",
                            rang_at=t0 + timedelta(seconds=after), outcome=outcome,
                        )
                    )  # fmt: skip
                task = {
                    "node": "pbx1", "dialable": True, "status": "open", "created_at": t0,
                    "first_missed_at": t0, "last_missed_at": t0, "updated_at": t0,
                }  # fmt: skip
                task_id = conn.execute(insert(tasks).values(task).returning(tasks.c.id)).scalar()
                for name in ("again", "missed"):  # linked in any order
                    conn.execute(insert(links).values(task_id=task_id, call_id=ids[name]))
            upgrade_to_head(database_url)
            with engine.connect() as conn:
                speeds = dict(conn.execute(select(calls.c.linkedid, calls.c.answer_seconds)).all())
                first = conn.execute(select(tasks.c.first_call_id)).scalar()
                return speeds, (first, ids["missed"])
        finally:
            engine.dispose()

    speeds, (first, expected) = await asyncio.to_thread(insert_and_upgrade)
    assert speeds["a"] == pytest.approx(7.0)  # rang at second 2, answered at second 9
    assert speeds["m1"] is None and speeds["m2"] is None
    assert first == expected


def _downgrade_to(url: str, revision: str) -> None:
    """`alembic downgrade <revision>` on ``url``."""
    from alembic import command

    config = alembic_config()
    engine = make_sync_engine(url, foreign_keys=False)
    try:
        with engine.connect() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
            conn.commit()
    finally:
        engine.dispose()


async def test_0012_adds_how_calls_were_answered_and_goes_back(database_url: str) -> None:
    """Calls stored before 0012 read as answered in no known way with no transfer wait,
    and going back to 0011 keeps the calls; on both sides of it new calls still learn
    their caller's previous call (SQLite keeps the triggers of 0006)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert, select

    from pbx_tracker.store.models import CallRow, RingAttemptRow

    await asyncio.to_thread(upgrade_to, database_url, "0011")
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    calls, attempts = CallRow.__table__, RingAttemptRow.__table__

    def call(linkedid: str, hours: int, **more: Any) -> dict[str, Any]:
        start = t0 + timedelta(hours=hours)
        return {
            "node": "pbx1", "linkedid": linkedid, "direction": "inbound", "caller": "+7916",
            "status": "missed", "started_at": start, "ended_at": start, "ring_seconds": 9,
            "talk_seconds": 0, "complete": True, "variables": {}, **more,
        }  # fmt: skip

    def store_upgrade_and_go_back() -> tuple[list[Any], list[Any], list[Any], set[str]]:
        engine = make_sync_engine(database_url)
        try:
            with engine.begin() as conn:
                old = conn.execute(insert(calls).values(call("old", 0)).returning(calls.c.id))
                leg = {"call_id": old.scalar(), "manager": "101", "channel": "PJSIP/101-1"}
                conn.execute(insert(attempts).values(**leg, rang_at=t0, outcome="noanswer"))
            upgrade_to_head(database_url)
            with engine.begin() as conn:
                conn.execute(insert(calls).values(call("new", 1, transfer_wait_seconds=5)))
                c = calls.c
                read = select(
                    c.linkedid, c.answered_via, c.answered_number, c.transfer_wait_seconds
                )
                upgraded = list(conn.execute(read.order_by(c.id)))
                legs = list(conn.execute(select(attempts.c.via, attempts.c.number)))
            _downgrade_to(database_url, "0011")
            with engine.begin() as conn:
                conn.execute(insert(calls).values(call("later", 2)))
                kept = list(conn.execute(select(c.linkedid, c.previous_call_at).order_by(c.id)))
                left = {column["name"] for column in inspect(conn).get_columns("calls")}
            return upgraded, legs, kept, left
        finally:
            engine.dispose()

    upgraded, legs, kept, left = await asyncio.to_thread(store_upgrade_and_go_back)
    assert [tuple(row) for row in upgraded] == [("old", None, None, 0), ("new", None, None, 5)]
    assert [tuple(row) for row in legs] == [(None, None)]
    hour = timedelta(hours=1)
    assert [tuple(row) for row in kept] == [("old", None), ("new", t0), ("later", t0 + hour)]
    assert not {"answered_via", "answered_number", "transfer_wait_seconds"} & left
