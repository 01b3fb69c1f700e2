"""`pbx-tracker callbacks …` as a manager uses it: a subprocess, a config file, a real database.

Every command runs as `python -m pbx_tracker callbacks …` against a config
file written by the test (the `migrated_url` database, so SQLite and
PostgreSQL both); tasks are seeded as the daemon opens them (missed calls
saved, then applied).  `call` talks to a FakeAsterisk on loopback that runs in
the test's event loop, so the subprocess is started with
`asyncio.create_subprocess_exec` and the loop keeps serving AMI meanwhile.
Every subprocess is bounded by a timeout; the tests check what the user sees
(stdout, stderr, exit code) and what the database holds afterwards.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_runner import WAIT, Cli, table_rows
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.finished_calls import apply_call
from pbx_tracker.callbacks.policy import EventKind, Resolution, TaskStatus
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.calls.records import RingAttempt
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.store.calls import save_call
from stored import missed_call

pytestmark = pytest.mark.slow

CALLBACKS = ("callbacks",)
USER = "tracker"
SECRET = "cli-ami-secret-5c1e"
MANAGERS = {"101": "Anna", "102": "Boris", "103": "Vera"}
DID = "+74951234567"  # the tracked number of `stored.missed_call`
OTHER_DID = "+74951110001"
ANNA_CUSTOMER = "+79161234567"
BORIS_CUSTOMER = "+79031112233"
COLUMNS = ["id", "customer", "tries", "waiting", "source", "number", "assignee", "state"]
TASK_FIELDS = {field.name for field in fields(tasks.CallbackTask)}
TIME_FIELDS = {
    "created_at",
    "first_missed_at",
    "last_missed_at",
    "last_reminder_at",
    "escalated_at",
    "snoozed_until",
    "first_attempt_at",
    "resolved_at",
    "updated_at",
}


# -- running the command line ----------------------------------------------------------


def write_config(tmp_path: Path, database_url: str, *, ami_port: int, **manager_dial: str) -> Path:
    """A config file (JSON is YAML) for managers 101 Anna, 102 Boris, 103 Vera."""
    managers: list[dict[str, Any]] = []
    for extension, name in MANAGERS.items():
        manager: dict[str, Any] = {"name": name, "extension": extension, "group": "sales"}
        if f"m{extension}" in manager_dial:
            manager["dial"] = manager_dial[f"m{extension}"]
        managers.append(manager)
    config = {
        "node": "pbx1",
        "phone_region": "RU",
        "ami": {
            "host": "127.0.0.1",
            "port": ami_port,
            "username": USER,
            "secret": SECRET,
            "connect_timeout": 1.0,
            "reconnect_initial": 0.05,
            "reconnect_max": 0.2,
        },
        "database": {"url": database_url, "spill_path": str(tmp_path / "spill.jsonl")},
        "tracked_numbers": [
            {"did": DID, "source": "google"},
            {"did": OTHER_DID, "source": "yandex-direct"},
        ],
        "managers": managers,
        "routing": {"dial_template": "IAX2/{extension}/{extension}"},
        "callbacks": {"ring_me": {"context": "callback", "manager_ring_seconds": 5}},
        "logging": {"level": "info", "format": "json"},
    }
    path = tmp_path / "pbx-tracker.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def cli(tmp_path: Path, migrated_url: str) -> Cli:
    """The CLI on the migrated database; AMI points at a port nobody listens on."""
    return Cli(write_config(tmp_path, migrated_url, ami_port=free_port()), CALLBACKS)


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(username=USER, secret=SECRET, timestamp_events=True) as server:
        yield server


@pytest.fixture
def ami_cli(tmp_path: Path, migrated_url: str, pbx: FakeAsterisk) -> Cli:
    """The CLI with AMI at the FakeAsterisk."""
    return Cli(write_config(tmp_path, migrated_url, ami_port=pbx.port), CALLBACKS)


# -- seeding tasks as the daemon opens them ---------------------------------------------


async def seed(
    engine: AsyncEngine,
    linkedid: str,
    *,
    caller: str | None,
    manager: str,
    minutes_ago: float,
    did: str = DID,
    source: str = "google",
) -> int:
    """A missed call `minutes_ago` that only `manager` rang for; the task it opened or joined."""
    start = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    attempt = RingAttempt(manager, f"IAX2/{manager}-00000001", start, start, "noanswer")
    record = missed_call(linkedid, start, caller).replace(
        did=did, source=source, attempts=(attempt,), variables={"ROUTE_GROUP": "sales"}
    )
    async with engine.begin() as conn:
        await save_call(conn, record)
        change = await apply_call(
            conn, record, CallbackSettings(), now=start + timedelta(seconds=20)
        )
    assert change is not None and change.kind in ("opened", "joined")
    return change.task_id


async def task_in_db(engine: AsyncEngine, task_id: int) -> tasks.CallbackTask:
    async with engine.connect() as conn:
        task = await tasks.get_task(conn, task_id)
    assert task is not None
    return task


async def events_in_db(engine: AsyncEngine, task_id: int) -> list[tasks.TaskEvent]:
    async with engine.connect() as conn:
        return await tasks.task_events(conn, task_id)


def near_now(moment: datetime | None, plus: timedelta = timedelta(0)) -> bool:
    assert moment is not None
    return abs(moment - (datetime.now(UTC) + plus)) < timedelta(seconds=WAIT)


@pytest.fixture
async def three(engine: AsyncEngine) -> tuple[int, int, int]:
    """Anna's customer (tried twice, 2 h ago), Boris's (30 min ago), a hidden number (5 min)."""
    anna = await seed(engine, "m.1", caller=ANNA_CUSTOMER, manager="101", minutes_ago=125)
    joined = await seed(engine, "m.2", caller=ANNA_CUSTOMER, manager="101", minutes_ago=124)
    assert joined == anna
    boris = await seed(
        engine,
        "m.3",
        caller=BORIS_CUSTOMER,
        manager="102",
        minutes_ago=30,
        did=OTHER_DID,
        source="yandex-direct",
    )
    hidden = await seed(engine, "m.4", caller=None, manager="102", minutes_ago=5)
    return anna, boris, hidden


# -- list -----------------------------------------------------------------------------


async def test_list_without_tasks_says_so(cli: Cli) -> None:
    """With nothing to call back, callbacks list says "no callback tasks" (also with --all and
    --mine) and the JSON form is an empty list."""
    assert (await cli.ok("list")).strip() == "no callback tasks"
    assert (await cli.ok("list", "--all", "--mine", "101")).strip() == "no callback tasks"
    assert json.loads(await cli.ok("list", "--format", "json")) == []


async def test_list_shows_a_readable_table_newest_first(
    cli: Cli, three: tuple[int, int, int]
) -> None:
    """callbacks list shows open tasks newest first, with numbers written as people read them,
    tries, time waiting, source, number dialled, the manager's extension and name, and "hidden
    number" for a hidden caller."""
    anna, boris, hidden = three
    out = await cli.ok("list")
    assert "Callback tasks" in out
    rows = table_rows(out, COLUMNS)
    assert [row["id"] for row in rows] == [str(hidden), str(boris), str(anna)]
    assert rows[2] == {
        "id": str(anna),
        "customer": "8 (916) 123-45-67",
        "tries": "2",
        "waiting": "2 h 05 min",
        "source": "google",
        "number": "8 (495) 123-45-67",
        "assignee": "101 Anna",
        "state": "open",
    }
    assert rows[1] == {
        "id": str(boris),
        "customer": "8 (903) 111-22-33",
        "tries": "1",
        "waiting": "30 min",
        "source": "yandex-direct",
        "number": "8 (495) 111-00-01",
        "assignee": "102 Boris",
        "state": "open",
    }
    assert rows[0]["customer"] == "hidden number"
    assert (rows[0]["waiting"], rows[0]["assignee"]) == ("5 min", "102 Boris")
    assert ANNA_CUSTOMER not in out  # numbers are shown for people, not in E.164


async def test_list_mine_shows_only_that_managers_tasks(
    cli: Cli, three: tuple[int, int, int]
) -> None:
    """callbacks list --mine 102 shows only the tasks assigned to 102, and says so when a manager
    has none."""
    anna, boris, hidden = three
    assert [row["id"] for row in table_rows(await cli.ok("list", "--mine", "102"), COLUMNS)] == [
        str(hidden),
        str(boris),
    ]
    rows = table_rows(await cli.ok("list", "--mine", "101"), COLUMNS)
    assert [row["id"] for row in rows] == [str(anna)]
    assert (await cli.ok("list", "--mine", "103")).strip() == "no callback tasks"


async def test_list_all_includes_done_tasks(
    cli: Cli, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """A task closed with done leaves callbacks list, and list --all shows it again as closed by the
    manager who closed it."""
    anna, boris, hidden = three
    await cli.ok("done", str(boris), "--by", "101")
    rows = table_rows(await cli.ok("list"), COLUMNS)
    assert [row["id"] for row in rows] == [str(hidden), str(anna)]
    rows = table_rows(await cli.ok("list", "--all"), COLUMNS)
    assert [row["id"] for row in rows] == [str(hidden), str(boris), str(anna)]
    assert rows[1]["state"] == "closed by 101"
    assert [row["state"] for row in (rows[0], rows[2])] == ["open", "open"]
    assert (await task_in_db(engine, boris)).status is TaskStatus.DONE


async def test_list_as_json_has_iso_times_and_the_task_fields(
    cli: Cli, three: tuple[int, int, int]
) -> None:
    """callbacks list --format json gives every task field, times as ISO UTC, numbers in E.164 and a
    done task's resolution and who closed it."""
    anna, boris, hidden = three
    await cli.ok("done", str(hidden), "--by", "102")
    shown = json.loads(await cli.ok("list", "--all", "--format", "json"))
    assert [item["id"] for item in shown] == [hidden, boris, anna]
    for item in shown:
        assert set(item) == TASK_FIELDS
        for key in TIME_FIELDS:
            if item[key] is not None:
                assert item[key].endswith("Z"), (key, item[key])
                assert datetime.fromisoformat(item[key]).tzinfo is not None
    first = shown[2]
    assert (first["customer"], first["dialable"], first["tries"]) == (ANNA_CUSTOMER, True, 2)
    assert (first["status"], first["assignee"], first["group_name"]) == ("open", "101", "sales")
    assert (first["did"], first["source"], first["resolution"]) == (DID, "google", None)
    waited = datetime.now(UTC) - datetime.fromisoformat(first["first_missed_at"])
    assert timedelta(minutes=125) <= waited < timedelta(minutes=125, seconds=WAIT)
    done = shown[0]
    assert (done["customer"], done["dialable"], done["status"]) == (None, False, "done")
    assert (done["resolution"], done["resolved_by"]) == ("closed_by_manager", "102")
    assert near_now(datetime.fromisoformat(done["resolved_at"]))
    mine = json.loads(await cli.ok("list", "--format", "json", "--mine", "102"))
    assert [item["id"] for item in mine] == [boris]


# -- done -------------------------------------------------------------------------------


async def test_done_closes_the_task_and_records_who(
    cli: Cli, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """callbacks done closes the task, says so naming who closed it, and the closing is in the
    task's history."""
    anna, _, _ = three
    out = await cli.ok("done", str(anna), "--by", "101")
    assert out.strip() == f"callback task {anna} closed by 101"
    task = await task_in_db(engine, anna)
    assert (task.status, task.resolution, task.resolved_by) == (
        TaskStatus.DONE,
        Resolution.CLOSED_BY_MANAGER,
        "101",
    )
    assert near_now(task.resolved_at)
    assert (await events_in_db(engine, anna))[-1].kind is EventKind.CLOSED


async def test_done_twice_or_unknown_exits_1_with_one_line(
    cli: Cli, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """done without --by records "cli" as who closed it; done on a closed or unknown task exits 1
    with one line saying why and changes nothing."""
    anna, _, _ = three
    assert (await cli.ok("done", str(anna))).strip() == f"callback task {anna} closed by cli"
    closed = await task_in_db(engine, anna)
    assert closed.resolved_by == "cli"
    again, unknown = await asyncio.gather(cli.fails("done", str(anna)), cli.fails("done", "999"))
    assert again == f"error: cannot close task {anna}: it is done (closed_by_manager)"
    assert unknown == "error: cannot close task 999: no such task"
    assert await task_in_db(engine, anna) == closed  # the second `done` changed nothing


# -- snooze -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "message", "length", "listed"),
    [
        ("30m", "snoozed for 30 min", timedelta(minutes=30), r"snoozed for (29|30) min"),
        ("1h30m", "snoozed for 1 h 30 min", timedelta(minutes=90), r"snoozed for 1 h (29|30) min"),
    ],
)
async def test_snooze_shows_in_the_list(
    cli: Cli,
    engine: AsyncEngine,
    three: tuple[int, int, int],
    duration: str,
    message: str,
    length: timedelta,
    listed: str,
) -> None:
    """callbacks snooze with 30m or 1h30m says for how long, records who snoozed, and the list shows
    the task as snoozed with the time left."""
    anna, boris, _ = three
    out = await cli.ok("snooze", str(boris), duration, "--by", "102")
    assert out.strip() == f"callback task {boris} {message}"
    task = await task_in_db(engine, boris)
    assert task.is_open and near_now(task.snoozed_until, length)
    assert (await events_in_db(engine, boris))[-1].detail["by"] == "102"
    states = {row["id"]: row["state"] for row in table_rows(await cli.ok("list"), COLUMNS)}
    assert re.fullmatch(listed, states[str(boris)]), states
    assert states[str(anna)] == "open"


async def test_a_bad_snooze_exits_1_with_the_reason(
    cli: Cli, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """A snooze that is no duration, zero, over 30 days, for an unknown or a done task exits 1 with
    one line saying why and changes nothing."""
    anna, _, _ = three
    before = await task_in_db(engine, anna)
    errors = await asyncio.gather(
        *(cli.fails("snooze", str(anna), bad) for bad in ("soon", "0m", "40d")),
        cli.fails("snooze", "999", "30m"),
    )
    assert errors == [
        "error: 'soon' is no duration: write e.g. 30m, 2h, 1h30m or 1d",
        "error: '0m': a snooze must be longer than 0 and at most 30 days",
        "error: '40d': a snooze must be longer than 0 and at most 30 days",
        "error: cannot snooze task 999: no such task",
    ]
    assert await task_in_db(engine, anna) == before
    await cli.ok("done", str(anna))
    assert await cli.fails("snooze", str(anna), "1h") == (
        f"error: cannot snooze task {anna}: it is done (closed_by_manager)"
    )


# -- assign -----------------------------------------------------------------------------


async def test_assign_moves_the_task_to_another_manager(
    cli: Cli, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """callbacks assign moves a task to another manager, named in the answer, and it moves between
    their lists with a history event."""
    anna, _, _ = three
    out = await cli.ok("assign", str(anna), "103", "--by", "101")
    assert out.strip() == f"callback task {anna} assigned to 103 Vera"
    assert (await task_in_db(engine, anna)).assignee == "103"
    (row,) = table_rows(await cli.ok("list", "--mine", "103"), COLUMNS)
    assert (row["id"], row["assignee"]) == (str(anna), "103 Vera")
    assert (await cli.ok("list", "--mine", "101")).strip() == "no callback tasks"
    event = (await events_in_db(engine, anna))[-1]
    assert (event.kind, event.detail) == (
        EventKind.ASSIGNED,
        {"by": "101", "from": "101", "to": "103"},
    )


async def test_assign_to_an_unknown_extension_or_task_exits_1(
    cli: Cli, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """Assigning to an extension that is no manager, or an unknown task, exits 1 with one line
    saying which, and the task keeps its manager."""
    anna, _, _ = three
    errors = list(
        await asyncio.gather(
            cli.fails("assign", str(anna), "555"), cli.fails("assign", "999", "103")
        )
    )
    assert errors == [
        "error: 555 is no manager in the config",
        "error: cannot assign task 999: no such task",
    ]
    assert (await task_in_db(engine, anna)).assignee == "101"


# -- call -------------------------------------------------------------------------------


async def test_call_rings_the_assignee_then_dials_the_customer(
    ami_cli: Cli, pbx: FakeAsterisk, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """callbacks call rings the assigned manager's phone and then dials the customer, prints that
    outcome, counts the attempt and leaves the task open for the daemon to close, never showing the
    AMI secret."""
    anna, _, _ = three
    run = await ami_cli("call", str(anna))
    assert run.code == 0, run
    assert run.out.strip().splitlines()[-1] == (
        f"callback task {anna}: 101 manager 101 (IAX2/101/101) answered; "
        f"the customer {ANNA_CUSTOMER} is being dialled (answered)"
    )
    assert SECRET not in run.out + run.err
    (originate,) = pbx.actions_named("Originate")
    assert (originate["Channel"], originate["Context"], originate["Exten"]) == (
        "IAX2/101/101",
        "callback",
        "79161234567",
    )
    assert f"CALLBACK_TASK={anna}," in originate["Variable"]
    assert len(pbx.originated) == 1
    task = await task_in_db(engine, anna)
    assert (task.ringme_attempts, task.status) == (1, TaskStatus.OPEN)  # the daemon closes it
    assert near_now(task.first_attempt_at)
    event = (await events_in_db(engine, anna))[-1]
    assert (event.kind, event.detail) == (
        EventKind.ATTEMPT,
        {"channel": "ring_me", "manager": "101"},
    )


async def test_call_reports_a_busy_manager(
    ami_cli: Cli, pbx: FakeAsterisk, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """callbacks call to a busy manager says the manager is busy with Asterisk's reason, and counts
    the attempt."""
    _, boris, _ = three
    pbx.originate_outcomes["IAX2/102"] = "busy"
    run = await ami_cli("call", str(boris))
    assert run.code == 0, run
    assert run.out.strip().splitlines()[-1] == (
        f"callback task {boris}: 102 manager 102 (IAX2/102/102) is busy (Reason 5) (busy)"
    )
    (originate,) = pbx.actions_named("Originate")
    assert (originate["Channel"], originate["Exten"]) == ("IAX2/102/102", "79031112233")
    task = await task_in_db(engine, boris)
    assert (task.ringme_attempts, task.status) == (1, TaskStatus.OPEN)


async def test_call_with_another_manager_rings_that_phone(
    ami_cli: Cli, pbx: FakeAsterisk, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """callbacks call --manager 103 rings manager 103's phone instead of the assignee's, and records
    that manager on the attempt."""
    anna, _, _ = three
    run = await ami_cli("call", str(anna), "--manager", "103")
    assert run.code == 0, run
    assert (
        run.out.strip()
        .splitlines()[-1]
        .startswith(f"callback task {anna}: 103 manager 103 (IAX2/103/103) answered")
    )
    (originate,) = pbx.actions_named("Originate")
    assert originate["Channel"] == "IAX2/103/103"
    event = (await events_in_db(engine, anna))[-1]
    assert event.detail == {"channel": "ring_me", "manager": "103"}


async def test_call_refuses_a_hidden_number(
    ami_cli: Cli, pbx: FakeAsterisk, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """callbacks call on a hidden caller's task exits 1 saying the number cannot be dialled, and
    nothing is originated."""
    _, _, hidden = three
    line = await ami_cli.fails("call", str(hidden))
    assert line == f"error: cannot call back task {hidden}: the number cannot be dialled"
    assert pbx.actions_named("Originate") == []
    assert (await task_in_db(engine, hidden)).ringme_attempts == 0


async def test_call_refuses_when_every_attempt_is_used(
    ami_cli: Cli, pbx: FakeAsterisk, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """callbacks.ring_me.max_attempts (3) counts the attempts the database holds."""
    anna, _, _ = three
    async with engine.begin() as conn:
        for _ in range(3):
            await tasks.record_ringme_attempt(conn, anna, at=datetime.now(UTC), manager="101")
    assert await ami_cli.fails("call", str(anna)) == "error: all 3 attempts are used"
    assert pbx.actions_named("Originate") == []
    assert (await task_in_db(engine, anna)).ringme_attempts == 3


async def test_call_refuses_a_done_task(
    ami_cli: Cli, pbx: FakeAsterisk, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """callbacks call on a done task exits 1 saying it is done, and nothing is originated."""
    anna, _, _ = three
    await ami_cli.ok("done", str(anna))
    run = await ami_cli("call", str(anna))
    assert pbx.actions_named("Originate") == [], run
    assert run.code == 1 and "done" in run.error_line, run
    assert (await task_in_db(engine, anna)).ringme_attempts == 0


async def test_call_prints_only_its_outcome_on_stdout(
    ami_cli: Cli, pbx: FakeAsterisk, three: tuple[int, int, int]
) -> None:
    """callbacks call prints only its outcome on stdout, so scripts can read it."""
    anna, _, _ = three
    run = await ami_cli("call", str(anna))
    assert run.code == 0, run
    assert run.out.strip().startswith(f"callback task {anna}: 101 manager 101"), run.out


async def test_call_of_an_unknown_task_exits_1(ami_cli: Cli, pbx: FakeAsterisk) -> None:
    """callbacks call on an unknown task exits 1 with "no callback task 999" and originates
    nothing."""
    assert await ami_cli.fails("call", "999") == "error: no callback task 999"
    assert pbx.actions_named("Originate") == []


async def test_call_says_when_asterisk_rejects_the_originate(
    tmp_path: Path,
    migrated_url: str,
    pbx: FakeAsterisk,
    engine: AsyncEngine,
    three: tuple[int, int, int],
) -> None:
    """When Asterisk rejects the Originate (a bad dial string for the manager) callbacks call exits
    1 with Asterisk's message and no attempt is counted."""
    anna, _, _ = three
    cli = Cli(write_config(tmp_path, migrated_url, ami_port=pbx.port, m101="Bogus/101"), CALLBACKS)
    line = await cli.fails("call", str(anna))
    assert line == "error: Asterisk rejected the Originate: Invalid channel"
    (originate,) = pbx.actions_named("Originate")
    assert originate["Channel"] == "Bogus/101"
    assert (await task_in_db(engine, anna)).ringme_attempts == 0


async def test_call_without_asterisk_exits_1_saying_so(
    cli: Cli, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """Nobody listens on the AMI port: a bounded wait, then one line naming host and port."""
    anna, _, _ = three
    line = await cli.fails("call", str(anna))
    assert re.fullmatch(r"error: AMI 127\.0\.0\.1:\d+: no login within 3 s", line), line
    assert (await task_in_db(engine, anna)).ringme_attempts == 0


async def test_call_with_a_wrong_secret_exits_1_saying_so(
    tmp_path: Path, migrated_url: str, engine: AsyncEngine, three: tuple[int, int, int]
) -> None:
    """callbacks call with a wrong AMI secret exits 1 with one line naming the AMI address, never
    the secret, and nothing is originated."""
    anna, _, _ = three
    async with FakeAsterisk(username=USER, secret="another-secret") as other:
        cli = Cli(write_config(tmp_path, migrated_url, ami_port=other.port), CALLBACKS)
        run = await cli("call", str(anna))
        assert run.code == 1, run
        assert run.error_line.startswith(f"error: AMI 127.0.0.1:{other.port}: "), run.err
        assert other.actions_named("Originate") == []
    assert SECRET not in run.out + run.err
    assert (await task_in_db(engine, anna)).ringme_attempts == 0
