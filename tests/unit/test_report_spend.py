"""Reading an ad spend CSV file: the documented format, and one line per mistake."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from pbx_tracker.reports.spend import SpendFileError, SpendLine, parse_spend


def read(content: str) -> list[SpendLine]:
    return parse_spend(content, "spend.csv", "RUB")


def test_the_documented_format() -> None:
    """An ad spend file in the documented format (with a byte-order mark, a blank line, a sum
    written '1 234,5' and no currency meaning roubles) is read line by line as written."""
    lines = read(
        "\ufeffDate,Source,Campaign,Amount,Currency\n"
        '2026-11-02,yandex,brand,"1 234,5",\n'
        "\n"
        "2026-11-02,google,,99.99,USD\n"
    )
    assert lines == [
        SpendLine(date(2026, 11, 2), "yandex", "brand", Decimal("1234.5"), "RUB"),
        SpendLine(date(2026, 11, 2), "google", None, Decimal("99.99"), "USD"),
    ]


def test_semicolons_as_spreadsheets_write_them() -> None:
    """A spend file saved by a spreadsheet with semicolons and decimal commas is read the same as a
    comma-separated one."""
    (line,) = read("date;source;campaign;amount\n2026-11-02;vk;;1500,00\n")
    assert (line.source, line.campaign, line.amount) == ("vk", None, Decimal("1500.00"))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("2026-11-02,yandex,brand\n", "line 2: 3 columns, the header has 4"),
        ("2026-11-31,yandex,,1\n", "line 2: date '2026-11-31' is not a day written YYYY-MM-DD"),
        ("2026-11-02,,brand,1\n", "line 2: source is empty"),
        ("2026-11-02,yandex,,-5\n", "line 2: amount '-5' is negative"),
        ("2026-11-02,yandex,,1.5.0\n", "line 2: amount '1.5.0' is not a sum of money"),
        ("2026-11-02,yandex,,\n", "line 2: amount '' is not a sum of money"),
        (
            "2026-11-02,yandex,b,1\n2026-11-03,yandex,b,1\n2026-11-02,yandex,b,2\n",
            "line 4: 2026-11-02 yandex b is already on line 2",
        ),
    ],
)
def test_a_bad_line_is_named(body: str, problem: str) -> None:
    """Each mistake in a spend file (too few columns, no such date, an empty source, a negative or
    unreadable amount, a day given twice) is reported with its line number."""
    with pytest.raises(SpendFileError) as caught:
        read("date,source,campaign,amount\n" + body)
    assert str(caught.value).startswith(f"spend.csv {problem}")


def test_currency_and_header_problems() -> None:
    """A currency that is not three capital letters, an empty file or a header lacking a column is
    reported with the line it is on."""
    with pytest.raises(SpendFileError, match="line 2: currency 'RU' is not three capital"):
        read("date,source,campaign,amount,currency\n2026-11-02,y,,1,ru\n")
    with pytest.raises(SpendFileError, match="line 1: no header"):
        read("")
    with pytest.raises(SpendFileError, match="line 1: the header must be"):
        read("date,source,amount\n")
