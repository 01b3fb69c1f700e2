"""The filters of the calls list (and the period of the reports): read from a query
string, and the calls they select.

- ``from``, ``to``: dates (``2026-11-01``), ``to`` included, at most a year apart;
- ``source``: the credited source, 1 to 64 letters, digits, spaces or ``._-:/+@``;
- ``status``: ``answered`` or ``missed``;
- ``manager``: an extension (digits): calls it answered or that rang its phone;
- ``caller``, ``did``: digits the caller's or the tracked number contains (spaces,
  dashes, brackets and a leading ``+`` are dropped first).

Any other value is a `FilterError` naming the field and what to write instead.
`find_calls` gives one page of the calls the filters select (values go into SQL
only as bound parameters); `known_sources` the sources of the period.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode

from sqlalchemy import Table, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from pbx_tracker.reports.period import in_zone, local_date
from pbx_tracker.store.models import CallRow, RingAttemptRow
from pbx_tracker.web.pages.common import Pages

__all__ = [
    "MAX_DAYS",
    "MAX_LOGGED",
    "PER_PAGE",
    "CallFilters",
    "FilterError",
    "find_calls",
    "known_sources",
    "local_today",
    "parse_day",
    "parse_filters",
]

calls_table = cast(Table, CallRow.__table__)
attempts_table = cast(Table, RingAttemptRow.__table__)
PER_PAGE = 50
MAX_SOURCES = 200
MAX_PAGE = 10_000
MAX_DAYS = 366
MAX_LOGGED = 64

_SOURCE = re.compile(r"[\w .:/+@-]{1,64}")
_NUMBER = re.compile(r"\d{1,15}")
_FORMATTING = re.compile(r"[\s\-().]")
_EXTENSION = re.compile(r"\d{1,10}")
_PAGE = re.compile(r"[1-9]\d{0,4}")

STATUSES = ("answered", "missed")


class FilterError(ValueError):
    """A filter value the page refuses: which field, and what to write instead."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class CallFilters:
    """What the list shows: the days (in the zone), the filters, the page."""

    first: date
    last: date
    source: str | None = None
    status: str | None = None
    manager: str | None = None
    caller: str | None = None
    did: str | None = None
    page: int = 1

    def query(self, **changes: Any) -> str:
        """The query string of these filters (with ``changes``), for links."""
        shown = replace(self, **changes)
        values = {
            "from": shown.first.isoformat(),
            "to": shown.last.isoformat(),
            "source": shown.source,
            "status": shown.status,
            "manager": shown.manager,
            "caller": shown.caller,
            "did": shown.did,
            "page": None if shown.page == 1 else str(shown.page),
        }
        return urlencode({name: value for name, value in values.items() if value})


def parse_day(query: Mapping[str, str], name: str, default: date) -> date:
    text = query.get(name, "").strip()
    if not text:
        return default
    try:
        if len(text) != len("2026-11-01"):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise FilterError(name, "Write dates as YYYY-MM-DD, e.g. 2026-11-01.") from None


def _number(query: Mapping[str, str], name: str) -> str | None:
    text = _FORMATTING.sub("", query.get(name, "")).removeprefix("+")
    if not text:
        return None
    if not _NUMBER.fullmatch(text):
        raise FilterError(name, "Phone numbers take digits only (up to 15).")
    return text


def parse_filters(query: Mapping[str, str], today: date) -> CallFilters:
    """The filters of a query string; FilterError names the first bad one."""
    first = parse_day(query, "from", today)
    last = parse_day(query, "to", first if query.get("from", "").strip() else today)
    if last < first:
        raise FilterError("to", "The period ends before it starts.")
    if (last - first).days >= MAX_DAYS:
        raise FilterError("to", f"Pick a period of at most {MAX_DAYS} days.")
    source = query.get("source", "").strip() or None
    if source is not None and not _SOURCE.fullmatch(source):
        raise FilterError(
            "source", "A source is up to 64 letters, digits, spaces and . _ - : / + @."
        )
    status = query.get("status", "").strip() or None
    if status is not None and status not in STATUSES:
        raise FilterError("status", "The status is answered or missed.")
    manager = query.get("manager", "").strip() or None
    if manager is not None and not _EXTENSION.fullmatch(manager):
        raise FilterError("manager", "A manager is an extension: 1 to 10 digits.")
    page_text = query.get("page", "").strip() or "1"
    if not _PAGE.fullmatch(page_text) or int(page_text) > MAX_PAGE:
        raise FilterError("page", "The page is a number.")
    return CallFilters(
        first,
        last,
        source=source,
        status=status,
        manager=manager,
        caller=_number(query, "caller"),
        did=_number(query, "did"),
        page=int(page_text),
    )


def local_today(pages: Pages) -> date:
    return local_date(pages.now(), pages.rules.zone)


# --- the calls they select ------------------------------------------------------------------


def _credited(label: str, pages: Pages) -> ColumnElement[Any]:
    """The call's source/campaign as the reports credit it (first or last touch)."""
    c = calls_table.c
    touch = "first_touch" if pages.rules.model == "first_touch" else "last_touch"
    return func.coalesce(c[f"{touch}_{label}"], c[label])


def _conditions(filters: CallFilters, pages: Pages) -> list[ColumnElement[bool]]:
    c, zone = calls_table.c, pages.rules.zone
    start = in_zone(datetime(filters.first.year, filters.first.month, filters.first.day), zone)
    after = filters.last + timedelta(days=1)
    end = in_zone(datetime(after.year, after.month, after.day), zone)
    where: list[ColumnElement[bool]] = [c.started_at >= start, c.started_at < end]
    if filters.source is not None:
        where.append(func.lower(_credited("source", pages)) == filters.source.lower())
    if filters.status is not None:
        where.append(c.status == filters.status)
    if filters.manager is not None:
        a = attempts_table.c
        rang = exists().where(a.call_id == c.id, a.manager == filters.manager)
        where.append(or_(c.answered_by == filters.manager, rang))
    if filters.caller is not None:
        where.append(c.caller.contains(filters.caller, autoescape=True))
    if filters.did is not None:
        where.append(c.did.contains(filters.did, autoescape=True))
    return where


async def find_calls(
    conn: AsyncConnection, filters: CallFilters, pages: Pages
) -> tuple[list[Any], int]:
    """One page of the calls the filters select (newest first), and how many there are."""
    c = calls_table.c
    where = and_(*_conditions(filters, pages))
    total = (await conn.execute(select(func.count()).where(where))).scalar_one()
    query = (
        select(
            c.id,
            c.started_at,
            c.caller,
            c.caller_name,
            c.did,
            c.status,
            c.missed_reason,
            c.answered_by,
            c.answered_via,
            c.answered_number,
            c.ring_seconds,
            c.talk_seconds,
            c.recording_path,
            c.utm_term,
            c.direction,
            c.spam,
            c.spam_reason,
            _credited("source", pages).label("credited_source"),
            _credited("campaign", pages).label("credited_campaign"),
        )
        .where(where)
        .order_by(c.started_at.desc(), c.id.desc())
        .limit(PER_PAGE)
        .offset((filters.page - 1) * PER_PAGE)
    )
    return list((await conn.execute(query)).all()), int(total)


async def known_sources(conn: AsyncConnection, filters: CallFilters, pages: Pages) -> list[str]:
    """The sources of the period, for the source field's suggestions."""
    period = replace(filters, source=None, status=None, manager=None, caller=None, did=None)
    source = _credited("source", pages)
    query = (
        select(source)
        .distinct()
        .where(*_conditions(period, pages), source.is_not(None))
        .order_by(source)
        .limit(MAX_SOURCES)
    )
    return [str(value) for value in (await conn.execute(query)).scalars()]
