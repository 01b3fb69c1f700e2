"""The CRM webhook from the outbox, on SQLite and PostgreSQL: every stored call reaches a
real HTTP server on loopback, at least once, in order per call, through a CRM outage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from clocks import DateClock
from daemons import start_daemon, trace_settings
from servers import serving_app
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from waiting import first_found, until

from pbx_tracker.callbacks.notifiers import WebhookNotifier, verify_signature
from pbx_tracker.callbacks.settings import WebhookSettings
from pbx_tracker.crm.delivery import OutboxDelivery
from pbx_tracker.crm.outbox import claim, due_deliveries, enqueue_calls, outbox_table
from pbx_tracker.crm.settings import CrmSettings
from pbx_tracker.crm.webhook import WebhookPlatform
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from stored import missed_call
from traces import TRACES

SECRET = "crm-signing-secret"
WAIT = 15.0
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@dataclass
class Crm:
    """A CRM endpoint that answers ``failures`` first, then 200; keeps what it got."""

    failures: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        assert verify_signature(
            SECRET, headers["X-PBX-Tracker-Timestamp"], body, headers["X-PBX-Tracker-Signature"]
        )
        self.received.append((headers, json.loads(body)))
        self.changed.set()
        status = self.failures.pop(0) if self.failures else 200
        return web.json_response({"ok": status == 200}, status=status)

    async def wait_for(self, count: int) -> None:
        await until(lambda: len(self.received) >= count, self.changed, WAIT)


@pytest.fixture(name="crm")
async def _crm() -> AsyncIterator[Crm]:
    crm = Crm()
    app = web.Application()
    app.router.add_post("/hooks", crm.handle)
    async with serving_app(app) as port:
        crm.url = f"http://127.0.0.1:{port}/hooks"
        yield crm


def crm_settings(url: str) -> CrmSettings:
    webhook = WebhookSettings(url=url, secret=SECRET, attempts=1, timeout=2)  # type: ignore[arg-type]
    return CrmSettings(webhook=webhook, retry_initial=0.05, retry_max=0.2)


async def delivered_row(engine: AsyncEngine, delivery: OutboxDelivery) -> Any:
    """The one outbox row, once the delivery rounds have marked it delivered."""

    async def delivered() -> Any:
        async with engine.connect() as conn:
            (row,) = (await conn.execute(select(outbox_table))).all()
        return row if row.delivered_at is not None else None

    return await first_found(delivered, delivery.rounds, WAIT)


async def test_a_stored_call_reaches_the_crm_through_an_outage(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path, crm: Crm
) -> None:
    """The CRM answers 503 twice: the call's event is retried and arrives with the same
    idempotency key every time; the outbox then says delivered."""
    crm.failures = [503, 503]
    environ = {
        "PBX_TRACKER_CRM__WEBHOOK__URL": crm.url,
        "PBX_TRACKER_CRM__WEBHOOK__SECRET": SECRET,
        "PBX_TRACKER_CRM__WEBHOOK__ATTEMPTS": "1",
        "PBX_TRACKER_CRM__RETRY_INITIAL": "0.05",
        "PBX_TRACKER_CRM__RETRY_MAX": "0.1",
    }
    settings = trace_settings(migrated_url, asterisk.port, tmp_path, **environ)
    async with start_daemon(settings, asyncio.Event()) as running:
        await asterisk.play(trace_events(TRACES / "01_answered_simple.jsonl"))
        await running.wait_for_records(1)
        await crm.wait_for(3)
        engine = running.daemon.writer.engine
        row = await delivered_row(engine, running.daemon.outbox["webhook"])
    keys = {headers["X-PBX-Tracker-Delivery"] for headers, _ in crm.received}
    assert keys == {row.idempotency_key}
    _, body = crm.received[-1]
    assert body["event"] == "call.finished"
    assert body["call"]["caller"] == "+79161234501"
    assert body["call"]["status"] == "answered" and body["call"]["answered_by"] == "101"
    assert row.attempts == 3 and row.last_error is None


async def test_the_same_call_stored_again_adds_nothing_a_changed_one_an_update(
    engine: AsyncEngine,
) -> None:
    """The CRM gets call.finished once for a call; storing it again unchanged sends nothing more,
    and a changed call sends call.updated."""
    call = missed_call("1.1", T0, "+79161234567")
    async with engine.begin() as conn:
        assert await enqueue_calls(conn, [(call, True)], T0) == 1
        assert await enqueue_calls(conn, [(call, False)], T0) == 0
        changed = call.replace(source="yandex")
        assert await enqueue_calls(conn, [(changed, False)], T0) == 1
        events = (await conn.execute(select(outbox_table.c.event).order_by("id"))).scalars()
        assert list(events) == ["call.finished", "call.updated"]


async def test_events_of_one_call_go_in_order_and_one_daemon_at_a_time(
    engine: AsyncEngine,
) -> None:
    """A call's update is not sent before its finished event, and a delivery one daemon has claimed
    is not sent by another."""
    first, other = missed_call("1.1", T0, "+79161234567"), missed_call("2.1", T0, None)
    async with engine.begin() as conn:
        await enqueue_calls(conn, [(first, True), (other, True)], T0)
        await enqueue_calls(conn, [(first.replace(source="vk"), False)], T0)
        due = await due_deliveries(conn, T0, 10)
        # the update of call 1.1 waits for its finished event
        assert [(d.call_key, d.event) for d in due] == [
            ("pbx1:1.1", "call.finished"),
            ("pbx1:2.1", "call.finished"),
        ]
        until = T0 + timedelta(minutes=1)
        assert await claim(conn, due[0].id, T0, until)
        assert not await claim(conn, due[0].id, T0, until)  # another daemon: refused
        assert [d.call_key for d in await due_deliveries(conn, T0, 10)] == ["pbx1:2.1"]


async def test_delivery_keeps_order_when_the_first_event_fails(
    engine: AsyncEngine, crm: Crm
) -> None:
    """The CRM refuses the finished event once: the update is not sent before it."""
    call = missed_call("1.1", T0, "+79161234567")
    async with engine.begin() as conn:
        await enqueue_calls(conn, [(call, True)], T0)
        await enqueue_calls(conn, [(call.replace(source="vk"), False)], T0)
    crm.failures = [500]
    clock = DateClock(T0)
    settings = crm_settings(crm.url)
    assert settings.webhook is not None
    async with WebhookNotifier(settings.webhook) as notifier:
        delivery = OutboxDelivery(engine, WebhookPlatform(notifier), settings, clock)
        assert await delivery.deliver_due() == 0
        assert [body["event"] for _, body in crm.received] == ["call.finished"]
        clock.advance(1)  # past the retry wait
        assert await delivery.deliver_due() == 1
        assert await delivery.deliver_due() == 1
    assert [body["event"] for _, body in crm.received] == [
        "call.finished",
        "call.finished",
        "call.updated",
    ]
