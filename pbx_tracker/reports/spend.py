"""Ad spend: the ``ad_spend`` table, the CSV import, and the spend figures of a report.

The CSV file (UTF-8, a byte-order mark is fine) starts with the header
``date,source,campaign,amount`` or ``date,source,campaign,amount,currency``;
columns may be separated by ``;`` instead of ``,`` (as spreadsheets write
where ``,`` is the decimal mark), empty lines are skipped.  Each line:

- ``date``: the day, ``YYYY-MM-DD``, in the report's time zone;
- ``source``: the source as calls are credited to it (``yandex-direct``,
  ``google``…), required;
- ``campaign``: the campaign, or empty: the whole source that day;
- ``amount``: money spent, ``.`` or ``,`` as the decimal mark, at most two
  decimals, spaces between thousands allowed, never negative;
- ``currency``: three capital letters; missing or empty: ``reports.currency``.

Importing a day, source and campaign again replaces its amount.  A bad line
stops the whole import, nothing is stored: `SpendFileError` names the file
and line.  Two lines for the same day, source and campaign are a bad line.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Select, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.reports.calls import Figures, Key
from pbx_tracker.reports.dimensions import Dimension, ReportScope
from pbx_tracker.store.engine import dialect_insert
from pbx_tracker.store.models import WHOLE_SOURCE, AdSpendRow

__all__ = ["SpendFileError", "SpendLine", "import_spend", "read_spend_file", "spend_figures"]

spend_table = cast(Table, AdSpendRow.__table__)
COLUMNS = ("date", "source", "campaign", "amount")
_AMOUNT = re.compile(r"\d+(?:[.,]\d{1,2})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_TEXT_LENGTH = 255


class SpendFileError(ValueError):
    """``FILE line N: what`` — the import stored nothing."""


@dataclass(frozen=True, slots=True)
class SpendLine:
    day: date
    source: str
    campaign: str | None
    amount: Decimal
    currency: str


def read_spend_file(path: Path, default_currency: str) -> list[SpendLine]:
    """Every line of the file, checked; SpendFileError at the first bad one."""
    try:
        content = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise SpendFileError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise SpendFileError(f"{path}: not UTF-8 text") from None
    return parse_spend(content, str(path), default_currency)


def parse_spend(content: str, name: str, default_currency: str) -> list[SpendLine]:
    """The lines of a spend file's text (``name`` is shown in errors)."""
    content = content.removeprefix("\ufeff")
    lines = content.splitlines()
    if not lines or not lines[0].strip():
        raise SpendFileError(f"{name} line 1: no header; start with {','.join(COLUMNS)}")
    delimiter = ";" if ";" in lines[0] and "," not in lines[0] else ","
    reader = csv.reader(io.StringIO(content), delimiter=delimiter)
    header = [column.strip().lower() for column in next(reader)]
    with_currency = _check_header(header, name)
    found: list[SpendLine] = []
    seen: dict[tuple[date, str, str | None], int] = {}
    for fields in reader:
        number = reader.line_num
        if not any(field.strip() for field in fields):
            continue
        try:
            line = _spend_line(fields, with_currency, default_currency)
        except ValueError as error:
            raise SpendFileError(f"{name} line {number}: {error}") from None
        key = (line.day, line.source, line.campaign)
        if key in seen:
            what = f"{line.day} {line.source} {line.campaign or '(whole source)'}"
            raise SpendFileError(f"{name} line {number}: {what} is already on line {seen[key]}")
        seen[key] = number
        found.append(line)
    return found


def _check_header(header: list[str], name: str) -> bool:
    """True when the file has a currency column; SpendFileError for another header."""
    if tuple(header) in (COLUMNS, (*COLUMNS, "currency")):
        return len(header) == len(COLUMNS) + 1
    raise SpendFileError(
        f"{name} line 1: the header must be {','.join(COLUMNS)}[,currency], not {','.join(header)}"
    )


def _spend_line(fields: list[str], with_currency: bool, default_currency: str) -> SpendLine:
    expected = len(COLUMNS) + (1 if with_currency else 0)
    if len(fields) != expected:
        raise ValueError(f"{len(fields)} columns, the header has {expected}")
    day_text, source, campaign, amount_text = (field.strip() for field in fields[:4])
    currency = fields[4].strip().upper() if with_currency else ""
    return SpendLine(
        day=_day(day_text),
        source=_label(source, "source", required=True) or "",
        campaign=_label(campaign, "campaign", required=False),
        amount=_amount(amount_text),
        currency=_currency(currency or default_currency),
    )


def _day(text: str) -> date:
    try:
        if len(text) == len("2026-11-01"):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise ValueError(f"date {text!r} is not a day written YYYY-MM-DD")


def _label(text: str, what: str, *, required: bool) -> str | None:
    if not text:
        if required:
            raise ValueError(f"{what} is empty")
        return None
    if len(text) > _TEXT_LENGTH:
        raise ValueError(f"{what} is longer than {_TEXT_LENGTH} characters")
    return text


def _amount(text: str) -> Decimal:
    compact = re.sub(r"[\s\u00a0\u202f]", "", text)
    if compact.startswith("-"):
        raise ValueError(f"amount {text!r} is negative")
    if not _AMOUNT.fullmatch(compact):
        raise ValueError(
            f"amount {text!r} is not a sum of money (write 1234.50 or 1234,50, "
            "at most two decimals)"
        )
    try:
        amount = Decimal(compact.replace(",", "."))
    except InvalidOperation:
        raise ValueError(f"amount {text!r} is not a number") from None
    if amount >= Decimal("1e12"):
        raise ValueError(f"amount {text!r} is too large")
    return amount


def _currency(text: str) -> str:
    if not _CURRENCY.fullmatch(text):
        raise ValueError(f"currency {text!r} is not three capital letters (RUB, USD, EUR)")
    return text


async def import_spend(conn: AsyncConnection, lines: list[SpendLine], now: datetime) -> int:
    """Store the lines (a day, source and campaign imported again: its amount replaced)."""
    whole = [_values(line, now) for line in lines if line.campaign is None]
    campaigns = [_values(line, now) for line in lines if line.campaign is not None]
    c = spend_table.c
    if whole:
        await _upsert(conn, whole, [c.day, c.source], text(WHOLE_SOURCE))
    if campaigns:
        await _upsert(conn, campaigns, [c.day, c.source, c.campaign], None)
    return len(lines)


def _values(line: SpendLine, now: datetime) -> dict[str, Any]:
    return {
        "day": line.day,
        "source": line.source,
        "campaign": line.campaign,
        "amount": line.amount,
        "currency": line.currency,
        "imported_at": now.astimezone(UTC),
    }


async def _upsert(
    conn: AsyncConnection, rows: list[dict[str, Any]], index: list[Any], where: Any
) -> None:
    statement = dialect_insert(conn)(spend_table)
    statement = statement.on_conflict_do_update(
        index_elements=index,
        index_where=where,
        set_={
            "amount": statement.excluded.amount,
            "currency": statement.excluded.currency,
            "imported_at": statement.excluded.imported_at,
        },
    )
    await conn.execute(statement, rows)


def _spend_key(dimension: Dimension) -> Any:
    c = spend_table.c
    return {Dimension.SOURCE: c.source, Dimension.CAMPAIGN: c.campaign, Dimension.DAY: c.day}[
        dimension
    ]


async def spend_currencies(conn: AsyncConnection, scope: ReportScope) -> list[str]:
    """The currencies of the spend in the period's days, sorted."""
    c = spend_table.c
    query = (
        select(c.currency)
        .where(c.day >= scope.period.first_day, c.day <= scope.period.last_day)
        .distinct()
    )
    return sorted(str(value) for value in (await conn.execute(query)).scalars())


async def spend_figures(
    conn: AsyncConnection, dimensions: list[Dimension], scope: ReportScope
) -> dict[Key, Figures]:
    """``cost`` per group of source, campaign and day (only those dimensions)."""
    c = spend_table.c
    keys = [_spend_key(d).label(f"d{i}") for i, d in enumerate(dimensions)]
    query: Select[Any] = (
        select(*keys, func.sum(c.amount).label("cost"))
        .where(c.day >= scope.period.first_day, c.day <= scope.period.last_day)
        .group_by(*keys)
    )
    found: dict[Key, Figures] = {}
    for row in (await conn.execute(query)).all():
        if row[-1] is not None:
            key = tuple(None if v is None else str(v) for v in row[:-1])
            found[key] = {"cost": Decimal(str(row[-1]))}
    return found
