"""The outbox's delivery to a platform that fails the way platforms do (amoCRM's stand-in
over real HTTP, a real database): a dead platform gets one probe per backoff however many
calls wait, a rate limit pauses the whole target, a refused call does not hold the rest."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from amocrm_server import AmoCrmStandIn, Scripted
from clocks import DateClock
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.crm.amocrm import AmoCrmPlatform
from pbx_tracker.crm.delivery import OutboxDelivery
from pbx_tracker.crm.outbox import enqueue_calls
from pbx_tracker.crm.settings import AmoCrmSettings, CrmSettings
from pbx_tracker.staff import Directory
from stored import missed_call

TOKEN = "amo-outbox-token-0123456789"
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CALLERS = [f"+7916123450{n}" for n in range(5)]


@pytest.fixture(name="amocrm")
async def _amocrm() -> AsyncIterator[AmoCrmStandIn]:
    async with AmoCrmStandIn(TOKEN) as amocrm:
        for number, caller in enumerate(CALLERS):
            amocrm.add_contact(f"Client {number}", caller, responsible_user_id=900 + number)
        yield amocrm


async def delivery_to(
    amocrm: AmoCrmStandIn, engine: AsyncEngine, tmp_path: Path, clock: DateClock
) -> OutboxDelivery:
    token = tmp_path / "amocrm-token"
    token.write_text(TOKEN, encoding="utf-8")
    settings = AmoCrmSettings.model_validate(
        {"base_url": amocrm.base_url, "token_file": str(token)}
    )
    platform = AmoCrmPlatform(settings, Directory(), region="RU")
    crm = CrmSettings(retry_initial=10, retry_max=300)
    return OutboxDelivery(engine, platform, crm, clock)


async def five_missed_calls(engine: AsyncEngine) -> None:
    calls = [(missed_call(f"{n}.1", T0, caller), True) for n, caller in enumerate(CALLERS)]
    async with engine.begin() as conn:
        assert await enqueue_calls(conn, calls, T0, targets=["amocrm"]) == 5


async def test_a_dead_platform_gets_one_probe_per_backoff_then_the_whole_backlog(
    engine: AsyncEngine, amocrm: AmoCrmStandIn, tmp_path: Path
) -> None:
    """Five calls wait while amoCRM is down: it is tried once at 0 s, 10 s and 30 s (not five
    times each), shows down meanwhile, and takes all five in the first round after it is
    back."""
    clock = DateClock(T0)
    delivery = await delivery_to(amocrm, engine, tmp_path, clock)
    await five_missed_calls(engine)
    amocrm.down = True
    try:
        tries = []
        for wait in (0, 9, 1, 19, 1):  # 0 s, 9 s (paused), 10 s, 29 s (paused), 30 s
            clock.advance(wait)
            assert await delivery.deliver_due() == 0
            tries.append(amocrm.down_answers)
        assert tries == [1, 1, 2, 2, 3]
        assert delivery.state.down_since == T0
        amocrm.down = False
        clock.advance(40)  # the next try, 40 s after the third
        assert await delivery.deliver_due() == 5
    finally:
        await delivery.close()
    assert sorted(call["phone"] for call in amocrm.calls) == CALLERS
    assert delivery.state.down_since is None and delivery.state.delivered == 5


async def test_a_rate_limit_pauses_the_target_for_as_long_as_the_platform_asks(
    engine: AsyncEngine, amocrm: AmoCrmStandIn, tmp_path: Path
) -> None:
    """amoCRM answers 429 with Retry-After 7: nothing is sent for 7 s, the target is not
    shown as down, and then every call goes."""
    clock = DateClock(T0)
    delivery = await delivery_to(amocrm, engine, tmp_path, clock)
    await five_missed_calls(engine)
    too_many = json.dumps({"title": "Too Many Requests", "status": 429})
    amocrm.scripted.append(Scripted(429, too_many, {"Retry-After": "7"}))
    try:
        assert await delivery.deliver_due() == 0
        clock.advance(6)
        assert await delivery.deliver_due() == 0
        assert amocrm.calls == [] and delivery.state.down_since is None
        clock.advance(1)
        assert await delivery.deliver_due() == 5
    finally:
        await delivery.close()
    assert delivery.state.rate_limited == 1


async def test_a_call_the_platform_refuses_is_given_up_and_the_others_go(
    engine: AsyncEngine, amocrm: AmoCrmStandIn, tmp_path: Path
) -> None:
    """amoCRM refuses the first call's content (400): that call is given up at once and
    logged, and the four others are delivered in the same round."""
    clock = DateClock(T0)
    delivery = await delivery_to(amocrm, engine, tmp_path, clock)
    await five_missed_calls(engine)
    invalid = json.dumps({"title": "Bad Request", "status": 400, "validation-errors": []})
    amocrm.scripted.append(Scripted(400, invalid))
    try:
        assert await delivery.deliver_due() == 4
        assert await delivery.deliver_due() == 0
    finally:
        await delivery.close()
    assert delivery.state.given_up == 1 and len(amocrm.calls) == 4
