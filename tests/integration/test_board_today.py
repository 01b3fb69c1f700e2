"""The board's "today so far" read from a real database (SQLite and PostgreSQL): the
figures a supervisor reads match the calls and callbacks of the day, and nothing of
yesterday."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from pbx_tracker.board.today import today_figures
from pbx_tracker.callbacks.finished_calls import apply_call
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.calls.records import CallStatus, RingAttempt
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.store.session import make_async_engine
from stored import connected, missed_call, saved

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # 15:00 in Moscow
RULES = ReportRules(
    target_seconds=30, unique_days=None, model="last_touch", sla_minutes=15, zone=MOSCOW
)


def rang(manager: str, at: datetime, outcome: str) -> RingAttempt:
    return RingAttempt(manager, f"PJSIP/{manager}-1", at, at + timedelta(seconds=10), outcome)


async def test_today_counts_the_days_calls_per_manager_and_the_callers_not_called_back(
    migrated_url: str,
) -> None:
    """Two calls today (Boris answered one after 4 s of ringing; Anna's phone rang on the
    other and nobody took it, so its caller waits for a callback) and one yesterday: the
    board says 2 calls, 1 answered, 1 missed, 50 %, and one caller not called back."""
    morning = NOW - timedelta(hours=3)
    answered = replace(
        missed_call("a-1", morning, "+79161110001"),
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by="102",
        answered_at=morning + timedelta(seconds=4),
        ring_seconds=4,
        talk_seconds=60,
        attempts=(rang("102", morning, "answer"),),
    )
    missed = replace(
        missed_call("m-1", NOW - timedelta(hours=1), "+79162220002"),
        source="yandex-direct",
        attempts=(rang("101", NOW - timedelta(hours=1), "noanswer"),),
    )
    yesterday = missed_call("y-1", NOW - timedelta(days=1), "+79163330003")
    await saved(migrated_url, answered, missed, yesterday)
    async with connected(migrated_url, write=True) as conn:
        await apply_call(conn, missed, CallbackSettings(), now=missed.ended_at)
    engine = make_async_engine(migrated_url)
    try:
        day = await today_figures(engine, RULES, NOW)
    finally:
        await engine.dispose()
    assert day["day"] == "2026-03-10"
    assert (day["calls"], day["answered"], day["missed"]) == (2, 1, 1)
    assert day["answer_rate"] == 0.5
    assert day["wait_seconds"] == 4.0
    assert day["open_callbacks"] == 1
    assert day["oldest_callback_since"] == missed.started_at.timestamp()
    async with connected(migrated_url) as conn:
        missed_id = await conn.scalar(text("SELECT id FROM calls WHERE linkedid = 'm-1'"))
    assert day["oldest_callback_call"] == missed_id
    assert day["managers"]["102"]["answered"] == 1
    assert day["managers"]["101"]["missed_while_free"] == 1
