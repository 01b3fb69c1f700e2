"""The export formats without a database: periods, batching, event values, the config."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from pbx_tracker.command_error import CommandError
from pbx_tracker.config import ConfigError, settings_from_mapping
from pbx_tracker.exports.calls import ExportedCall, parse_period
from pbx_tracker.exports.ga4 import call_event, ga4_events, request_bodies
from pbx_tracker.exports.metrica import metrica_file, metrica_row
from pbx_tracker.exports.settings import ExportSettings

SECRET = "unit-ga4-secret"


def exported(**more: object) -> ExportedCall:
    values: dict[str, object] = {
        "id": 1,
        "started_at": datetime(2026, 3, 10, 9, 0, 5, 250_000, tzinfo=UTC),
        "caller": "+79161234567",
        "answered": True,
        "ring_seconds": 7,
        "talk_seconds": 30,
        "first_time_caller": False,
        "source": "yandex-direct",
        "medium": None,
        "campaign": None,
        "utm_term": None,
    }
    return ExportedCall(**(values | more))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [
        ("UTC", "2026-03-01 00:00", "2026-04-01 00:00"),
        # Moscow's midnight is 21:00 UTC the day before
        ("Europe/Moscow", "2026-02-28 21:00", "2026-03-31 21:00"),
        # Berlin: winter time (UTC+1) on 1 March, summer time (UTC+2) from 29 March
        ("Europe/Berlin", "2026-02-28 23:00", "2026-03-31 22:00"),
    ],
)
def test_a_period_runs_from_midnight_to_midnight_in_the_zone(
    zone: str, start: str, end: str
) -> None:
    """An export for 1 to 31 March covers midnight to midnight in the configured time zone (Moscow,
    Berlin with its summer-time change, UTC), converted to UTC."""
    period = parse_period("2026-03-01", "2026-03-31", ZoneInfo(zone))
    utc = (
        datetime.fromisoformat(start).replace(tzinfo=UTC),
        datetime.fromisoformat(end).replace(tzinfo=UTC),
    )
    assert (period.start, period.end) == utc


@pytest.mark.parametrize("text", ["20260301", "2026-3-1", "", "tomorrow", "2026-02-29"])
def test_only_real_dates_in_yyyy_mm_dd(text: str) -> None:
    """A date that is not a real YYYY-MM-DD day (no dashes, no zero padding, empty, a word, 29
    February 2026) is refused with a message saying how to write it."""
    with pytest.raises(CommandError, match="not a date, write YYYY-MM-DD"):
        parse_period(text, "2026-03-31", ZoneInfo("UTC"))


def test_the_export_zone_is_the_reports_zone() -> None:
    """Exports use the routing time zone like the reports, and no zone when none is configured."""
    data = {"routing": {"timezone": "Europe/Moscow"}}
    settings = settings_from_mapping(data, environ={}, need_ami_secret=False)
    assert settings.report_rules().zone == ZoneInfo("Europe/Moscow")
    unset = settings_from_mapping({}, environ={}, need_ami_secret=False)
    assert unset.report_rules().zone is None  # the machine's zone, as reports use


def test_metrica_date_time_is_unix_seconds_whatever_the_zone() -> None:
    """Metrica takes DateTime as a Unix timestamp (UTC): 22:30 UTC is 01:30 in Moscow the
    next day, and the same number either way."""
    moscow = datetime(2026, 3, 11, 1, 30, tzinfo=ZoneInfo("Europe/Moscow"))
    row = metrica_row(exported(started_at=moscow, ym_client_id="42"), "none")
    assert row[1] == str(int(datetime(2026, 3, 10, 22, 30, tzinfo=UTC).timestamp()))
    assert row[1] == "1773181800"


def test_events_are_grouped_by_client_at_most_25_a_request() -> None:
    """Calls sent to GA4 are grouped by client id, at most 25 events to a request, keeping their
    order."""
    events = [("a", {"n": n}) for n in range(26)] + [("b", {"n": 99}), ("a", {"n": 26})]
    bodies = request_bodies(events)
    assert [(body["client_id"], len(body["events"])) for body in bodies] == [
        ("a", 25),
        ("a", 2),
        ("b", 1),
    ]
    assert [e["n"] for e in bodies[1]["events"]] == [25, 26]


def test_event_time_is_in_microseconds_and_long_labels_are_cut() -> None:
    """A call's GA4 event carries its time in microseconds, cuts a campaign name to GA4's 100
    characters, marks a 30 s call as a target call at a 30 s threshold, and leaves out empty
    labels."""
    event = call_event(exported(campaign="x" * 150), target_seconds=30)
    assert event["timestamp_micros"] == 1_773_133_205_250_000
    assert event["params"]["campaign"] == "x" * 100
    assert event["params"]["target_call"] == 1  # 30 s of talk, threshold 30 s
    assert "medium" not in event["params"] and "term" not in event["params"]


def test_target_call_follows_the_configured_threshold() -> None:
    """A 30 s call is not marked as a target call in GA4 when the threshold is 31 s."""
    assert call_event(exported(), target_seconds=31)["params"]["target_call"] == 0


@pytest.mark.parametrize(
    ("tag", "campaign", "expected"),
    [
        ("source_campaign", "spring", "yandex-direct:spring"),
        ("source_campaign", None, "yandex-direct"),
        ("source", "spring", "yandex-direct"),
        ("campaign", "spring", "spring"),
        ("none", "spring", ""),
    ],
)
def test_metrica_tag(tag: str, campaign: str | None, expected: str) -> None:
    """The Metrica offline-conversions row tags a call with its source and campaign, its source, its
    campaign or nothing, as configured, after the client id, time, caller and durations."""
    row = metrica_row(exported(campaign=campaign, ym_client_id="42"), tag)  # type: ignore[arg-type]
    assert row[6] == expected
    assert row[:6] == ["42", "1773133205", "+79161234567", "30", "7", "0"]


def test_spam_calls_are_no_conversions() -> None:
    """A call marked spam is left out of both exports, and counted as left out."""
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    calls = [
        exported(id=1, ym_client_id="42", ga_client_id="1.2"),
        exported(id=2, ym_client_id="43", ga_client_id="1.3", spam=True),
    ]
    metrica = metrica_file(calls, tag="source", now=now)
    assert [row[0] for row in metrica.rows[1:]] == ["42"]
    assert metrica.spam == 1
    ga4 = ga4_events(calls, target_seconds=30, now=now)
    assert [client for client, _ in ga4.events] == ["1.2"]
    assert ga4.spam == 1


def load(exports: dict[str, object], environ: dict[str, str] | None = None) -> ExportSettings:
    data = {"exports": exports}
    return settings_from_mapping(data, environ=environ or {}, need_ami_secret=False).exports


def test_export_settings_defaults() -> None:
    """Without an exports section GA4 is off with Google's collect endpoint and Metrica tags calls
    with source and campaign."""
    exports = load({})
    assert exports.ga4.endpoint == "https://www.google-analytics.com/mp/collect"
    assert not exports.ga4.configured
    assert exports.metrica.tag == "source_campaign"


def test_the_api_secret_may_come_from_the_environment() -> None:
    """The GA4 API secret can be given in PBX_TRACKER_EXPORTS__GA4__API_SECRET and never shows when
    the settings are printed."""
    env = {"PBX_TRACKER_EXPORTS__GA4__API_SECRET": SECRET}
    exports = load({"ga4": {"measurement_id": "G-1"}}, env)
    assert exports.ga4.api_secret is not None
    assert exports.ga4.api_secret.get_secret_value() == SECRET
    assert SECRET not in repr(exports)


def test_wrong_export_settings_are_named_without_the_secret() -> None:
    """Every wrong export setting is reported by its key (endpoint, attempts, an unknown key, the
    Metrica tag) and the API secret's value never appears in the messages."""
    ga4 = {"api_secret": 123456789, "endpoint": "ftp://x", "attempts": 0, "oops": 1}
    with pytest.raises(ConfigError) as caught:
        load({"ga4": ga4, "metrica": {"tag": "utm"}})
    lines = caught.value.problems
    assert [line.partition(":")[0] for line in lines] == [
        "exports.ga4.endpoint",
        "exports.ga4.attempts",
        "exports.ga4.oops",
        "exports.metrica.tag",
    ]
    assert all("123456789" not in line for line in lines)
