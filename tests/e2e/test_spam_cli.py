"""`pbx-tracker spam …` as a manager uses it: a subprocess, a config file, a real database.

Calls are stored as the daemon's writer stores them (with their spam reason);
the commands list them, mark one and undo a marking, and the tests check what
the user sees and what the database (and `callbacks list`) holds afterwards.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_runner import Cli, table_rows
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks.finished_calls import apply_call
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.calls.records import SpamReason
from pbx_tracker.store.calls import save_call
from pbx_tracker.store.models import CallRow
from stored import missed_call

pytestmark = pytest.mark.slow

DID = "+74951234567"  # the tracked number of `stored.missed_call`
CUSTOMER = "+79161234567"
ROBOT = "+78001000000"
NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date().isoformat()
# the first day of the calls stored below (up to 30 minutes ago): yesterday just after midnight
SINCE = (NOW - timedelta(hours=1)).date().isoformat()
COLUMNS = ["id", "time", "caller", "number", "source", "status", "reason", "changed by"]


def write_config(tmp_path: Path, database_url: str) -> Path:
    config = {
        "node": "pbx1",
        "phone_region": "RU",
        "ami": {"secret": "not-used-by-these-commands"},
        "database": {"url": database_url, "spill_path": str(tmp_path / "spill.jsonl")},
        "tracked_numbers": [{"did": DID, "source": "google"}],
        "managers": [{"name": "Anna", "extension": "101", "group": "sales"}],
        "routing": {"timezone": "UTC"},
        "spam": {"block": ["+7800*"], "repeat_limit": 2},
        "logging": {"level": "info", "format": "json"},
    }
    path = tmp_path / "pbx-tracker.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture
def cli(tmp_path: Path, migrated_url: str) -> Cli:
    return Cli(write_config(tmp_path, migrated_url), ("spam",))


@pytest.fixture
def callbacks_cli(tmp_path: Path, migrated_url: str) -> Cli:
    return Cli(write_config(tmp_path, migrated_url), ("callbacks",))


async def store(
    engine: AsyncEngine, linkedid: str, caller: str, minutes_ago: float, spam: SpamReason | None
) -> int:
    """A missed call on the tracked number, stored as the writer stores it; its id."""
    start = NOW - timedelta(minutes=minutes_ago)
    record = missed_call(linkedid, start, caller).replace(source="google", spam=spam)
    async with engine.begin() as conn:
        await save_call(conn, record)
        await apply_call(conn, record, CallbackSettings(), now=start)
        query = select(CallRow.id).where(CallRow.linkedid == linkedid)
        return int((await conn.execute(query)).scalar_one())


async def open_tasks(cli: Cli) -> list[dict[str, object]]:
    return list(json.loads(await cli.ok("list", "--format", "json")))


async def test_list_mark_and_undo(cli: Cli, callbacks_cli: Cli, engine: AsyncEngine) -> None:
    """spam list shows the period's spam calls with their reason; undo on a customer's call joins or
    opens their callback task, and marking all their calls as spam closes it, each answer saying
    so."""
    robot = await store(engine, "r1", ROBOT, 30, SpamReason.BLOCKED)
    first = await store(engine, "c1", CUSTOMER, 12, None)
    redial = await store(engine, "c2", CUSTOMER, 11, SpamReason.REPEAT)
    [task] = await open_tasks(callbacks_cli)  # the customer's first call; the robot has none
    assert task["tries"] == 1

    rows = table_rows(await cli.ok("list", "--from", SINCE, "--to", TODAY), COLUMNS)
    assert [(row["id"], row["reason"]) for row in rows] == [
        (str(redial), "repeat calls"),
        (str(robot), "blocked number"),
    ]
    assert rows[1]["caller"] == "8 (800) 100-00-00"
    assert rows[1]["status"] == "missed (no_answer)"
    listed = json.loads(await cli.ok("list", "--from", SINCE, "--to", TODAY, "--format", "json"))
    assert [(call["id"], call["reason"], call["caller"]) for call in listed] == [
        (redial, "repeat", CUSTOMER),
        (robot, "blocked", ROBOT),
    ]

    # the redial was a real customer: undoing it joins their callback task
    out = await cli.ok("undo", str(redial), "--by", "101")
    assert out.strip() == (
        f"call {redial} is no spam any more (was: repeat calls), changed by 101;"
        f" it joined callback task {task['id']}"
    )
    [joined] = await open_tasks(callbacks_cli)
    assert (joined["id"], joined["tries"]) == (task["id"], 2)

    # marking both of the customer's calls as spam leaves the task nothing to call back
    assert (await cli.ok("mark", str(first), "--by", "101")).strip() == (
        f"call {first} marked as spam by 101"
    )
    out = await cli.ok("mark", str(redial), "--by", "101")
    assert out.strip() == (
        f"call {redial} marked as spam by 101;"
        f" callback task {task['id']} closed (only spam calls left)"
    )
    assert await open_tasks(callbacks_cli) == []
    rows = table_rows(await cli.ok("list", "--from", SINCE, "--to", TODAY), COLUMNS)
    assert [(row["id"], row["reason"], row["changed by"]) for row in rows] == [
        (str(redial), "marked by hand", "101"),
        (str(first), "marked by hand", "101"),
        (str(robot), "blocked number", ""),
    ]

    # the robot was a customer after all: undo opens a callback task for them
    out = await cli.ok("undo", str(robot), "--by", "101")
    assert "opened callback task" in out
    [opened] = await open_tasks(callbacks_cli)
    assert (opened["customer"], opened["tries"], opened["source"]) == (ROBOT, 1, "google")


async def test_errors_are_one_line_and_exit_1(cli: Cli, engine: AsyncEngine) -> None:
    """Marking an unknown, already spam or outbound call, undoing a call that is not spam, or a bad
    date exits 1 with one line saying why; mark without --by is refused, and an empty period says
    there is no spam."""
    spam = await store(engine, "r1", ROBOT, 5, SpamReason.BLOCKED)
    plain = await store(engine, "c1", CUSTOMER, 4, None)
    assert await cli.fails("mark", "999999", "--by", "101") == (
        "error: cannot mark call 999999: no such call"
    )
    assert await cli.fails("mark", str(spam), "--by", "101") == (
        f"error: call {spam} is spam already (blocked)"
    )
    assert await cli.fails("undo", str(plain), "--by", "101") == (
        f"error: call {plain} is not marked as spam"
    )
    async with engine.begin() as conn:
        await conn.execute(update(CallRow).where(CallRow.id == plain).values(direction="outbound"))
    assert await cli.fails("mark", str(plain), "--by", "101") == (
        f"error: cannot mark call {plain}: it is not an inbound call"
    )
    message = await cli.fails("list", "--from", "yesterday", "--to", TODAY)
    assert message.startswith("error: --from 'yesterday': write a date")
    run = await cli("mark", str(plain))
    assert run.code == 2 and "--by" in run.err  # who marks it must be said
    assert "no spam calls in this period" in await cli.ok(
        "list", "--from", "2020-01-01", "--to", "2020-01-02"
    )


async def test_undo_help_says_what_it_does(cli: Cli) -> None:
    """spam undo --help says that undoing opens or joins the customer's callback task."""
    out = await cli.ok("undo", "--help")
    assert "opens (or joins) its customer's callback task" in " ".join(out.split())
