"""`pbx-tracker export metrica|ga4` as a marketer runs it: a subprocess, a config file, a
real database (SQLite and PostgreSQL through `migrated_url`).

Calls are stored relative to the real clock (the command judges the 21-day and
72-hour windows against it).  Days are cut in the reports' zone: the tests of
that store calls near Moscow midnight and check the file against
`pbx-tracker report` over the same day, and run the shipped systemd unit's
command as the timer would.  `ga4 --send` posts to an aiohttp server on
127.0.0.1 that runs in the test's event loop, so the subprocess is started
with `asyncio.create_subprocess_exec`.  Every run is bounded by a timeout; the
tests check what the user sees (stdout, stderr, exit code) and the files.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cli_runner import Cli, run_process
from ga4_server import Collector

from pbx_tracker.attribution.visits import Visit, save_visit
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction
from pbx_tracker.store.calls import save_calls
from stored import connected

pytestmark = pytest.mark.slow

EXPORT = ("export",)
API_SECRET = "cli-ga4-s3cret-7f2a"
YM_ID = "1700000000123456789"
GA_ID = "1122334455.1700000000"
NOW = datetime.now(UTC).replace(microsecond=0)
FIRST_DAY = (NOW - timedelta(days=30)).date().isoformat()
LAST_DAY = NOW.date().isoformat()
MOSCOW = ZoneInfo("Europe/Moscow")
ROOT = Path(__file__).resolve().parents[2]
METRICA_UNIT = ROOT / "systemd" / "pbx-tracker-export-metrica.service"


def write_config(
    tmp_path: Path,
    database_url: str,
    ga4: dict[str, Any] | None = None,
    *,
    timezone: str | None = "UTC",
) -> Path:
    """The config file; days in ``timezone`` (None: the machine's zone)."""
    config: dict[str, Any] = {
        "node": "pbx1",
        "ami": {"secret": "unused"},
        "database": {"url": database_url, "spill_path": str(tmp_path / "spill.jsonl")},
        "logging": {"level": "info", "format": "json"},
    }
    if timezone is not None:
        config["routing"] = {"timezone": timezone}
    if ga4 is not None:
        config["exports"] = {"ga4": ga4}
    path = tmp_path / "pbx-tracker.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


async def store(url: str, visit: Visit, calls: list[CallRecord]) -> None:
    """The visit and its calls, stored as the daemon would."""
    async with connected(url, write=True) as conn:
        await save_visit(conn, visit)
        await save_calls(conn, calls)


def answered_call(linkedid: str, started_at: datetime, session_id: str | None) -> CallRecord:
    return CallRecord(
        linkedid=linkedid,
        node="pbx1",
        direction=Direction.INBOUND,
        did="+74951110010",
        caller="+79161234567",
        caller_name=None,
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by="101",
        transferred_to=None,
        started_at=started_at,
        answered_at=started_at + timedelta(seconds=6),
        ended_at=started_at + timedelta(seconds=86),
        ring_seconds=6,
        talk_seconds=80,
        recording_path=None,
        source="yandex-direct",
        medium="cpc",
        campaign="spring",
        first_time_caller=True,
        session_id=session_id,
    )


CALL_AT = NOW - timedelta(hours=2)
OLD_CALL_AT = NOW - timedelta(days=25)


@pytest.fixture(name="database")
async def _database(migrated_url: str) -> str:
    """Two calls of the visit with both analytics ids (2 hours and 25 days ago), one
    without a visit (1 hour ago)."""
    started = NOW - timedelta(days=26)
    visit = Visit(
        id="v1",
        pool="site",
        started_at=started,
        last_seen_at=started,
        landing_page="https://okna.example/",
        ym_client_id=YM_ID,
        ga_client_id=GA_ID,
    )
    calls = [
        answered_call("old", OLD_CALL_AT, "v1"),
        answered_call("recent", CALL_AT, "v1"),
        answered_call("static", NOW - timedelta(hours=1), None),
    ]
    await store(migrated_url, visit, calls)
    return migrated_url


async def test_metrica_file(tmp_path: Path, database: str) -> None:
    """export metrica writes Metrica's CSV header and one row per call it can use, and says how many
    calls were left out as older than 21 days or without a Metrica ClientId."""
    cli = Cli(write_config(tmp_path, database), EXPORT)
    out = tmp_path / "metrica.csv"
    stdout = await cli.ok("metrica", "--from", FIRST_DAY, "--to", LAST_DAY, "--out", str(out))
    assert stdout == (
        f"1 call written to {out}; 1 older than 21 days left out (Metrica joins calls to "
        "visits only within 21 days); 1 without a Metrica ClientId left out\n"
    )
    with out.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    assert out.read_text(encoding="utf-8").splitlines()[0] == (
        "ClientId,DateTime,PhoneNumber,TalkDuration,HoldDuration,CallMissed,Tag,FirstTimeCaller,URL"
    )
    assert rows[1:] == [
        [
            YM_ID,
            str(int(CALL_AT.timestamp())),
            "+79161234567",
            "80",
            "6",
            "0",
            "yandex-direct:spring",
            "1",
            "https://okna.example/",
        ],
    ]


async def test_ga4_file(tmp_path: Path, database: str) -> None:
    """export ga4 --out writes one phone_call event with the visitor's GA client id and the call's
    time, and says how many calls were too old for GA4."""
    cli = Cli(write_config(tmp_path, database), EXPORT)
    out = tmp_path / "ga4.jsonl"
    stdout = await cli.ok("ga4", "--from", FIRST_DAY, "--to", LAST_DAY, "--out", str(out))
    assert stdout.startswith(f"1 event written to {out}; 1 older than 72 hours left out")
    [line] = out.read_text(encoding="utf-8").splitlines()
    body = json.loads(line)
    assert body["client_id"] == GA_ID
    [event] = body["events"]
    assert event["name"] == "phone_call"
    assert event["timestamp_micros"] == int(CALL_AT.timestamp()) * 1_000_000
    assert event["params"]["call_status"] == "answered"


async def test_ga4_send_with_the_secret_from_the_environment(
    tmp_path: Path, database: str, collector: Collector
) -> None:
    """export ga4 --send posts the event to GA4 with the measurement id from the config and the API
    secret from the environment, and says it was sent."""
    config = write_config(
        tmp_path, database, {"measurement_id": "G-E2E", "endpoint": collector.url}
    )
    cli = Cli(config, EXPORT, {"PBX_TRACKER_EXPORTS__GA4__API_SECRET": API_SECRET})
    stdout = await cli.ok("ga4", "--from", FIRST_DAY, "--to", LAST_DAY, "--send")
    assert stdout.startswith("1 event sent to GA4; 1 older than 72 hours left out")
    [(query, body)] = collector.seen
    assert query == {"measurement_id": "G-E2E", "api_secret": API_SECRET}
    assert body["client_id"] == GA_ID and len(body["events"]) == 1


async def test_ga4_send_failure(tmp_path: Path, database: str, collector: Collector) -> None:
    """When GA4 refuses with 403 export ga4 --send exits 1 with one line saying how many events were
    sent, never showing the API secret."""
    ga4 = {"measurement_id": "G-E2E", "api_secret": API_SECRET, "endpoint": collector.url}
    cli = Cli(write_config(tmp_path, database, ga4 | {"backoff": 0}), EXPORT)
    collector.answers = [403]
    run = await cli.failure("ga4", "--from", FIRST_DAY, "--to", LAST_DAY, "--send")
    assert run.error_line == "error: GA4 request 1 of 1: HTTP 403; 0 of 1 events were sent"
    assert API_SECRET not in run.out + run.err


async def test_ga4_send_without_configuration(tmp_path: Path, database: str) -> None:
    """export ga4 --send without GA4 configured exits 1 saying to set exports.ga4.measurement_id."""
    cli = Cli(write_config(tmp_path, database), EXPORT)
    run = await cli.failure("ga4", "--from", FIRST_DAY, "--to", LAST_DAY, "--send")
    assert run.error_line.startswith("error: GA4 is not configured: set exports.ga4.measurement_id")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["metrica", "--from", "2026-02-30", "--to", "2026-03-01", "--out", "x.csv"],
            "error: --from '2026-02-30': not a date, write YYYY-MM-DD",
        ),
        (
            ["metrica", "--from", "2026-03-02", "--to", "2026-03-01", "--out", "x.csv"],
            "error: --to 2026-03-01 is before --from 2026-03-02",
        ),
        (
            ["ga4", "--from", "2026-03-01", "--to", "1.3.2026", "--out", "x.jsonl"],
            "error: --to '1.3.2026': not a date, write YYYY-MM-DD",
        ),
        (
            ["ga4", "--from", "2026-03-01", "--to", "2026-03-01"],
            "error: give either --out FILE or --send",
        ),
    ],
)
async def test_wrong_arguments_are_one_line(
    tmp_path: Path, migrated_url: str, args: list[str], error: str
) -> None:
    """An impossible date, a period ending before it starts, a date in another format or ga4 without
    --out or --send exits 1 with one line saying what to write, and prints nothing else."""
    cli = Cli(write_config(tmp_path, migrated_url), EXPORT)
    run = await cli.failure(*args)
    assert run.error_line == error
    assert run.out == ""


# -- days in the reports' zone ---------------------------------------------------------------


def moscow(day: date, clock: str) -> datetime:
    """A Moscow wall-clock time of ``day`` as a UTC moment."""
    return datetime.combine(day, time.fromisoformat(clock), MOSCOW).astimezone(UTC)


def near_midnight(day: date) -> list[tuple[str, datetime]]:
    """The day's first and last second in Moscow, and 01:30 (22:30 UTC the day before)."""
    return [
        (f"{day}-first", moscow(day, "00:00:00")),
        (f"{day}-early", moscow(day, "01:30:00")),
        (f"{day}-last", moscow(day, "23:59:59")),
    ]


async def store_days(url: str, days: list[date]) -> dict[date, list[datetime]]:
    """Calls of one visit with a Metrica ClientId near each day's Moscow midnights; when
    each day's calls started."""
    started = NOW - timedelta(days=20)
    visit = Visit(id="v-msk", pool="site", started_at=started, last_seen_at=started,
                  landing_page="https://okna.example/", ym_client_id=YM_ID)  # fmt: skip
    moments = {day: near_midnight(day) for day in days}
    calls = [answered_call(name, at, "v-msk") for day in days for name, at in moments[day]]
    await store(url, visit, calls)
    return {day: [at for _, at in moments[day]] for day in days}


def metrica_times(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as file:
        return [row["DateTime"] for row in csv.DictReader(file)]


def unix(moments: list[datetime]) -> list[str]:
    return [str(int(moment.timestamp())) for moment in moments]


@pytest.mark.parametrize(
    ("timezone", "machine_zone"),
    [("Europe/Moscow", "UTC"), (None, "Europe/Moscow")],
    ids=["routing-timezone", "machine-zone"],
)
async def test_a_day_is_the_same_day_as_in_reports(
    tmp_path: Path, migrated_url: str, timezone: str | None, machine_zone: str
) -> None:
    """Moscow days (from routing.timezone, or the machine's zone when it is unset): a
    call at 22:30 UTC is in the next day's file, and the file holds the calls that
    `report` counts for that day."""
    day = NOW.astimezone(MOSCOW).date() - timedelta(days=3)
    started = await store_days(
        migrated_url, [day - timedelta(days=1), day, day + timedelta(days=1)]
    )
    config = write_config(tmp_path, migrated_url, timezone=timezone)
    cli = Cli(config, (), {"TZ": machine_zone})
    out = tmp_path / "metrica.csv"
    one_day = ("--from", day.isoformat(), "--to", day.isoformat())

    stdout = await cli.ok("export", "metrica", *one_day, "--out", str(out))
    report = json.loads(await cli.ok("report", "days", *one_day, "--format", "json"))

    assert stdout.startswith(f"3 calls written to {out};")
    assert metrica_times(out) == unix(started[day])
    early = started[day][1]
    assert (early.hour, early.minute, early.date()) == (22, 30, day - timedelta(days=1))
    assert [(row["day"], row["calls"]) for row in report["rows"]] == [(day.isoformat(), 3)]


def unit_command(config: Path, folder: Path) -> str:
    """The shell command of the shipped unit's ExecStart, with this test's program, config
    file and folder in place of the installed ones."""
    text = METRICA_UNIT.read_text(encoding="utf-8")
    match = re.search(r"^ExecStart=/bin/sh -c '(.*)'$", text, re.MULTILINE)
    assert match is not None, "ExecStart=/bin/sh -c '…' not found"
    command = match.group(1).replace("%%", "%")
    program = f"{shlex.quote(sys.executable)} -m pbx_tracker"
    for installed, here in [
        ("/opt/pbx-tracker/bin/pbx-tracker", program),
        ("/etc/pbx-tracker/config.yaml", shlex.quote(str(config))),
        ("/var/lib/pbx-tracker/exports", str(folder)),
    ]:
        assert installed in command, installed
        command = command.replace(installed, here)
    return command


async def test_the_timer_unit_writes_yesterdays_file_of_the_zone(
    tmp_path: Path, migrated_url: str
) -> None:
    """The unit's command with TZ=Europe/Moscow (what its comments say to set when
    routing.timezone names another zone than the machine's) writes the file of
    Moscow's yesterday, holding that day's calls only."""
    today = NOW.astimezone(MOSCOW).date()
    days = [today - timedelta(days=n) for n in (3, 2, 1, 0)] + [today + timedelta(days=1)]
    started = await store_days(migrated_url, days)
    config = write_config(tmp_path, migrated_url, timezone="Europe/Moscow")
    folder = tmp_path / "exports"
    folder.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PBX_TRACKER_")}
    command = ["/bin/sh", "-c", unit_command(config, folder)]
    run = await run_process(command, {**clean, "TZ": "Europe/Moscow"}, "the unit's command")
    assert run.code == 0, run.err

    [written] = folder.iterdir()
    day = date.fromisoformat(written.name.removeprefix("metrica-").removesuffix(".csv"))
    # yesterday in Moscow (or today, had Moscow's midnight passed while it ran)
    assert day in (today - timedelta(days=1), today)
    assert run.out.startswith(f"3 calls written to {written};")
    assert metrica_times(written) == unix(started[day])
