"""Exports for the ad platforms from a real database (SQLite and PostgreSQL).

Visits and calls are stored as the daemon stores them; the Metrica file and
the GA4 events of a small data set are checked value by value, and GA4
sending goes to an aiohttp server on 127.0.0.1 that records every request.
Days are cut in the reports' zone (UTC for the small data set; Moscow for the
calls near midnight, checked against the report of the same day).
"""

from __future__ import annotations

import csv
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
from ga4_server import Collector
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.attribution.visits import Visit, save_visit
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction, MissedReason
from pbx_tracker.command_error import CommandError
from pbx_tracker.config import Settings, settings_from_mapping
from pbx_tracker.exports.calls import load_calls, parse_period
from pbx_tracker.exports.commands import export_ga4, export_metrica
from pbx_tracker.reports.commands import show_report
from pbx_tracker.store.calls import calls_table, save_calls

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
API_SECRET = "ga4-api-s3cret-value"
MEASUREMENT_ID = "G-TEST12345"
YM_ANNA = "1700000000111222333"
YM_BORIS = "1700000000444555666"
GA_ANNA = "1234567890.1700000000"
GA_VERA = "987654321.1700000500"
HEADER = (
    "ClientId,DateTime,PhoneNumber,TalkDuration,HoldDuration,CallMissed,Tag,FirstTimeCaller,URL"
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def unix(text: str) -> str:
    return str(int(at(text).timestamp()))


def micros(text: str) -> int:
    return int(at(text).timestamp()) * 1_000_000


def visit(visit_id: str, **ids: str) -> Visit:
    started = NOW - timedelta(days=30)
    return Visit(id=visit_id, pool="site", started_at=started, last_seen_at=started, **ids)


VISITS = [
    visit(
        "v-anna", ym_client_id=YM_ANNA, ga_client_id=GA_ANNA, landing_page="https://okna.example/"
    ),
    visit("v-boris", ym_client_id=YM_BORIS, landing_page="https://okna.example/sale?a=1,b=2"),
    visit("v-vera", ga_client_id=GA_VERA, landing_page="https://okna.example/vera"),
    visit("v-none", landing_page="https://okna.example/none"),
]


def call(linkedid: str, started: str, *, talk: int = 0, ring: int = 5, **more: Any) -> CallRecord:
    """An inbound call; answered when it has talk time."""
    started_at = at(started)
    answered = talk > 0
    values: dict[str, Any] = {
        "caller": "+79161234567",
        "first_time_caller": True,
        "source": "yandex-direct",
        "medium": "cpc",
        "campaign": "spring",
    }
    values |= more
    return CallRecord(
        linkedid=linkedid,
        node="pbx1",
        direction=Direction.INBOUND,
        did="+74951110010",
        caller_name=None,
        status=CallStatus.ANSWERED if answered else CallStatus.MISSED,
        missed_reason=None if answered else MissedReason.NO_ANSWER,
        answered_by="101" if answered else None,
        transferred_to=None,
        started_at=started_at,
        answered_at=started_at + timedelta(seconds=ring) if answered else None,
        ended_at=started_at + timedelta(seconds=ring + talk),
        ring_seconds=ring,
        talk_seconds=talk,
        recording_path=None,
        **values,
    )


CALLS = [
    # 28 days before NOW: too old for both
    call("old", "2026-02-10 10:00:00", talk=60, session_id="v-anna"),
    # 4 days before NOW: in Metrica's 21 days, not in GA4's 72 hours
    call("four-days", "2026-03-06 08:15:00", talk=31, ring=4, session_id="v-anna"),
    call(
        "boris-missed",
        "2026-03-09 18:30:00",
        ring=20,
        caller="+79031112233",
        first_time_caller=False,
        source="google",
        campaign=None,
        session_id="v-boris",
    ),
    call("static", "2026-03-10 08:00:00", talk=50, session_id=None, source="flyer"),
    call(
        "anna",
        "2026-03-10 09:00:05",
        talk=95,
        ring=7,
        session_id="v-anna",
        utm_term="plastic windows",
    ),
    call("vera", "2026-03-10 10:00:00", talk=20, ring=3, session_id="v-vera", medium=None),
    call(
        "hidden",
        "2026-03-10 11:00:00",
        talk=40,
        caller=None,
        first_time_caller=None,
        session_id="v-anna",
    ),
    call("nobody", "2026-03-10 11:30:00", talk=10, session_id="v-none"),
]


def settings_for(url: str, *, timezone: str = "UTC", **exports: Any) -> Settings:
    data = {
        "node": "pbx1",
        "database": {"url": url},
        "routing": {"timezone": timezone},
        "exports": exports,
    }
    return settings_from_mapping(data, environ={}, need_ami_secret=False)


async def metrica_export(settings: Settings, first: str, last: str, out: Path) -> str:
    """`pbx-tracker export metrica` with this config, at NOW."""
    return await export_metrica(
        settings.database.url,
        settings.exports,
        first,
        last,
        out,
        zone=settings.report_rules().zone,
        now=NOW,
    )


async def ga4_export(settings: Settings, first: str, last: str, *, out: Path | None) -> str:
    """`pbx-tracker export ga4` with this config, at NOW (``out`` None: --send)."""
    return await export_ga4(
        settings.database.url,
        settings.exports,
        first,
        last,
        out=out,
        zone=settings.report_rules().zone,
        target_seconds=settings.calls.target_seconds,
        now=NOW,
    )


async def report_of(settings: Settings, kind: str, day: str, fmt: str) -> str:
    """`pbx-tracker report KIND --from DAY --to DAY` with this config."""
    rules, directory = settings.report_rules(), settings.directory
    return await show_report(
        settings.database.url, rules, directory, kind, start=day, end=day, group_by=None, fmt=fmt
    )


async def store(engine: AsyncEngine, calls: list[CallRecord], visits: list[Visit]) -> None:
    async with engine.begin() as conn:
        for item in visits:
            await save_visit(conn, item)
        await save_calls(conn, calls)


@pytest.fixture(name="url")
async def _url(engine: AsyncEngine, migrated_url: str) -> str:
    """The database with the small data set stored."""
    await store(engine, CALLS, VISITS)
    return migrated_url


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


# -- the period ---------------------------------------------------------------------------


async def test_a_period_is_whole_days_both_included(engine: AsyncEngine, url: str) -> None:
    """An export from one day to another includes every call of both the first and the last day."""
    utc = ZoneInfo("UTC")
    async with engine.connect() as conn:
        one_day = await load_calls(conn, parse_period("2026-03-09", "2026-03-09", utc))
        last_days = await load_calls(conn, parse_period("2026-03-06", "2026-03-10", utc))
    assert [c.started_at for c in one_day] == [at("2026-03-09 18:30:00")]
    assert len(last_days) == 7


# Moscow is UTC+3: its 9 March runs from 8 March 21:00 UTC to 9 March 21:00 UTC.
NEAR_MIDNIGHT = [
    call("msk-8th-last", "2026-03-08 20:59:59", talk=30, session_id="v-anna"),
    call("msk-9th-first", "2026-03-08 21:00:00", talk=30, session_id="v-anna"),
    call("msk-9th-0130", "2026-03-08 22:30:00", talk=30, session_id="v-anna"),
    call("msk-9th-last", "2026-03-09 20:59:59", talk=30, session_id="v-anna"),
    call("msk-10th-0130", "2026-03-09 22:30:00", talk=30, session_id="v-anna"),
]
MOSCOW_9TH = ["2026-03-08 21:00:00", "2026-03-08 22:30:00", "2026-03-09 20:59:59"]


async def test_a_day_is_cut_in_the_reports_zone(
    engine: AsyncEngine, migrated_url: str, tmp_path: Path
) -> None:
    """A call at 22:30 UTC is the next day's in Moscow: 9 March's Metrica file and GA4
    events hold the calls of Moscow's 9 March, the ones its report counts."""
    await store(engine, NEAR_MIDNIGHT, VISITS[:1])
    settings = settings_for(migrated_url, timezone="Europe/Moscow")
    metrica, ga4 = tmp_path / "metrica.csv", tmp_path / "ga4.jsonl"

    await metrica_export(settings, "2026-03-09", "2026-03-09", metrica)
    await ga4_export(settings, "2026-03-09", "2026-03-09", out=ga4)
    report = await report_of(settings, "days", "2026-03-09", "json")

    assert [row[1] for row in read_csv(metrica)[1:]] == [unix(t) for t in MOSCOW_9TH]
    lines = ga4.read_text(encoding="utf-8").splitlines()
    stamps = [json.loads(line)["events"][0]["timestamp_micros"] for line in lines]
    assert stamps == [micros(t) for t in MOSCOW_9TH]
    assert [(row["day"], row["calls"]) for row in json.loads(report)["rows"]] == [("2026-03-09", 3)]


async def test_a_day_with_a_summer_time_change(engine: AsyncEngine, migrated_url: str) -> None:
    """Berlin's 29 March 2026 has 23 hours (clocks go forward at 02:00): it runs from
    28 March 23:00 UTC to 29 March 22:00 UTC."""
    calls = [
        call("berlin-28th-last", "2026-03-28 22:59:59"),
        call("berlin-29th-first", "2026-03-28 23:00:00"),
        call("berlin-29th-last", "2026-03-29 21:59:59"),
        call("berlin-30th-first", "2026-03-29 22:00:00"),
    ]
    await store(engine, calls, [])
    period = parse_period("2026-03-29", "2026-03-29", ZoneInfo("Europe/Berlin"))
    async with engine.connect() as conn:
        found = await load_calls(conn, period)
    assert [c.started_at for c in found] == [at("2026-03-28 23:00:00"), at("2026-03-29 21:59:59")]


# -- Yandex Metrica -----------------------------------------------------------------------


async def test_metrica_file_rows(url: str, tmp_path: Path) -> None:
    """Calls with a ClientId of the last 21 days, oldest first; the rest counted."""
    out = tmp_path / "metrica.csv"
    summary = await metrica_export(settings_for(url), "2026-02-01", "2026-03-10", out)
    assert out.read_text(encoding="utf-8").splitlines()[0] == HEADER
    assert read_csv(out)[1:] == [
        [YM_ANNA, unix("2026-03-06 08:15:00"), "+79161234567", "31", "4", "0",
         "yandex-direct:spring", "1", "https://okna.example/"],
        [YM_BORIS, unix("2026-03-09 18:30:00"), "+79031112233", "0", "20", "1",
         "google", "0", "https://okna.example/sale?a=1,b=2"],
        [YM_ANNA, unix("2026-03-10 09:00:05"), "+79161234567", "95", "7", "0",
         "yandex-direct:spring", "1", "https://okna.example/"],
        [YM_ANNA, unix("2026-03-10 11:00:00"), "", "40", "5", "0",
         "yandex-direct:spring", "", "https://okna.example/"],
    ]  # fmt: skip
    assert summary == (
        f"4 calls written to {out}; 1 older than 21 days left out (Metrica joins calls to "
        "visits only within 21 days); 3 without a Metrica ClientId left out"
    )


async def test_a_spam_call_is_left_out_and_counted(
    engine: AsyncEngine, url: str, tmp_path: Path
) -> None:
    """Boris's call marked spam (a manager's mark) is no conversion for Metrica."""
    async with engine.begin() as conn:
        await conn.execute(
            update(calls_table).where(calls_table.c.caller == "+79031112233").values(spam=True)
        )
    out = tmp_path / "metrica.csv"
    summary = await metrica_export(settings_for(url), "2026-02-01", "2026-03-10", out)
    assert YM_BORIS not in out.read_text(encoding="utf-8")
    assert summary.startswith(f"3 calls written to {out};")
    assert summary.endswith("without a Metrica ClientId left out; 1 spam call left out")


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("source", ["yandex-direct", "google"]), ("campaign", ["spring", ""]), ("none", ["", ""])],
)
async def test_metrica_tag_setting(url: str, tmp_path: Path, tag: str, expected: list[str]) -> None:
    """The Metrica file's tag column holds the call's source, its campaign or nothing, as
    exports.metrica.tag says."""
    out = tmp_path / "metrica.csv"
    settings = settings_for(url, metrica={"tag": tag})
    await metrica_export(settings, "2026-03-06", "2026-03-09", out)
    assert [row[6] for row in read_csv(out)[1:]] == expected


async def test_text_from_a_visit_is_written_as_text_never_a_formula(
    engine: AsyncEngine, migrated_url: str, tmp_path: Path
) -> None:
    """A UTM tag and a landing page as the public visits API may store them: the Metrica
    file and the report's CSV start those cells with a quote (OWASP's CSV Injection);
    Metrica's own columns and the numbers are left as they are."""
    link = '=HYPERLINK("http://evil.example/","click")'
    eve = visit("v-eve", ym_client_id=YM_ANNA, landing_page="@SUM(1+1)*cmd|' /C calc'!A0")
    hostile = call("eve", "2026-03-10 09:00:05", talk=95, ring=7, session_id="v-eve", source=link)
    await store(engine, [hostile], [eve])
    settings = settings_for(migrated_url)
    out = tmp_path / "metrica.csv"
    await metrica_export(settings, "2026-03-10", "2026-03-10", out)
    assert read_csv(out)[1:] == [
        [YM_ANNA, unix("2026-03-10 09:00:05"), "+79161234567", "95", "7", "0",
         f"'{link}:spring", "1", "'@SUM(1+1)*cmd|' /C calc'!A0"],
    ]  # fmt: skip

    report = await report_of(settings, "campaigns", "2026-03-10", "csv")
    header, row = csv.reader(report.splitlines())
    cells = dict(zip(header, row, strict=True))
    assert (cells["source"], cells["campaign"]) == (f"'{link}", "spring")
    assert (cells["calls"], cells["talk_seconds"], cells["missed_rate"]) == ("1", "95", "0.0")


async def test_an_empty_period_gives_the_header_only(url: str, tmp_path: Path) -> None:
    """A period without calls gives a Metrica file with only its header, and the summary says 0
    calls were written."""
    out = tmp_path / "metrica.csv"
    summary = await metrica_export(settings_for(url), "2025-01-01", "2025-01-31", out)
    assert read_csv(out) == [HEADER.split(",")]
    assert summary.startswith("0 calls written")


async def test_an_unwritable_file_is_one_error_line(url: str, tmp_path: Path) -> None:
    """An export to a folder that does not exist fails with one line saying the file cannot be
    written and why."""
    out = tmp_path / "missing-folder" / "metrica.csv"
    with pytest.raises(CommandError, match=r"^cannot write .*metrica\.csv: "):
        await metrica_export(settings_for(url), "2026-03-01", "2026-03-10", out)


# -- GA4: the events ----------------------------------------------------------------------


def anna_event() -> dict[str, Any]:
    return {
        "name": "phone_call",
        "timestamp_micros": micros("2026-03-10 09:00:05"),
        "params": {
            "source": "yandex-direct",
            "medium": "cpc",
            "campaign": "spring",
            "term": "plastic windows",
            "call_status": "answered",
            "talk_seconds": 95,
            "first_time_caller": 1,
            "target_call": 1,
            "engagement_time_msec": 1,
        },
    }


EXPECTED_LINES = [
    {"client_id": GA_ANNA, "events": [anna_event()]},
    {
        "client_id": GA_VERA,
        "events": [
            {
                "name": "phone_call",
                "timestamp_micros": micros("2026-03-10 10:00:00"),
                "params": {
                    "source": "yandex-direct",
                    "campaign": "spring",
                    "call_status": "answered",
                    "talk_seconds": 20,
                    "first_time_caller": 1,
                    "target_call": 0,
                    "engagement_time_msec": 1,
                },
            }
        ],
    },
    {
        "client_id": GA_ANNA,
        "events": [
            {
                "name": "phone_call",
                "timestamp_micros": micros("2026-03-10 11:00:00"),
                "params": {
                    "source": "yandex-direct",
                    "medium": "cpc",
                    "campaign": "spring",
                    "call_status": "answered",
                    "talk_seconds": 40,
                    "target_call": 1,
                    "engagement_time_msec": 1,
                },
            }
        ],
    },
]


async def test_ga4_file_holds_one_request_body_per_call(url: str, tmp_path: Path) -> None:
    """The GA4 file holds one request body per call, keys in GA4's order, and the summary says how
    many were written and how many were left out as too old or without a GA client id."""
    out = tmp_path / "ga4.jsonl"
    summary = await ga4_export(settings_for(url), "2026-02-01", "2026-03-10", out=out)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == EXPECTED_LINES
    assert json.loads(lines[0]) == EXPECTED_LINES[0]  # key order too
    assert list(json.loads(lines[0])["events"][0]["params"]) == list(anna_event()["params"])
    assert summary == (
        f"3 events written to {out}; 2 older than 72 hours left out (GA4 accepts events "
        "only 72 hours back); 3 without a GA client id left out"
    )


async def test_a_missed_call_is_no_target_call(
    engine: AsyncEngine, migrated_url: str, tmp_path: Path
) -> None:
    """A missed call goes to GA4 as missed with no talk time, and counts as neither a first-time nor
    a target call."""
    missed = call("m", "2026-03-10 11:00:00", ring=25, session_id="v-anna", first_time_caller=False)
    await store(engine, [missed], VISITS[:1])
    out = tmp_path / "ga4.jsonl"
    await ga4_export(settings_for(migrated_url), "2026-03-10", "2026-03-10", out=out)
    [line] = out.read_text(encoding="utf-8").splitlines()
    params = json.loads(line)["events"][0]["params"]
    assert (params["call_status"], params["talk_seconds"]) == ("missed", 0)
    assert (params["first_time_caller"], params["target_call"]) == (0, 0)


# -- GA4: sending -------------------------------------------------------------------------


def ga4_settings(url: str, endpoint: str, **more: Any) -> Settings:
    ga4 = {
        "measurement_id": MEASUREMENT_ID,
        "api_secret": API_SECRET,
        "endpoint": endpoint,
        "backoff": 0,
        "timeout": 5,
    }
    return settings_for(url, ga4=ga4 | more)


def many_calls(client: str, count: int, start: datetime) -> tuple[list[CallRecord], Visit]:
    """``count`` answered calls a minute apart, credited to one visit with GA id ``client``."""
    session = f"v-{client}"
    calls = [
        call(f"{client}-{n}", str(start + timedelta(minutes=n))[:19], talk=60, session_id=session)
        for n in range(count)
    ]
    return calls, visit(session, ga_client_id=client)


async def test_sending_batches_25_events_per_client_and_retries_a_500(
    engine: AsyncEngine, migrated_url: str, collector: Collector
) -> None:
    """60 calls of one client and 3 of another: 25+25+10 and 3; the first 500 is retried."""
    first, first_visit = many_calls("111.222", 60, NOW - timedelta(hours=5))
    second, second_visit = many_calls("333.444", 3, NOW - timedelta(hours=4, minutes=30))
    await store(engine, first + second, [first_visit, second_visit])
    collector.answers = [500]
    settings = ga4_settings(migrated_url, collector.url)

    summary = await ga4_export(settings, "2026-03-10", "2026-03-10", out=None)

    assert summary.startswith("63 events sent to GA4; 0 older than 72 hours")
    queries = {tuple(sorted(query.items())) for query, _ in collector.seen}
    assert queries == {(("api_secret", API_SECRET), ("measurement_id", MEASUREMENT_ID))}
    bodies = [body for _, body in collector.seen]
    assert bodies[0] == bodies[1]  # the retry after the 500
    batches = [(body["client_id"], len(body["events"])) for body in bodies[1:]]
    assert batches == [("111.222", 25), ("111.222", 25), ("111.222", 10), ("333.444", 3)]
    first_sent = [e["timestamp_micros"] for body in bodies[1:4] for e in body["events"]]
    assert first_sent == [micros(str(call.started_at)[:19]) for call in first]


async def test_a_refused_batch_stops_with_how_many_were_sent(
    engine: AsyncEngine, migrated_url: str, collector: Collector
) -> None:
    """204, then 400: the 400 is not retried, the error says 25 of 30 were sent; no log
    line and no error shows the API secret."""
    calls, one_visit = many_calls("111.222", 30, NOW - timedelta(hours=5))
    await store(engine, calls, [one_visit])
    collector.answers = [204, 400]
    settings = ga4_settings(migrated_url, collector.url)

    with structlog.testing.capture_logs() as logs, pytest.raises(CommandError) as caught:
        await ga4_export(settings, "2026-03-10", "2026-03-10", out=None)

    assert str(caught.value) == "GA4 request 2 of 2: HTTP 400; 25 of 30 events were sent"
    assert len(collector.seen) == 2
    assert [entry["reason"] for entry in logs] == ["HTTP 400"]
    assert API_SECRET not in repr(logs) + str(caught.value)


async def test_a_server_error_is_tried_attempts_times(
    engine: AsyncEngine, migrated_url: str, collector: Collector
) -> None:
    """When GA4 keeps answering 5xx each attempt is logged with its status, and the error says how
    many attempts were made and how many events were sent, never showing the API secret."""
    calls, one_visit = many_calls("111.222", 2, NOW - timedelta(hours=5))
    await store(engine, calls, [one_visit])
    collector.answers = [503, 502, 500]
    settings = ga4_settings(migrated_url, collector.url, attempts=3)

    with structlog.testing.capture_logs() as logs, pytest.raises(CommandError) as caught:
        await ga4_export(settings, "2026-03-10", "2026-03-10", out=None)

    assert str(caught.value) == (
        "GA4 request 1 of 1: HTTP 500 after 3 attempts; 0 of 2 events were sent"
    )
    assert [entry["reason"] for entry in logs] == ["HTTP 503", "HTTP 502", "HTTP 500"]
    assert API_SECRET not in repr(logs)


async def test_an_unreachable_endpoint_fails_without_showing_the_secret(
    engine: AsyncEngine, migrated_url: str
) -> None:
    """An unreachable GA4 endpoint fails after the configured attempts with an error naming the
    address and the events sent, and the API secret appears nowhere."""
    calls, one_visit = many_calls("111.222", 1, NOW - timedelta(hours=5))
    await store(engine, calls, [one_visit])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/mp/collect"
    settings = ga4_settings(migrated_url, endpoint, attempts=2)

    with structlog.testing.capture_logs() as logs, pytest.raises(CommandError) as caught:
        await ga4_export(settings, "2026-03-10", "2026-03-10", out=None)

    message = str(caught.value)
    assert message.startswith(f"GA4 request 1 of 1: http://127.0.0.1:{port}/mp/collect: cannot")
    assert message.endswith("after 2 attempts; 0 of 1 events were sent")
    assert len(logs) == 2
    assert API_SECRET not in repr(logs) + message + repr(caught.value.__cause__)


async def test_sending_needs_the_measurement_id_and_the_secret(url: str) -> None:
    """Sending to GA4 with only a measurement id and no API secret is refused, saying to set
    exports.ga4."""
    settings = settings_for(url, ga4={"measurement_id": MEASUREMENT_ID})
    with pytest.raises(CommandError, match=r"^GA4 is not configured: set exports\.ga4"):
        await ga4_export(settings, "2026-03-01", "2026-03-10", out=None)


async def test_the_secret_is_one_of_the_redacted_values(migrated_url: str) -> None:
    """The GA4 API secret given in the environment is kept out of the settings' printed form and of
    what logs show."""
    env = {"PBX_TRACKER_EXPORTS__GA4__API_SECRET": API_SECRET}
    data = {"database": {"url": migrated_url}, "exports": {"ga4": {"measurement_id": "G-1"}}}
    settings = settings_from_mapping(data, environ=env, need_ami_secret=False)
    assert settings.exports.ga4.configured
    assert API_SECRET in settings.secret_values()
    assert API_SECRET not in repr(settings)
