"""CSV cells a spreadsheet would run as a formula are written as text; numbers stay numbers.

Text from outside (a UTM tag or landing page sent to the public visits API, a
caller id) reaches the sources report's CSV and Metrica's offline-calls file.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.dialects import sqlite

from pbx_tracker.exports.calls import ExportedCall
from pbx_tracker.exports.metrica import metrica_file, write_metrica
from pbx_tracker.reports.compute import Report, ReportKind, ReportRow
from pbx_tracker.reports.dimensions import Dimension, ReportScope
from pbx_tracker.reports.period import period_of
from pbx_tracker.reports.render import FIGURE_ORDER, as_csv
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.spreadsheet import safe_cell

LINK = '=HYPERLINK("http://evil.example/","click")'
ZONE = ZoneInfo("Europe/Moscow")
RULES = ReportRules(
    target_seconds=30, unique_days=30, model="last_touch", sla_minutes=15, zone=ZONE
)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (LINK, "'" + LINK),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("-", "'-"),
        ("yandex", "yandex"),
        ("", ""),
        (" =1+1", " =1+1"),  # a leading space: shown as text
        ("'=1+1", "'=1+1"),
        ("-5", "-5"),
        ("-0.19", "-0.19"),
        ("+74951110002", "+74951110002"),
        (-5, -5),
        (-0.19, -0.19),
        (Decimal("-0.19"), Decimal("-0.19")),
        (None, None),
    ],
)
def test_a_cell_is_text_or_a_number_never_a_formula(value: object, written: object) -> None:
    """Text that a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a return)
    is written with a leading quote, while plain text and numbers stay as they are."""
    assert safe_cell(value) == written


def report_with(key: str, figures: dict[str, object]) -> Report:
    scope = ReportScope.of(sqlite.dialect(), RULES, period_of("2026-11-01", "2026-11-30", ZONE))
    every = dict.fromkeys(FIGURE_ORDER, 0) | figures
    row = ReportRow(key=(key, "+74951110002"), figures=every)
    return Report(ReportKind.SOURCES, [Dimension.SOURCE, Dimension.NUMBER], scope, rows=[row])


def test_the_report_csv_writes_a_formula_tag_as_text_and_numbers_as_numbers() -> None:
    """A marketer opening the sources report's CSV sees a formula-like source as text, while the
    number, negative counts, rates and costs stay numbers."""
    report = report_with(LINK, {"calls": -5, "missed_rate": -0.19, "cost": Decimal("-1.50")})
    header, row = csv.reader(io.StringIO(as_csv(report)))
    cells = dict(zip(header, row, strict=True))
    assert cells["source"] == "'" + LINK
    assert cells["number"] == "+74951110002"
    assert (cells["calls"], cells["missed_rate"], cells["cost"]) == ("-5", "-0.19", "-1.5")


def exported_call(**more: object) -> ExportedCall:
    values: dict[str, object] = {
        "id": 1,
        "started_at": datetime(2026, 3, 10, 9, 0, 5, tzinfo=UTC),
        "caller": "+79161234567",
        "answered": False,
        "ring_seconds": 7,
        "talk_seconds": 0,
        "first_time_caller": True,
        "source": LINK,
        "medium": None,
        "campaign": "-brand",
        "utm_term": None,
        "ym_client_id": "1601234567890123456",
        "landing_page": "@https://shop.example/?utm_source=x",
    }
    return ExportedCall(**(values | more))  # type: ignore[arg-type]


def test_the_metrica_file_writes_text_from_outside_as_text(tmp_path: Path) -> None:
    """In the Metrica offline-calls file a formula-like tag or landing page is written as text,
    while Metrica's own client id, time, phone and durations keep their formats."""
    now = datetime(2026, 3, 11, tzinfo=UTC)
    file = metrica_file([exported_call()], tag="source_campaign", now=now)
    path = tmp_path / "metrica.csv"
    write_metrica(path, file)
    with path.open(encoding="utf-8", newline="") as out:
        header, row = csv.reader(out)
    cells = dict(zip(header, row, strict=True))
    assert cells["Tag"] == "'" + LINK + ":-brand"
    assert cells["URL"] == "'@https://shop.example/?utm_source=x"
    # Metrica's own formats are left as they are
    assert cells["ClientId"] == "1601234567890123456"
    assert cells["DateTime"] == str(int(datetime(2026, 3, 10, 9, 0, 5, tzinfo=UTC).timestamp()))
    assert cells["PhoneNumber"] == "+79161234567"
    assert (cells["TalkDuration"], cells["HoldDuration"], cells["CallMissed"]) == ("0", "7", "1")
    assert cells["FirstTimeCaller"] == "1"


def test_a_caller_id_that_is_no_phone_number_is_written_as_text() -> None:
    """A caller id that is no phone number (such as '=1+1') is written to the Metrica file as text,
    not run as a formula."""
    now = datetime(2026, 3, 11, tzinfo=UTC)
    file = metrica_file([exported_call(caller="=1+1", source="yandex")], tag="source", now=now)
    assert file.rows[1][2:3] == ["'=1+1"]
    assert file.rows[1][6] == "yandex"
