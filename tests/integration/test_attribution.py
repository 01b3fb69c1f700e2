"""Calls on pool numbers credited to website visits, from the stored leases, on SQLite and
PostgreSQL: what a marketer reads on the call record, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.attribution.attribute import Attributor
from pbx_tracker.attribution.sources import CallLabeler
from pbx_tracker.attribution.visits import (
    Visit,
    record_pool_use,
    release_lease,
    save_visit,
    start_lease,
)
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction
from pbx_tracker.config import Settings, settings_from_mapping
from pbx_tracker.store.calls import list_calls, save_calls
from pbx_tracker.store.first_callers import mark_first_time_callers
from pbx_tracker.store.models import CallRow

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
POOL_NUMBERS = ["+74951110010", "+74951110011"]
DID = POOL_NUMBERS[0]
CALLER = "+79161234567"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def settings(**attribution: Any) -> Settings:
    return settings_from_mapping(
        {
            "ami": {"secret": "x"},
            "tracked_numbers": [{"did": "+74951110001", "source": "billboard"}],
            "number_pools": [
                {
                    "name": "site",
                    "numbers": POOL_NUMBERS,
                    "source": "website",
                    "medium": "pool",
                    "hold_minutes": 20,
                    "grace_minutes": 5,
                    "quarantine_minutes": 1,
                }
            ],
            "attribution": attribution,
        },
        environ={},
    )


def call(
    did: str = DID, minutes: float = 30, linkedid: str = "1.1", caller: str = CALLER
) -> CallRecord:
    record = CallRecord(
        linkedid=linkedid,
        node="pbx",
        direction=Direction.INBOUND,
        did=did,
        caller=caller,
        caller_name=None,
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by="101",
        transferred_to=None,
        started_at=at(minutes),
        answered_at=at(minutes),
        ended_at=at(minutes + 2),
        ring_seconds=5,
        talk_seconds=115,
        recording_path=None,
    )
    config = settings()
    labelled = CallLabeler(config.directory, config.calls.target_seconds).label(record)
    assert labelled is not None
    return labelled


async def add_visit(
    engine: AsyncEngine,
    visit_id: str,
    *,
    shown: tuple[float, float | None] | None = None,
    minutes: float = 0,
    did: str = DID,
    **labels: Any,
) -> None:
    """A visit at ``minutes``; ``shown``: its lease on ``did`` (start, release or None)."""
    async with engine.begin() as conn:
        await save_visit(conn, Visit(visit_id, "site", at(minutes), at(minutes), **labels))
        if shown is not None:
            start, end = shown
            await start_lease(conn, "site", did, visit_id, at(start))
            if end is not None:
                await release_lease(conn, visit_id, at(end))


async def stored(
    engine: AsyncEngine, record: CallRecord, config: Settings | None = None
) -> CallRecord:
    """``record`` attributed and stored as the writer does, then read back."""
    config = config or settings()
    attributor = Attributor(config.attribution, config.number_pools, config.directory)
    async with engine.begin() as conn:
        (credited,) = await attributor.attribute(conn, [record])
        marked = await mark_first_time_callers(conn, [credited])
        await save_calls(conn, marked)
    async with engine.connect() as conn:
        found = [r for r in await list_calls(conn) if r.linkedid == record.linkedid]
    assert len(found) == 1
    return found[0]


YANDEX_AD = {
    "landing_page": "https://example.ru/windows?utm_source=yandex",
    "referrer": "https://yandex.ru/",
    "utm_source": "yandex",
    "utm_medium": "cpc",
    "utm_campaign": "winter",
    "utm_term": "plastic windows",
    "utm_content": "ad-7",
    "yclid": "123",
    "visitor_id": "browser-1",
}


async def test_call_while_a_visit_is_shown_the_number_takes_its_tags(
    engine: AsyncEngine,
) -> None:
    """A call on a pool number while a visit is shown it is credited to that visit with full
    confidence: the marketer sees its source, medium, campaign, term and content, and a reason
    naming the visit."""
    await add_visit(engine, "visit-a", shown=(10, None), minutes=10, **YANDEX_AD)
    record = await stored(engine, call(minutes=25))
    assert record.session_id == "visit-a"
    assert (record.source, record.medium, record.campaign) == ("yandex", "cpc", "winter")
    assert (record.utm_term, record.utm_content) == ("plastic windows", "ad-7")
    detail = record.attribution
    assert detail is not None
    assert detail["method"] == "session"
    assert detail["confidence"] == 1.0
    assert detail["pool_exhausted"] is False
    assert [c["session_id"] for c in detail["candidates"]] == ["visit-a"]
    assert "visit-a" in detail["reason"] and "utm tags" in detail["reason"]


async def test_call_just_after_the_release_is_credited_with_less_confidence(
    engine: AsyncEngine,
) -> None:
    """A call a few minutes after the visit let the number go is still credited to that visit, with
    confidence 0.8."""
    await add_visit(engine, "visit-a", shown=(0, 20), **YANDEX_AD)
    record = await stored(engine, call(minutes=23))
    assert record.session_id == "visit-a"
    assert record.attribution is not None
    assert record.attribution["confidence"] == 0.8
    assert record.attribution["candidates"][0]["held_at_call"] is False


async def test_call_after_the_grace_falls_back_to_the_pools_source(engine: AsyncEngine) -> None:
    """A call after the grace period is credited to no visit: it shows the pool's own source
    (website / pool) and the reason says no visit was shown the number."""
    await add_visit(engine, "visit-a", shown=(0, 20), **YANDEX_AD)
    record = await stored(engine, call(minutes=26))
    assert record.session_id is None
    assert (record.source, record.medium) == ("website", "pool")
    assert record.utm_source is None
    assert record.attribution is not None
    assert record.attribution["method"] == "unattributed"
    assert record.attribution["candidates"] == []
    assert "no visit was shown" in record.attribution["reason"]


async def test_a_lease_never_released_counts_until_its_hold_ran_out(engine: AsyncEngine) -> None:
    """A daemon stopped before storing the release: the hold (20 min) bounds the lease."""
    await add_visit(engine, "visit-a", shown=(0, None), **YANDEX_AD)
    within_hold = await stored(engine, call(minutes=19, linkedid="1.1"))
    after_hold_and_grace = await stored(engine, call(minutes=26, linkedid="1.2"))
    assert within_hold.session_id == "visit-a"
    assert after_hold_and_grace.session_id is None


async def test_two_possible_visits_are_listed_not_guessed(engine: AsyncEngine) -> None:
    """When two visits could have made the call neither is credited: the call is marked ambiguous at
    0.5 and both visits are listed."""
    await add_visit(engine, "visit-a", shown=(0, 20), **YANDEX_AD)
    await add_visit(engine, "visit-b", shown=(21, None), minutes=21, utm_source="google")
    record = await stored(engine, call(minutes=22))
    assert record.session_id is None
    assert record.source == "website"
    detail = record.attribution
    assert detail is not None
    assert detail["method"] == "ambiguous"
    assert detail["confidence"] == 0.5
    candidates = {c["session_id"]: c["held_at_call"] for c in detail["candidates"]}
    assert candidates == {"visit-a": False, "visit-b": True}


async def test_exhaustion_in_that_hour_is_shown_on_the_call(engine: AsyncEngine) -> None:
    """A call in an hour when the pool ran out of numbers says so, so the marketer knows the credit
    may be wrong."""
    await add_visit(engine, "visit-a", shown=(0, None), **YANDEX_AD)
    async with engine.begin() as conn:
        await record_pool_use(conn, "site", at(5), exhaustions=3, in_use=2)
    record = await stored(engine, call(minutes=10))
    assert record.attribution is not None
    assert record.attribution["pool_exhausted"] is True


async def test_referrer_and_click_ids_name_the_source_without_utm_tags(
    engine: AsyncEngine,
) -> None:
    """Without utm tags a visit from Google search counts as google / organic and one with a gclid
    as google / cpc."""
    await add_visit(engine, "organic", shown=(0, None), referrer="https://www.google.com/")
    await add_visit(
        engine, "ad", shown=(0, None), did=POOL_NUMBERS[1], gclid="Cj0KCQ", visitor_id="x"
    )
    organic = await stored(engine, call(minutes=5, linkedid="1.1"))
    ad = await stored(engine, call(did=POOL_NUMBERS[1], minutes=5, linkedid="1.2"))
    assert (organic.source, organic.medium) == ("google", "organic")
    assert (ad.source, ad.medium) == ("google", "cpc")


@pytest.mark.parametrize(
    ("model", "source", "touch"),
    [("last_touch", "yandex", "later"), ("first_touch", "vk", "first")],
)
async def test_first_or_last_touch_is_a_config_choice(
    engine: AsyncEngine, model: str, source: str, touch: str
) -> None:
    """The call's source follows the configured model (the visitor's first visit or their latest),
    and both touches are stored so reports can use either."""
    await add_visit(engine, "first", minutes=-3 * 24 * 60, visitor_id="browser-1", utm_source="vk")
    await add_visit(engine, "later", shown=(0, None), **YANDEX_AD)
    record = await stored(engine, call(minutes=5), settings(model=model))
    assert record.session_id == "later"
    assert record.source == source
    assert record.attribution is not None
    assert record.attribution["touch_session_id"] == touch
    assert record.attribution["earlier_sessions"] == ["first"]
    # both touches are kept, whatever the model, so reports can apply the other one
    async with engine.connect() as conn:
        columns = select(CallRow.first_touch_source, CallRow.last_touch_source)
        assert (await conn.execute(columns)).one() == ("vk", "yandex")


async def test_the_callers_earlier_calls_visits_are_recorded(engine: AsyncEngine) -> None:
    """A caller's second call, made from another visit, is credited to the new visit, is not a
    first-time call, and lists the visit of the earlier call."""
    await add_visit(engine, "monday", shown=(0, 10), **YANDEX_AD)
    await stored(engine, call(minutes=5, linkedid="1.1"))
    await add_visit(engine, "friday", shown=(100, None), minutes=100, visitor_id="browser-2")
    record = await stored(engine, call(minutes=105, linkedid="1.2"))
    assert record.session_id == "friday"
    assert record.first_time_caller is False
    assert record.attribution is not None
    assert record.attribution["earlier_call_sessions"] == ["monday"]


async def test_a_tracked_numbers_call_says_its_source_is_from_the_config(
    engine: AsyncEngine,
) -> None:
    """A call on a fixed tracked number takes the source configured for it (billboard), as first and
    last touch, with a reason naming the number."""
    record = await stored(engine, call(did="+74951110001"))
    assert record.source == "billboard"
    async with engine.connect() as conn:
        columns = select(CallRow.first_touch_source, CallRow.last_touch_source)
        assert (await conn.execute(columns)).one() == ("billboard", "billboard")
    assert record.attribution is not None
    assert record.attribution["method"] == "static"
    assert "+74951110001" in record.attribution["reason"]
