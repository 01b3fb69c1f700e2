"""Reports on a fixed, small data set, on SQLite and PostgreSQL: every figure by hand.

The data set (times are Moscow wall clock, UTC+3; the report zone is
Europe/Moscow; the period is 2026-11-02 .. 2026-11-04, both days included):

    call local start          caller last touch     first touch    keyword    status by  ring talk
    c0   2026-10-20 10:00     F      flyer          -              -          ans    101   5  100 *
    c14  2026-11-01 23:59     J      flyer          -              -          ans    103   2   10 *
    c15  2026-11-02 00:00     I      yandex/generic yandex/generic cheap sofa ans    103   5   35
    c1   2026-11-02 09:10     A      yandex/brand   google/search  buy sofa   ans    101  10  120
    c2   2026-11-02 09:30     B      yandex/brand   yandex/brand   sofa       missed -    25    0
    c3   2026-11-02 11:00     A      google/search  google/search  sofa       ans    102   4   20
    c4   2026-11-02 23:30     C      flyer          -              -          missed -    30    0
    c5   2026-11-03 00:20     D      yandex/generic yandex/generic cheap sofa ans    103   8   45
    c6   2026-11-03 10:00     C      flyer          -              -          ans    101   6  200
    c7   2026-11-03 14:00     E      google/search  yandex/brand   sofa       missed -    15    0
    c8   2026-11-03 14:05     E      google/search  yandex/brand   sofa       missed -    20    0
    c9   2026-11-03 16:00     hidden flyer          -              -          missed -    10    0
    c10  2026-11-04 09:00     F      flyer          -              -          ans    102  12   31
    c11  2026-11-04 10:00     B      yandex/brand   yandex/brand   sofa       ans    101   3   60
    c12  2026-11-04 23:59:59  G      google/search  google/search  -          missed -     5    0
    c13  2026-11-05 00:00     G      google/search  google/search  -          missed -     5    0 *

(* outside the period.)

flyer is a static tracked number: its calls have no touch labels, only
source "flyer" (medium "print").  c5 starts 2026-11-02 21:20 UTC: a UTC day
would put it on the 2nd; c15 starts 2026-11-01 21:00 UTC.

Ring attempts (manager outcome, seconds from ringing to the answer):
c15 103 answer 5; c1 101 answer 10; c2 101 noanswer, 102 busy; c3 102 answer 4;
c4 103 cancel; c5 103 answer 8; c6 101 answer 6; c7 102 noanswer, 103 noanswer;
c8 102 chanunavail; c9 none; c10 101 noanswer, 102 answer 10 (rang 2 s after the
start, answered 12 s after); c11 101 answer 3; c12 103 noanswer; c13 103 noanswer.

Callback tasks (SLA 15 minutes):
T1 B: c2, assignee 101, called back by 102 at 09:40 (10 min, in SLA);
T2 C: c4, assignee 103, answered_inbound by 101 on 11-03 10:00 (630 min);
T3 E: c7 + c8, assignee 102, open;
T4 hidden: c9, assignee 103, closed by 103 at 16:05 (5 min, in SLA);
T5 G: c12 + c13, assignee 103, open.

Ad spend (RUB): 11-01 google 777 (before); 11-02 yandex/brand 1000,
yandex/generic 500, google 900; 11-03 yandex/brand 1000, google 600;
11-04 yandex (whole source) 300; 11-05 yandex/brand 999 (after).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.reports.compute import Report, ReportKind, compute
from pbx_tracker.reports.dimensions import Dimension, ReportScope
from pbx_tracker.reports.period import period_of
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.reports.spend import SpendLine, import_spend
from pbx_tracker.store.models import (
    AdSpendRow,
    CallbackTaskCallRow,
    CallbackTaskRow,
    CallRow,
    RingAttemptRow,
)

MOSCOW = ZoneInfo("Europe/Moscow")
RULES = ReportRules(
    target_seconds=30, unique_days=7, model="last_touch", sla_minutes=15, zone=MOSCOW
)
CALLERS = {
    "A": "+79160000001",
    "B": "+79160000002",
    "C": "+79160000003",
    "D": "+79160000004",
    "E": "+79160000005",
    "F": "+79160000006",
    "G": "+79160000007",
    "I": "+79160000009",
    "J": "+79160000010",
}
DID = {"yandex": "+74951110001", "google": "+74951110002", "flyer": "+74951110003"}

calls_table = cast(Table, CallRow.__table__)
attempts_table = cast(Table, RingAttemptRow.__table__)
tasks_table = cast(Table, CallbackTaskRow.__table__)
task_calls_table = cast(Table, CallbackTaskCallRow.__table__)
spend_table = cast(Table, AdSpendRow.__table__)


def moscow(text: str) -> datetime:
    """``2026-11-02 09:10`` (Moscow wall clock) as an aware UTC moment."""
    return datetime.fromisoformat(text).replace(tzinfo=MOSCOW).astimezone(UTC)


@dataclass(frozen=True)
class Call:
    name: str
    start: str
    caller: str | None
    last: str  # "source/campaign"; "flyer": the static number
    first: str | None
    keyword: str | None
    by: str | None
    ring: int
    talk: int


CALLS = [
    Call("c0", "2026-10-20 10:00", "F", "flyer", None, None, "101", 5, 100),
    Call("c14", "2026-11-01 23:59", "J", "flyer", None, None, "103", 2, 10),
    Call(
        "c15",
        "2026-11-02 00:00",
        "I",
        "yandex/generic",
        "yandex/generic",
        "cheap sofa",
        "103",
        5,
        35,
    ),
    Call(
        "c1", "2026-11-02 09:10", "A", "yandex/brand", "google/search", "buy sofa", "101", 10, 120
    ),
    Call("c2", "2026-11-02 09:30", "B", "yandex/brand", "yandex/brand", "sofa", None, 25, 0),
    Call("c3", "2026-11-02 11:00", "A", "google/search", "google/search", "sofa", "102", 4, 20),
    Call("c4", "2026-11-02 23:30", "C", "flyer", None, None, None, 30, 0),
    Call(
        "c5",
        "2026-11-03 00:20",
        "D",
        "yandex/generic",
        "yandex/generic",
        "cheap sofa",
        "103",
        8,
        45,
    ),
    Call("c6", "2026-11-03 10:00", "C", "flyer", None, None, "101", 6, 200),
    Call("c7", "2026-11-03 14:00", "E", "google/search", "yandex/brand", "sofa", None, 15, 0),
    Call("c8", "2026-11-03 14:05", "E", "google/search", "yandex/brand", "sofa", None, 20, 0),
    Call("c9", "2026-11-03 16:00", None, "flyer", None, None, None, 10, 0),
    Call("c10", "2026-11-04 09:00", "F", "flyer", None, None, "102", 12, 31),
    Call("c11", "2026-11-04 10:00", "B", "yandex/brand", "yandex/brand", "sofa", "101", 3, 60),
    Call("c12", "2026-11-04 23:59:59", "G", "google/search", "google/search", None, None, 5, 0),
    Call("c13", "2026-11-05 00:00", "G", "google/search", "google/search", None, None, 5, 0),
]
# (call, manager, outcome, seconds after the call's start the phone began to ring)
ATTEMPTS = [
    ("c15", "103", "answer", 0),
    ("c1", "101", "answer", 0),
    ("c2", "101", "noanswer", 0),
    ("c2", "102", "busy", 0),
    ("c3", "102", "answer", 0),
    ("c4", "103", "cancel", 0),
    ("c5", "103", "answer", 0),
    ("c6", "101", "answer", 0),
    ("c7", "102", "noanswer", 0),
    ("c7", "103", "noanswer", 0),
    ("c8", "102", "chanunavail", 0),
    ("c10", "101", "noanswer", 0),
    ("c10", "102", "answer", 2),
    ("c11", "101", "answer", 0),
    ("c12", "103", "noanswer", 0),
    ("c13", "103", "noanswer", 0),
]
# (customer, calls, assignee, resolution, resolved by, resolved at (Moscow))
TASKS = [
    ("B", ["c2"], "101", "called_back", "102", "2026-11-02 09:40"),
    ("C", ["c4"], "103", "answered_inbound", "101", "2026-11-03 10:00"),
    ("E", ["c7", "c8"], "102", None, None, None),
    (None, ["c9"], "103", "closed_by_manager", "103", "2026-11-03 16:05"),
    ("G", ["c12", "c13"], "103", None, None, None),
]
SPEND = [
    ("2026-11-01", "google", None, "777"),
    ("2026-11-02", "yandex", "brand", "1000"),
    ("2026-11-02", "yandex", "generic", "500"),
    ("2026-11-02", "google", None, "900"),
    ("2026-11-03", "yandex", "brand", "1000"),
    ("2026-11-03", "google", None, "600"),
    ("2026-11-04", "yandex", None, "300"),
    ("2026-11-05", "yandex", "brand", "999"),
]


def _labels(text: str | None) -> tuple[str | None, str | None, str | None]:
    if text is None:
        return None, None, None
    source, _, campaign = text.partition("/")
    return source, "print" if source == "flyer" else "cpc", campaign or None


def _call_row(call: Call) -> dict[str, Any]:
    started = moscow(call.start)
    source, medium, campaign = _labels(call.last)
    static = call.first is None
    first, last = _labels(call.first), (None, None, None) if static else (source, medium, campaign)
    answered = call.by is not None
    # as the writer stores it: the answering manager's leg, from its ring to the answer
    leg = [after for name, by, outcome, after in ATTEMPTS if (name, by) == (call.name, call.by)]
    return {
        "node": "pbx1",
        "linkedid": call.name,
        "direction": "inbound",
        "did": DID[cast(str, source)],
        "caller": None if call.caller is None else CALLERS[call.caller],
        "source": source,
        "medium": medium,
        "campaign": campaign,
        "status": "answered" if answered else "missed",
        "missed_reason": None if answered else "no_answer",
        "answered_by": call.by,
        "started_at": started,
        "answered_at": started + timedelta(seconds=call.ring) if answered else None,
        "ended_at": started + timedelta(seconds=call.ring + call.talk),
        "ring_seconds": call.ring,
        "talk_seconds": call.talk,
        "answer_seconds": call.ring - leg[0] if answered and leg else None,
        "first_time_caller": None,
        "is_target": None,
        "complete": True,
        "utm_term": call.keyword,
        "first_touch_source": first[0],
        "first_touch_medium": first[1],
        "first_touch_campaign": first[2],
        "last_touch_source": last[0],
        "last_touch_medium": last[1],
        "last_touch_campaign": last[2],
        "variables": {},
    }


async def seed(engine: AsyncEngine) -> dict[str, int]:
    """The data set above; call name -> id."""
    ids: dict[str, int] = {}
    async with engine.begin() as conn:
        for call in CALLS:
            statement = insert(calls_table).values(_call_row(call)).returning(calls_table.c.id)
            ids[call.name] = int((await conn.execute(statement)).scalar_one())
        await conn.execute(insert(attempts_table), [_attempt_row(a, ids) for a in ATTEMPTS])
        for task in TASKS:
            await _insert_task(conn, task, ids)
        lines = [
            SpendLine(datetime.fromisoformat(d).date(), s, c, Decimal(a), "RUB")
            for d, s, c, a in SPEND
        ]
        await import_spend(conn, lines, datetime(2026, 11, 20, tzinfo=UTC))
    return ids


def _attempt_row(attempt: tuple[str, str, str, int], ids: dict[str, int]) -> dict[str, Any]:
    name, manager, outcome, after = attempt
    call = next(c for c in CALLS if c.name == name)
    rang = moscow(call.start) + timedelta(seconds=after)
    ended = moscow(call.start) + timedelta(seconds=call.ring)
    return {
        "call_id": ids[name],
        "manager": manager,
        "channel": f"PJSIP/{manager}-0001",
        "rang_at": rang,
        "ended_at": ended,
        "outcome": outcome,
    }


async def _insert_task(conn: Any, task: tuple[Any, ...], ids: dict[str, int]) -> None:
    customer, names, assignee, resolution, by, resolved = task
    first = moscow(next(c for c in CALLS if c.name == names[0]).start)
    last = moscow(next(c for c in CALLS if c.name == names[-1]).start)
    values = {
        "node": "pbx1",
        "customer": None if customer is None else CALLERS[customer],
        "dialable": customer is not None,
        "status": "open" if resolution is None else "done",
        "assignee": assignee,
        "tries": len(names),
        "created_at": first,
        "first_missed_at": first,
        "last_missed_at": last,
        "first_call_id": ids[names[0]],
        "resolved_at": None if resolved is None else moscow(resolved),
        "resolution": resolution,
        "resolved_by": by,
        "updated_at": last,
    }
    statement = insert(tasks_table).values(values).returning(tasks_table.c.id)
    task_id = int((await conn.execute(statement)).scalar_one())
    links = [{"task_id": task_id, "call_id": ids[name]} for name in names]
    await conn.execute(insert(task_calls_table), links)


async def report(
    engine: AsyncEngine,
    kind: ReportKind,
    group_by: list[Dimension] | None = None,
    *,
    rules: ReportRules = RULES,
    start: str = "2026-11-02",
    end: str = "2026-11-04",
) -> Report:
    async with engine.connect() as conn:
        period = period_of(start, end, rules.zone)
        scope = ReportScope.of(engine.dialect.name, rules, period)
        return await compute(conn, kind, scope, group_by)


def rows(found: Report) -> dict[tuple[str | None, ...], dict[str, Any]]:
    return {row.key: row.figures for row in found.rows}


def pick(figures: dict[str, Any], *names: str) -> tuple[Any, ...]:
    return tuple(figures[name] for name in names)


CALL_COLUMNS = (
    "calls",
    "unique_callers",
    "first_time_callers",
    "target_calls",
    "answered",
    "missed",
)


@pytest.fixture(name="seeded")
async def _seeded(engine: AsyncEngine) -> AsyncEngine:
    await seed(engine)
    return engine


# -- sources ------------------------------------------------------------------------------


async def test_sources_by_hand(seeded: AsyncEngine) -> None:
    """The sources report gives each source's calls, unique, first-time and target calls, missed
    rate, wait, talk, spend, cost per call, target call and lead, and callbacks within the SLA, each
    as counted by hand."""
    found = await report(seeded, ReportKind.SOURCES)
    by_source = rows(found)
    # busiest first: yandex 5, then google and flyer with 4 each (by name)
    assert [row.key for row in found.rows] == [("yandex",), ("flyer",), ("google",)]

    yandex = by_source[("yandex",)]
    # c15 c1 c2 c5 c11; unique and first-time c15 c1 c2 c5 (c11: B called on the 2nd,
    # within the week); target (>= 30 s) c15 35, c1 120, c5 45, c11 60; missed c2
    assert pick(yandex, *CALL_COLUMNS) == (5, 4, 4, 4, 4, 1)
    assert yandex["missed_rate"] == pytest.approx(1 / 5)
    assert yandex["wait_seconds"] == pytest.approx((5 + 10 + 8 + 3) / 4)  # 6.5
    assert yandex["talk_seconds"] == 35 + 120 + 45 + 60
    # spend 1000 + 500 + 1000 (brand, generic) + 300 (whole source on the 4th)
    assert yandex["cost"] == Decimal("2800.00")
    assert yandex["cost_per_call"] == Decimal("560.00")  # 2800 / 5
    assert yandex["cost_per_target_call"] == Decimal("700.00")  # 2800 / 4
    assert yandex["cost_per_lead"] == Decimal("700.00")  # 2800 / 4 first-time callers
    # T1 (c2): called back after 10 minutes, within the 15-minute SLA
    assert pick(yandex, "callbacks_opened", "callbacks_done", "callbacks_in_sla") == (1, 1, 1)
    assert yandex["callback_minutes"] == pytest.approx(10)

    google = by_source[("google",)]
    # c3 c7 c8 c12; unique and first-time c7 c12 (A called yandex at 09:10: c3 is a
    # repeat call wherever it went; c8 is E's second); c3 talked 20 s: no target call
    assert pick(google, *CALL_COLUMNS) == (4, 2, 2, 0, 1, 3)
    assert google["missed_rate"] == pytest.approx(3 / 4)
    assert google["cost"] == Decimal("1500.00")  # 900 + 600; 777 and the 5th are outside
    assert google["cost_per_call"] == Decimal("375.00")
    assert google["cost_per_target_call"] is None  # no target call to divide by
    assert google["cost_per_lead"] == Decimal("750.00")  # 1500 / 2
    # T3 (c7) and T5 (c12) still open
    assert pick(google, "callbacks_opened", "callbacks_done", "callback_minutes") == (2, 0, None)

    flyer = by_source[("flyer",)]
    # c4 c6 c9 c10; unique c4 and c10 (F's call on 10-20 is 15 days before, outside the
    # week); first-time c4 only (F called before); hidden numbers never count; target
    # c6 200 s, c10 31 s
    assert pick(flyer, *CALL_COLUMNS) == (4, 2, 1, 2, 2, 2)
    assert flyer["wait_seconds"] == pytest.approx((6 + 12) / 2)
    assert flyer["cost"] is None  # no spend imported for flyer
    # T2 (c4) 630 min, T4 (c9) 5 min: median (5 + 630) / 2; only T4 within the SLA
    assert pick(flyer, "callbacks_opened", "callbacks_done", "callbacks_in_sla") == (2, 2, 1)
    assert flyer["callback_minutes"] == pytest.approx(317.5)


async def test_totals(seeded: AsyncEngine) -> None:
    """The report's total row counts each call once, so its unique callers are the sum of the rows,
    and its costs are the whole spend over the calls of the sources with spend."""
    found = await report(seeded, ReportKind.SOURCES)
    total = found.total
    assert total is not None
    figures = total.figures
    # 13 calls; unique c15 c1 c2 c4 c5 c7 c10 c12 -> 8, the sum of the rows (a number's
    # repeat call is a repeat in whichever row it falls); first-time the same but c10 -> 7
    assert figures["unique_callers"] == sum(r.figures["unique_callers"] for r in found.rows)
    assert pick(figures, *CALL_COLUMNS) == (13, 8, 7, 6, 7, 6)
    assert figures["wait_seconds"] == pytest.approx((5 + 10 + 4 + 8 + 6 + 12 + 3) / 7)
    assert figures["talk_seconds"] == 35 + 120 + 20 + 45 + 200 + 31 + 60
    assert figures["cost"] == Decimal("4300.00")  # 2800 + 1500
    # per call, target call and lead over the sources with spend (yandex, google), not
    # flyer's calls nobody paid for
    assert figures["cost_per_call"] == Decimal("477.78")  # 4300 / 9
    assert figures["cost_per_target_call"] == Decimal("1075.00")  # 4300 / 4
    assert figures["cost_per_lead"] == Decimal("716.67")  # 4300 / 6
    # tasks T1..T5; done T1 (10 min), T2 (630), T4 (5): median 10; in SLA T1, T4
    assert pick(figures, "callbacks_opened", "callbacks_done", "callbacks_in_sla") == (5, 3, 2)
    assert figures["callback_minutes"] == pytest.approx(10)
    assert figures["callbacks_in_sla_rate"] == pytest.approx(2 / 5)


async def test_campaigns_put_whole_source_spend_on_the_row_without_campaign(
    seeded: AsyncEngine,
) -> None:
    """The campaigns report divides spend by campaign, and money spent on a whole source shows on a
    row without campaign, even with no calls."""
    by_campaign = rows(await report(seeded, ReportKind.CAMPAIGNS))
    brand = by_campaign[("yandex", "brand")]
    # c1 c2 c11; first-time c1 c2; target c1 c11; spend 1000 + 1000
    assert pick(brand, "calls", "first_time_callers", "target_calls") == (3, 2, 2)
    assert brand["cost"] == Decimal("2000.00")
    assert brand["cost_per_call"] == Decimal("666.67")
    assert brand["cost_per_lead"] == Decimal("1000.00")
    generic = by_campaign[("yandex", "generic")]  # c15 c5, 500
    assert (generic["calls"], generic["cost_per_call"]) == (2, Decimal("250.00"))
    # money without calls is shown: yandex's whole-source 300 and google's 1500
    assert pick(by_campaign[("yandex", None)], "calls", "cost", "cost_per_call") == (
        0,
        Decimal("300.00"),
        None,
    )
    assert by_campaign[("google", None)]["cost"] == Decimal("1500.00")
    assert by_campaign[("google", "search")]["cost"] is None
    assert by_campaign[("flyer", None)]["calls"] == 4


async def test_keywords_and_numbers(seeded: AsyncEngine) -> None:
    """The keywords report counts calls per source and keyword (no spend, which cannot be split by
    keyword), and the numbers report counts calls per tracked number."""
    by_keyword = rows(await report(seeded, ReportKind.KEYWORDS))
    # yandex: "sofa" c2 c11, "buy sofa" c1, "cheap sofa" c15 c5; google: "sofa" c3 c7 c8
    assert by_keyword[("yandex", "sofa")]["calls"] == 2
    assert by_keyword[("yandex", "cheap sofa")]["target_calls"] == 2  # 35 s and 45 s
    assert by_keyword[("google", "sofa")]["calls"] == 3
    assert by_keyword[("google", None)]["calls"] == 1  # c12 without a keyword
    found = await report(seeded, ReportKind.KEYWORDS)
    assert not found.with_cost  # keywords cannot be given a share of the money
    by_number = rows(await report(seeded, ReportKind.NUMBERS))
    assert {key: f["calls"] for key, f in by_number.items()} == {
        (DID["yandex"],): 5,
        (DID["google"],): 4,
        (DID["flyer"],): 4,
    }


# -- days and time zones ---------------------------------------------------------------------


async def test_days_are_cut_in_the_report_zone(seeded: AsyncEngine) -> None:
    """The days report cuts days at Moscow midnight: a call at 00:00 is on the new day and one at
    23:59 on the old one."""
    found = await report(seeded, ReportKind.DAYS)
    by_day = rows(found)
    assert [row.key for row in found.rows] == [("2026-11-02",), ("2026-11-03",), ("2026-11-04",)]
    # 2nd: c15 (00:00, the first moment) c1 c2 c3 c4 (23:30); not c14 (23:59 on the 1st)
    assert pick(by_day[("2026-11-02",)], "calls", "missed", "talk_seconds") == (5, 2, 175)
    # 3rd: c5 (00:20, the 2nd in UTC) c6 c7 c8 c9
    assert pick(by_day[("2026-11-03",)], "calls", "missed", "talk_seconds") == (5, 3, 245)
    # 4th: c10 c11 c12 (23:59:59); c13 at midnight is the 5th
    assert pick(by_day[("2026-11-04",)], "calls", "missed") == (3, 1)
    assert by_day[("2026-11-02",)]["cost"] == Decimal("2400.00")  # 1000 + 500 + 900
    assert by_day[("2026-11-02",)]["cost_per_call"] == Decimal("480.00")
    assert by_day[("2026-11-04",)]["cost"] == Decimal("300.00")


async def test_the_same_day_in_utc_holds_other_calls(seeded: AsyncEngine) -> None:
    """With the report zone set to UTC the same date holds the calls of UTC's day instead."""
    utc_rules = replace(RULES, zone=ZoneInfo("UTC"))
    found = await report(seeded, ReportKind.DAYS, rules=utc_rules, end="2026-11-02")
    # the UTC 2nd: c1 c2 c3 c4 c5 (c5 is 21:20 UTC); c15 (21:00 UTC on the 1st) is not
    assert [row.key for row in found.rows] == [("2026-11-02",)]
    assert pick(found.rows[0].figures, "calls", "talk_seconds") == (5, 120 + 20 + 45)


async def test_hours_and_moments(seeded: AsyncEngine) -> None:
    """The days report split by hour counts each hour's calls, and a period ending at a moment
    leaves out calls from that moment on."""
    found = await report(seeded, ReportKind.DAYS, [Dimension.HOUR], end="2026-11-02")
    by_hour = {key[0]: f["calls"] for key, f in rows(found).items()}
    assert by_hour == {
        "2026-11-02 00:00": 1,  # c15
        "2026-11-02 09:00": 2,  # c1 c2
        "2026-11-02 11:00": 1,  # c3
        "2026-11-02 23:00": 1,  # c4
    }
    # a moment as --to is the first moment not included: 09:30 leaves out c2
    morning = await report(
        seeded, ReportKind.DAYS, start="2026-11-02T09:00", end="2026-11-02T09:30"
    )
    assert morning.total is not None and morning.total.figures["calls"] == 1


async def test_summer_time_change_within_the_period(engine: AsyncEngine) -> None:
    """Berlin: 2026-10-25 03:00 CEST becomes 02:00 CET (01:00 UTC)."""
    berlin = replace(RULES, zone=ZoneInfo("Europe/Berlin"))
    starts = {
        "late-24th": datetime(2026, 10, 24, 21, 59, tzinfo=UTC),  # 23:59 CEST on the 24th
        "early-25th": datetime(2026, 10, 24, 22, 30, tzinfo=UTC),  # 00:30 CEST on the 25th
        "late-25th": datetime(2026, 10, 25, 22, 59, tzinfo=UTC),  # 23:59 CET on the 25th
        "early-26th": datetime(2026, 10, 25, 23, 30, tzinfo=UTC),  # 00:30 CET on the 26th
    }
    async with engine.begin() as conn:
        for name, started in starts.items():
            call = Call(name, "2026-10-24 00:00", "A", "flyer", None, None, "101", 1, 1)
            row = _call_row(call) | {"started_at": started, "ended_at": started}
            await conn.execute(insert(calls_table).values(row))
    found = await report(
        engine, ReportKind.DAYS, rules=berlin, start="2026-10-24", end="2026-10-26"
    )
    assert {key[0]: f["calls"] for key, f in rows(found).items()} == {
        "2026-10-24": 1,
        "2026-10-25": 2,  # a day of 25 hours
        "2026-10-26": 1,
    }


# -- rules applied at report time ------------------------------------------------------------


async def test_changing_the_rules_recomputes_the_past(seeded: AsyncEngine) -> None:
    """Changing the target call length, the unique caller window or the attribution model changes
    the figures of calls already stored."""
    before = (await report(seeded, ReportKind.SOURCES)).total
    assert before is not None
    assert (before.figures["target_calls"], before.figures["first_time_callers"]) == (6, 7)

    stricter = replace(RULES, target_seconds=60)
    total = (await report(seeded, ReportKind.SOURCES, rules=stricter)).total
    assert total is not None
    # only c1 120, c6 200, c11 60 talked a minute
    assert total.figures["target_calls"] == 3
    # of the sources with spend: c1 and c11 (yandex); c6 is flyer's, nobody paid for it
    assert total.figures["cost_per_target_call"] == Decimal("2150.00")  # 4300 / 2

    # F's call on 10-20 is 15 days before c10: unique within a week, not within a month;
    # first-time callers (leads) do not depend on the window
    for days, unique in ((7, 8), (30, 7), (None, 7)):
        found = await report(seeded, ReportKind.SOURCES, rules=replace(RULES, unique_days=days))
        assert found.total is not None
        assert pick(found.total.figures, "unique_callers", "first_time_callers") == (unique, 7)
        # B's c11 (2 days after c2) is a repeat call in every window
        assert rows(found)[("yandex",)]["unique_callers"] == 4

    first_touch = replace(RULES, model="first_touch")
    by_source = rows(await report(seeded, ReportKind.SOURCES, rules=first_touch))
    # c1 moves to google; c7 and c8 (and task T3) move to yandex
    assert by_source[("yandex",)]["calls"] == 6  # c15 c2 c5 c7 c8 c11
    assert by_source[("google",)]["calls"] == 3  # c1 c3 c12
    assert by_source[("google",)]["first_time_callers"] == 2  # c1 c12
    assert by_source[("yandex",)]["callbacks_opened"] == 2  # T1 T3
    assert by_source[("flyer",)]["calls"] == 4  # static: no touches, unchanged


async def test_stored_flags_are_not_used(seeded: AsyncEngine) -> None:
    """Flags judged when the call was stored are ignored: the rules of today count."""
    async with seeded.begin() as conn:
        await conn.execute(calls_table.update().values(first_time_caller=True, is_target=True))
    total = (await report(seeded, ReportKind.SOURCES)).total
    assert total is not None
    assert (total.figures["first_time_callers"], total.figures["target_calls"]) == (7, 6)


async def test_spam_calls_are_calls_but_not_leads(seeded: AsyncEngine) -> None:
    """A call marked spam still counts as a call (answered or missed), never as a unique
    or first-time caller; undoing the mark counts it again."""
    c5 = calls_table.c.linkedid == "c5"  # D's first call, on yandex
    async with seeded.begin() as conn:
        await conn.execute(calls_table.update().where(c5).values(spam=True, spam_reason="blocked"))
    found = await report(seeded, ReportKind.SOURCES)
    yandex = rows(found)[("yandex",)]
    assert pick(yandex, "calls", "unique_callers", "first_time_callers", "spam_calls") == (
        5,
        3,
        3,
        1,
    )
    assert yandex["answered"] == 4  # c5 was answered, and still is
    assert yandex["cost_per_lead"] == Decimal("933.33")  # 2800 / 3
    assert found.total is not None
    assert pick(found.total.figures, "first_time_callers", "spam_calls") == (6, 1)

    async with seeded.begin() as conn:
        await conn.execute(calls_table.update().where(c5).values(spam=False, spam_reason=None))
    yandex = rows(await report(seeded, ReportKind.SOURCES))[("yandex",)]
    assert pick(yandex, "first_time_callers", "spam_calls") == (4, 0)


# -- managers and callbacks ------------------------------------------------------------------


async def test_managers_by_hand(seeded: AsyncEngine) -> None:
    """The managers report gives each manager's answered calls, calls missed while free, talk and
    answer times, and the callbacks they resolved, while the total counts a call that rang two
    managers once."""
    found = await report(seeded, ReportKind.MANAGERS)
    by_manager = rows(found)
    assert set(by_manager) == {("101",), ("102",), ("103",)}
    names = ("answered", "missed_while_available", "talk_seconds")
    # 101: answered c1 c6 c11; rang free on missed c2 (c10's noanswer: a colleague took it)
    assert pick(by_manager[("101",)], *names) == (3, 1, 120 + 200 + 60)
    assert by_manager[("101",)]["answer_seconds"] == pytest.approx((10 + 6 + 3) / 3)
    # 102: answered c3 c10; missed c7 (noanswer); c2 busy and c8 chanunavail do not count
    assert pick(by_manager[("102",)], *names) == (2, 1, 20 + 31)
    assert by_manager[("102",)]["answer_seconds"] == pytest.approx((4 + 10) / 2)
    # 103: answered c15 c5; missed c4 (cancel), c7, c12 (noanswer); c13 is after the period
    assert pick(by_manager[("103",)], *names) == (2, 3, 35 + 45)
    assert by_manager[("103",)]["answer_seconds"] == pytest.approx((5 + 8) / 2)
    # callbacks by who resolved them (open: the assignee): 101 resolved T2 (630 min);
    # 102 resolved T1 (10 min) and has T3 open; 103 closed T4 (5 min) and has T5 open
    callbacks = ("callbacks_opened", "callbacks_done", "callback_minutes")
    assert pick(by_manager[("101",)], *callbacks) == (1, 1, pytest.approx(630))
    assert pick(by_manager[("102",)], *callbacks) == (2, 1, pytest.approx(10))
    assert pick(by_manager[("103",)], *callbacks) == (2, 1, pytest.approx(5))
    assert not found.with_cost
    # the total counts calls, not rings: c2 c4 c7 (rang 102 and 103) c12 -> 4, not 5
    assert found.total is not None
    assert found.total.figures["missed_while_available"] == 4


async def test_a_mobile_that_picked_up_unconfirmed_missed_the_call_while_available(
    seeded: AsyncEngine,
) -> None:
    """102's mobile picked up c2 but never confirmed (not_accepted): 102 was reachable and
    let a missed call go, like a phone that rang out."""
    c2 = select(calls_table.c.id).where(calls_table.c.linkedid == "c2").scalar_subquery()
    busy = (attempts_table.c.call_id == c2) & (attempts_table.c.manager == "102")
    async with seeded.begin() as conn:
        await conn.execute(attempts_table.update().where(busy).values(outcome="not_accepted"))
    by_manager = rows(await report(seeded, ReportKind.MANAGERS))
    assert by_manager[("102",)]["missed_while_available"] == 2  # c7 and now c2


async def test_managers_by_day(seeded: AsyncEngine) -> None:
    """The managers report split by day puts each missed or answered call on the day it happened in
    the report zone."""
    found = await report(seeded, ReportKind.MANAGERS, [Dimension.DAY])
    by_key = rows(found)
    assert found.dimensions == [Dimension.MANAGER, Dimension.DAY]
    assert by_key[("103", "2026-11-03")]["missed_while_available"] == 1  # c7
    assert by_key[("103", "2026-11-04")]["missed_while_available"] == 1  # c12, not c13
    assert by_key[("101", "2026-11-03")]["answered"] == 1  # c6


async def test_callbacks_by_day(seeded: AsyncEngine) -> None:
    """The callbacks report gives, per day, the tasks opened, done, done within the SLA and the
    median minutes to call back."""
    by_day = rows(await report(seeded, ReportKind.CALLBACKS))
    names = ("callbacks_opened", "callbacks_done", "callbacks_in_sla", "callback_minutes")
    # 2nd: T1 10 min, T2 630 min -> median 320; 3rd: T3 open, T4 5 min; 4th: T5 open
    assert pick(by_day[("2026-11-02",)], *names) == (2, 2, 1, pytest.approx(320))
    assert pick(by_day[("2026-11-03",)], *names) == (2, 1, 1, pytest.approx(5))
    assert pick(by_day[("2026-11-04",)], *names) == (1, 0, 0, None)


async def test_a_task_closed_before_its_miss_counts_zero_minutes(seeded: AsyncEngine) -> None:
    """A task stored closed before its first miss (by an older version) reports 0 callback
    minutes, never a negative figure, and counts as within the SLA."""
    t = tasks_table.c
    async with seeded.begin() as conn:
        early = moscow("2026-11-02 09:19")  # T1's miss was at 09:30
        await conn.execute(
            tasks_table.update().where(t.resolved_by == "102").values(resolved_at=early)
        )
    by_day = rows(await report(seeded, ReportKind.CALLBACKS))
    names = ("callbacks_opened", "callbacks_done", "callbacks_in_sla", "callback_minutes")
    assert pick(by_day[("2026-11-02",)], *names) == (2, 2, 1, pytest.approx(315))
    by_source = rows(await report(seeded, ReportKind.SOURCES))
    assert all((f["callback_minutes"] or 0) >= 0 for f in by_source.values())


# -- ad spend --------------------------------------------------------------------------------


async def test_importing_a_day_again_replaces_its_amount(seeded: AsyncEngine) -> None:
    """Importing spend for a day and campaign again replaces the amount instead of adding to it, and
    the report shows the new cost."""
    lines = [
        SpendLine(datetime(2026, 11, 2).date(), "yandex", "brand", Decimal("1200"), "RUB"),
        SpendLine(datetime(2026, 11, 4).date(), "yandex", None, Decimal("100.50"), "RUB"),
    ]
    async with seeded.begin() as conn:
        await import_spend(conn, lines, datetime(2026, 11, 21, tzinfo=UTC))
    async with seeded.connect() as conn:
        count = len((await conn.execute(select(spend_table.c.id))).all())
    assert count == len(SPEND)  # replaced, not added
    yandex = rows(await report(seeded, ReportKind.SOURCES))[("yandex",)]
    assert yandex["cost"] == Decimal("2800.50")  # 1200 + 500 + 1000 + 100.50


async def test_a_report_sees_what_its_own_transaction_wrote(seeded: AsyncEngine) -> None:
    """On PostgreSQL a report's queries run side by side on other connections that share
    its snapshot; they could not see its uncommitted writes, so then they do not."""
    late = Call("c16", "2026-11-04 12:00", "J", "flyer", None, None, "101", 3, 40)
    period = period_of("2026-11-02", "2026-11-04", RULES.zone)
    async with seeded.begin() as conn:
        await conn.execute(insert(calls_table).values(_call_row(late)))
        scope = ReportScope.of(seeded.dialect.name, RULES, period)
        found = await compute(conn, ReportKind.SOURCES, scope)
        await conn.rollback()
    assert found.total is not None and found.total.figures["calls"] == 14
    assert rows(found)[("flyer",)]["calls"] == 5


async def test_no_calls_no_rows(engine: AsyncEngine) -> None:
    """A report on a period without calls has no rows and a total of 0 calls with no missed rate."""
    found = await report(engine, ReportKind.SOURCES)
    assert found.rows == []
    assert found.total is not None and found.total.figures["calls"] == 0
    assert found.total.figures["missed_rate"] is None
