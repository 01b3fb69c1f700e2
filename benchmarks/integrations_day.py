"""What Bitrix24, amoCRM and Telegram receive for a day of calls, and what an hour with one
of them down costs: nothing lost, nothing twice, and how long the backlog takes.

    .venv/bin/python benchmarks/integrations_day.py [--calls 400] [--hours 8] [--speed 240]

Part 1, a day: `generate_day` makes ``--calls`` calls spread over ``--hours`` hours
(a busy small call centre), played by the simulated Asterisk (a real AMI server on
127.0.0.1) into the daemon running in this process (SQLite in a temporary folder),
with Bitrix24, amoCRM and Telegram reminders configured (every manager mapped to a
Bitrix24 user, an amoCRM user and a Telegram chat; callbacks notify ``telegram``)
against the loopback stand-ins of tests/ (their documented rate limits on).  The day
is played ``--speed`` times faster than real time, stamped as the day that ended
just before the run (so durations are true and reminders are due at once), and the
stand-ins' clocks run ``--speed`` times faster too, so their limits count the
platforms' seconds; the daemon's own waits stay in wall seconds (said in the
output).  Then it waits until every outbox is empty and prints, per platform, the
requests received by method, those refused for the rate limit, the stored calls
against the calls the platform got, duplicates and lost calls, and the reminders.

Part 2, an hour down: the outbox events the daemon wrote for the busiest hour's
calls in Part 1 are written again, at their moments of the day, into a fresh
database while the platform (a fresh stand-in over HTTP) is down; `OutboxDelivery`
runs a round every second of a clock moved by hand, for an hour, then the platform
comes back.  Printed: the requests that reached the dead platform (the probes),
how long after its return the backlog was delivered (on the delivery's clock), in
how many rounds, and lost / duplicated / out-of-order calls.  Bitrix24 down twice:
answering 503, then refusing connections; amoCRM answering 503 (its stand-in
cannot refuse connections).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
import wave
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from amocrm_server import AmoCrmStandIn
from bitrix24_server import Bitrix24Portal
from clocks import DateClock
from daemons import start_daemon
from telegram_server import BotApi, telegram_server

from pbx_tracker.callbacks.tasks import CallbackTask, list_tasks
from pbx_tracker.calls.records import CallRecord, CallStatus, record_from_json
from pbx_tracker.config import Settings, load_settings, settings_from_mapping
from pbx_tracker.crm.amocrm import AmoCrmPlatform, call_uniq
from pbx_tracker.crm.bitrix24 import Bitrix24Platform
from pbx_tracker.crm.delivery import OutboxDelivery
from pbx_tracker.crm.outbox import enqueue_event, outbox_table, pending_count
from pbx_tracker.crm.platform import Links, OutboxEvent, Platform
from pbx_tracker.crm.settings import AmoCrmSettings, Bitrix24Settings, CrmSettings
from pbx_tracker.logging import configure_logging
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.generated_day import generate_day
from pbx_tracker.sim.scenarios import MONITOR_DIR, SimCall, merge
from pbx_tracker.store.calls import list_calls
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head
from traces import TRACE_CONFIG

DIDS = [
    ("74951110001", "yandex-direct"),
    ("74951110002", "google-ads"),
    ("74951110003", "offline-flyer"),
]
MANAGERS = {"101": 0, "102": 1, "103": 2}
BITRIX24_USER, AMOCRM_USER, CHAT = 11, 911, 5550101  # + the manager's number
AMOCRM_TOKEN = "amo-bench-token-0123456789"
BOT_TOKEN = "123456:bench-bot-token"
AMI_SECRET = "tracker-secret"
SETTLE_TIMEOUT = 180.0  # wall seconds for the outboxes to empty after the day
QUIET = 3.0  # wall seconds with nothing new written: settled
ONCE = (  # what Bitrix24 must get once per call
    "telephony.externalcall.register",
    "telephony.externalcall.finish",
    "telephony.externalcall.attachrecord",
)
RANK = {  # the order a call's requests must reach Bitrix24 in
    "telephony.externalcall.register": 0,
    "telephony.externalcall.show": 1,
    "telephony.externalcall.hide": 1,
    "telephony.externalcall.finish": 2,
    "telephony.externalcall.attachrecord": 3,
}


# -- the settings and the day -------------------------------------------------------------


def day_settings(
    folder: Path, url: str, ami_port: int, portal: str, amocrm: str, bot: str
) -> Settings:
    """The traces' PBX with the three platforms, every manager on each."""
    webhook, token, bot_token = folder / "bitrix24-webhook", folder / "amo-token", folder / "bot"
    webhook.write_text(portal, encoding="utf-8")
    token.write_text(AMOCRM_TOKEN, encoding="utf-8")
    bot_token.write_text(BOT_TOKEN, encoding="utf-8")
    base = load_settings(TRACE_CONFIG, environ={})
    data = base.model_dump(mode="json", exclude={"routing", "agi", "callbacks", "crm"})
    data["ami"].update(port=ami_port, secret=AMI_SECRET, reconnect_initial=0.05)
    data["database"].update(url=url, spill_path=str(folder / "spill.jsonl"))
    data["calls"]["dead_letters"] = str(folder / "dead-letters.jsonl")
    data["agi"] = {"port": 0}
    data["routing"] = {"dial_template": "IAX2/{extension}/{extension}"}
    data["recordings_dir"] = str(folder / "monitor")
    for manager in data["managers"]:
        number = MANAGERS[manager["extension"]]
        manager.update(
            bitrix24_user=BITRIX24_USER + number,
            amocrm_user=AMOCRM_USER + number,
            telegram_chat=CHAT + number,
        )
    data["crm"] = {
        "bitrix24": {"webhook_url_file": str(webhook)},
        "amocrm": {"base_url": amocrm, "token_file": str(token)},
    }
    telegram = {"token_file": str(bot_token), "api_url": bot, "poll_seconds": 1}
    data["callbacks"] = {
        "ring_me": {"context": "callback"},
        "notify": ["telegram"],
        "telegram": telegram,
    }
    return settings_from_mapping(data, environ={})


def recorded(calls: list[SimCall], folder: Path) -> list[dict[str, str]]:
    """The day's messages with the recordings in ``folder`` (each one written there)."""
    for call in calls:
        if call.expected.recording_path:
            write_wav(Path(call.expected.recording_path.replace(MONITOR_DIR, f"{folder}/")))
    return [
        {key: value.replace(MONITOR_DIR, f"{folder}/") for key, value in message.items()}
        for message in merge(calls)
    ]


def write_wav(path: Path) -> None:
    """Half a second of silence, as MixMonitor writes a recording."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 4000)


def scaled_clock(speed: float) -> Callable[[], float]:
    """Monotonic seconds running ``speed`` times faster than the wall's."""
    start = time.monotonic()
    return lambda: start + (time.monotonic() - start) * speed


# -- Part 1: a day ----------------------------------------------------------------------------


@dataclass
class Row:
    """One outbox row as the daemon wrote it."""

    id: int
    target: str
    call_key: str
    event: str
    key: str
    payload: dict[str, Any]
    created_at: datetime
    delivered: bool
    failed: bool


@dataclass
class Day:
    settings: Settings
    calls: list[SimCall]
    records: list[CallRecord]
    rows: list[Row]
    tasks: list[CallbackTask]
    epoch: float  # the Timestamp of `_ts` 0
    first_ts: float
    play_wall: float  # wall time the play began
    speed: float
    play_seconds: float = 0.0
    settle_seconds: float = 0.0
    lines: list[str] = field(default_factory=list)

    def moment(self, written: datetime) -> float:
        """The moment of the day (epoch seconds, the calls' clock) of a wall time."""
        return self.epoch + self.first_ts + (written.timestamp() - self.play_wall) * self.speed


async def a_day(args: argparse.Namespace, folder: Path) -> Day:
    day_seconds = args.hours * 3600.0
    epoch = time.time() - day_seconds - 600  # the day ended ten minutes before the run
    calls = generate_day(
        args.calls, dids=DIDS, seed=args.seed, mean_gap=day_seconds / args.calls, epoch=epoch
    )
    messages = recorded(calls, folder / "monitor")
    url = f"sqlite:///{folder / 'day.sqlite3'}"
    await asyncio.to_thread(upgrade_to_head, url)
    clock = scaled_clock(args.speed)
    chats = [CHAT + number for number in MANAGERS.values()]
    async with (
        served_portal(clock) as portal,
        AmoCrmStandIn(AMOCRM_TOKEN, clock=clock) as amocrm,
        telegram_server(BOT_TOKEN, chats, clock=clock) as bot,
        FakeAsterisk(username="tracker", secret=AMI_SECRET, timestamp_events=True) as asterisk,
    ):
        settings = day_settings(
            folder, url, asterisk.port, portal.webhook_url, amocrm.base_url, bot.url
        )
        engine = make_async_engine(url)
        try:
            async with start_daemon(settings, asyncio.Event()) as running:
                play_wall = time.time()
                await asterisk.play(messages, speed=args.speed, epoch=epoch)
                played = time.time()
                stored = lambda: len({r.linkedid for r in running.written})  # noqa: E731
                await settled(engine, stored, len(calls))
                settle = time.time() - played
            async with engine.connect() as conn:
                records = await list_calls(conn, limit=1_000_000)
                rows = await outbox_rows(conn)
                tasks = await list_tasks(conn, status=None, limit=1_000_000)
        finally:
            await engine.dispose()
        first = float(messages[0]["_ts"])
        day = Day(settings, calls, records, rows, tasks, epoch, first, play_wall, args.speed)
        day.play_seconds, day.settle_seconds = played - play_wall, settle
        day.lines = day_figures(day, portal, amocrm, bot)
    return day


async def settled(engine: AsyncEngine, stored: Callable[[], int], calls: int) -> None:
    """Every call stored and every outbox empty, with nothing new written for `QUIET` s."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            waiting = sum(
                [await pending_count(conn, t) for t in ("bitrix24", "amocrm", "telegram")]
            )
            written = len(await outbox_rows(conn))
        if written != seen or waiting or stored() < calls:
            seen, quiet_since = written, time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET:
            return
        await asyncio.sleep(0.25)
    print(f"  !! not settled within {SETTLE_TIMEOUT:g} s: {stored()} of {calls} calls stored")


async def outbox_rows(conn: Any) -> list[Row]:
    o = outbox_table.c
    result = await conn.execute(select(outbox_table).order_by(o.id))
    return [
        Row(
            r.id,
            r.target,
            r.call_key,
            r.event,
            r.idempotency_key,
            dict(r.payload),
            r.created_at.replace(tzinfo=UTC) if r.created_at.tzinfo is None else r.created_at,
            r.delivered_at is not None,
            r.failed_at is not None,
        )
        for r in result.all()
    ]


@contextlib.asynccontextmanager
async def served_portal(clock: Callable[[], float]) -> Any:
    portal = CountingPortal(clock=clock)
    await portal.start()
    try:
        yield portal
    finally:
        await portal.stop()


class CountingPortal(Bitrix24Portal):
    """The Bitrix24 stand-in, counting the requests it answers 503 while ``down``."""

    down_answers = 0

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            self.down_answers += 1
        return await super().handle(request)


def day_figures(day: Day, portal: CountingPortal, amocrm: AmoCrmStandIn, bot: BotApi) -> list[str]:
    stored = {f"{r.node}:{r.linkedid}": r for r in day.records}
    answered = sum(r.status is CallStatus.ANSWERED for r in stored.values())
    hidden = sum(r.caller is None for r in stored.values())
    lines = [
        f"  stored: {len(stored)} inbound calls of {len(day.calls)} played "
        f"(answered {answered} / missed {len(stored) - answered}; hidden caller {hidden})",
    ]
    lines += bitrix24_figures(portal, stored, day.rows)
    lines += amocrm_figures(amocrm, stored)
    lines += telegram_figures(bot, day.tasks, day.rows)
    lines += outbox_figures(day.rows)
    return lines


def by_method(names: Iterable[str]) -> str:
    counts = Counter(names)
    return ", ".join(f"{name} {count}" for name, count in counts.most_common()) or "none"


def bitrix24_figures(
    portal: Bitrix24Portal, stored: dict[str, CallRecord], rows: list[Row]
) -> list[str]:
    got = bitrix24_got(portal)
    finished = {key: calls[-1] for key, calls in got.items() if calls[-1].finish is not None}
    ok = sum(str(c.finish.get("STATUS_CODE")) == "200" for c in finished.values() if c.finish)
    rate = sum(code == "QUERY_LIMIT_EXCEEDED" for _, code in portal.refused)
    other = [f"{m} {c}" for m, c in portal.refused if c != "QUERY_LIMIT_EXCEEDED"]
    dup = bitrix24_duplicates(portal)
    lost = [k for k, r in stored.items() if r.caller is not None and k not in finished]
    live = {
        row.call_key for row in rows if row.target == "bitrix24" and row.event == "call.ringing"
    }
    ringing = sum(1 for key in finished if key in live)
    return [
        f"  bitrix24: {len(portal.requests)} requests taken: {by_method(portal.methods())}",
        f"    refused for the rate limit (QUERY_LIMIT_EXCEEDED): {rate}; other refusals: "
        f"{by_method(other)}",
        f"    calls got (registered and finished): {len(finished)} of {len(stored)} stored "
        f"(answered {ok} / missed {len(finished) - ok}); {ringing} shown while ringing, "
        f"{len(finished) - ringing} registered at their end",
        f"    duplicates: {dup}   lost: {len(lost)}   out of order: {bitrix24_disorder(portal)}",
    ]


def bitrix24_got(portal: Bitrix24Portal) -> dict[str, list[Any]]:
    """The portal's calls by our call key (EXTERNAL_CALL_ID), in registration order."""
    got: dict[str, list[Any]] = defaultdict(list)
    for call in portal.calls.values():
        got[str(call.params.get("EXTERNAL_CALL_ID"))].append(call)
    return got


def bitrix24_duplicates(portal: Bitrix24Portal) -> int:
    """Registrations, finishes and recordings sent more than once for one call (a second
    finish the portal refused counts too)."""
    sent = Counter(
        (a.method, str(a.params.get("EXTERNAL_CALL_ID") or a.params.get("CALL_ID")))
        for a in portal.requests
        if a.method in ONCE
    )
    refused = sum(1 for m, code in portal.refused if m in ONCE and code == "ERROR_CORE")
    return sum(count - 1 for count in sent.values()) + refused


def bitrix24_disorder(portal: Bitrix24Portal) -> int:
    """Calls whose requests came out of register → show/hide → finish → attachRecord."""
    key_of = {call.call_id: key for key, calls in bitrix24_got(portal).items() for call in calls}
    ranks: dict[str, list[int]] = defaultdict(list)
    for accepted in portal.requests:
        rank = RANK.get(accepted.method)
        if rank is None:
            continue
        if accepted.method == "telephony.externalcall.register":
            key = str(accepted.params.get("EXTERNAL_CALL_ID"))
        else:
            key = key_of.get(str(accepted.params.get("CALL_ID")), "?")
        ranks[key].append(rank)
    return sum(1 for seq in ranks.values() if seq != sorted(seq))


def amocrm_figures(amocrm: AmoCrmStandIn, stored: dict[str, CallRecord]) -> list[str]:
    requests = [f"{seen.method} {seen.path}" for seen in amocrm.requests]
    uniqs = Counter(str(call.get("uniq")) for call in amocrm.calls)
    talked = sum(call.get("call_status") == 4 for call in amocrm.calls)
    lost = [k for k, r in stored.items() if r.caller is not None and call_uniq(r) not in uniqs]
    return [
        f"  amocrm: {len(amocrm.requests)} requests taken: {by_method(requests)}",
        f"    refused for the rate limit (429): {amocrm.refused}",
        f"    calls got: {len(uniqs)} of {len(stored)} stored (answered {talked} / missed "
        f"{len(amocrm.calls) - talked}); contacts made: {len(amocrm.contacts)}",
        f"    duplicates: {sum(n - 1 for n in uniqs.values())}   lost: {len(lost)}",
    ]


def telegram_figures(bot: BotApi, tasks: list[CallbackTask], rows: list[Row]) -> list[str]:
    calls = Counter(name.lower() for name in bot.calls)
    messages = [m for chat in bot.messages.values() for m in chat]
    edits = sum(m.edits for m in messages)
    sends = calls["sendmessage"]
    edit_calls = calls["editmessagetext"]
    mine = [row for row in rows if row.target == "telegram"]
    reminded = {row.call_key for row in mine if row.event == "reminder" and row.delivered}
    closed = Counter(str(task.resolution.value if task.resolution else "open") for task in tasks)
    return [
        f"  telegram: sendMessage {sends} (taken {len(messages)}, refused {sends - len(messages)}),"
        f" editMessageText {edit_calls} (taken {edits}, refused {edit_calls - edits}),"
        f" getUpdates {calls['getupdates']} (long polls)",
        f"    callback tasks opened: {len(tasks)} ({by_method(closed)}); reminders in the "
        f"tasks: {sum(t.reminders_sent for t in tasks)}",
        f"    reminders sent: {len(messages)} to {len(reminded)} tasks; messages edited: {edits} "
        f"(buttons off an earlier reminder, or the task closed elsewhere)",
    ]


def outbox_figures(rows: list[Row]) -> list[str]:
    lines = ["  outbox rows written by the daemon (delivered / given up / waiting):"]
    for target in ("bitrix24", "amocrm", "telegram"):
        mine = [row for row in rows if row.target == target]
        kinds = by_method(row.event for row in mine)
        delivered = sum(row.delivered for row in mine)
        failed = sum(row.failed for row in mine)
        left = len(mine) - delivered - failed
        lines.append(f"    {target}: {len(mine)} ({kinds}): {delivered} / {failed} / {left}")
    return lines


# -- Part 2: an hour down ----------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    at: float  # epoch seconds of the day
    row: Row


def busiest_hour(day: Day, target: str) -> tuple[float, list[Due]]:
    """The whole hour of the day with most calls all of whose events fell inside it."""
    events: dict[str, list[Due]] = defaultdict(list)
    for row in day.rows:
        if row.target == target:
            events[row.call_key].append(Due(day.moment(row.created_at), row))
    start = day.epoch + day.first_ts
    last = max((d.at for dues in events.values() for d in dues), default=start)
    best: tuple[int, float, list[Due]] = (-1, start, [])
    for hour in range(int((last - start) // 3600) + 1):
        begin = start + hour * 3600
        inside = [
            dues for dues in events.values() if all(begin <= d.at < begin + 3600 for d in dues)
        ]
        if len(inside) > best[0]:
            best = (len(inside), begin, sorted((d for ds in inside for d in ds), key=order))
    return best[1], best[2]


def order(due: Due) -> tuple[float, int]:
    return due.at, due.row.id


class Watched:
    """A platform as the delivery sees it, noting each event it took (in order)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.name = platform.name
        self.taken: list[OutboxEvent] = []

    async def deliver(self, event: OutboxEvent, links: Links) -> None:
        await self.platform.deliver(event, links)
        self.taken.append(event)

    async def close(self) -> None:
        await self.platform.close()


@dataclass
class Outage:
    name: str
    calls: int = 0
    events: int = 0
    probes: int = 0
    seen_by_platform: int | None = None
    back_after: float | None = None  # first delivery after the return
    done_after: float | None = None  # backlog delivered
    rounds: int = 0
    rate_limited: int = 0
    lost: int = 0
    duplicated: int = 0
    disorder: int = 0
    given_up: int = 0

    def lines(self) -> list[str]:
        seen = "" if self.seen_by_platform is None else f" ({self.seen_by_platform} seen by it)"
        done = "never" if self.done_after is None else f"{self.done_after:.0f} s"
        first = "never" if self.back_after is None else f"{self.back_after:.0f} s"
        return [
            f"  {self.name}: {self.calls} calls, {self.events} events written while down",
            f"    requests to the dead platform in the hour: {self.probes}{seen}",
            f"    after it came back: first delivery {first}, backlog delivered {done}, in "
            f"{self.rounds} rounds that delivered ({self.rate_limited} pauses for the rate limit)",
            f"    lost {self.lost}   duplicated {self.duplicated}   out of order "
            f"{self.disorder}   given up {self.given_up}",
        ]


async def an_hour_down(day: Day, target: str, mode: str, folder: Path) -> Outage:
    hour, dues = busiest_hour(day, target)
    outage = Outage(f"{target}, {mode}")
    outage.calls, outage.events = len({d.row.call_key for d in dues}), len(dues)
    url = f"sqlite:///{folder / f'outage-{target}-{mode.split()[0]}.sqlite3'}"
    await asyncio.to_thread(upgrade_to_head, url)
    engine = make_async_engine(url)
    clock = DateClock(datetime.fromtimestamp(hour, UTC))
    try:
        async with a_platform(day.settings, target, clock, folder) as (standin, watched):
            delivery = OutboxDelivery(engine, watched, CrmSettings(), clock)
            try:
                await play_outage(delivery, engine, standin, mode, deque(dues), clock, outage)
            finally:
                await delivery.close()
            judge(outage, target, standin, watched, dues)
    finally:
        await engine.dispose()
    return outage


@contextlib.asynccontextmanager
async def a_platform(settings: Settings, target: str, clock: DateClock, folder: Path) -> Any:
    """A fresh stand-in on ``clock`` and our platform talking to it (the day's settings)."""
    if target == "bitrix24":
        async with served_portal(clock.seconds) as portal:
            webhook = folder / "bitrix24-webhook"
            webhook.write_text(portal.webhook_url, encoding="utf-8")
            bitrix24 = Bitrix24Settings.model_validate({"webhook_url_file": str(webhook)})
            yield (
                portal,
                Watched(
                    Bitrix24Platform(
                        bitrix24,
                        settings.directory,
                        recordings_dir=settings.recordings_dir,
                        region=settings.phone_region,
                    )
                ),
            )
        return
    async with AmoCrmStandIn(AMOCRM_TOKEN, clock=clock.seconds) as amocrm:
        token = folder / "amo-token"
        token.write_text(AMOCRM_TOKEN, encoding="utf-8")
        amo = AmoCrmSettings.model_validate({"base_url": amocrm.base_url, "token_file": str(token)})
        yield amocrm, Watched(AmoCrmPlatform(amo, settings.directory, region=settings.phone_region))


async def play_outage(
    delivery: OutboxDelivery,
    engine: AsyncEngine,
    standin: Any,
    mode: str,
    dues: deque[Due],
    clock: DateClock,
    outage: Outage,
) -> None:
    """An hour down, a round a second, then back until nothing waits (at most 4 h)."""
    await switch(standin, mode, down=True)
    end = clock.seconds() + 3600
    while clock.seconds() < end:
        await write_due(engine, dues, clock)
        await delivery.deliver_due()
        clock.advance(1)
    outage.probes = delivery.state.retries
    if mode == "answering 503":  # a refused connection reaches no server to count it
        outage.seen_by_platform = standin.down_answers
    await switch(standin, mode, down=False)
    back = clock.seconds()
    limited = delivery.state.rate_limited
    while clock.seconds() < back + 4 * 3600:
        await write_due(engine, dues, clock)
        if await delivery.deliver_due():
            outage.rounds += 1
            outage.done_after = clock.seconds() - back
            if outage.back_after is None:
                outage.back_after = outage.done_after
        async with engine.connect() as conn:
            if not dues and await pending_count(conn, delivery.target) == 0:
                break
        clock.advance(1)
    outage.rate_limited = delivery.state.rate_limited - limited
    outage.given_up = delivery.state.given_up


async def switch(standin: Any, mode: str, *, down: bool) -> None:
    if mode == "refusing connections":
        await (standin.refuse() if down else standin.resume())
    else:
        standin.down = down


async def write_due(engine: AsyncEngine, dues: deque[Due], clock: DateClock) -> None:
    """The events whose moment has come, written as the daemon wrote them."""
    now = clock.seconds()
    async with engine.begin() as conn:
        while dues and dues[0].at <= now:
            row = dues.popleft().row
            await enqueue_event(
                conn,
                target=row.target,
                call_key=row.call_key,
                kind=row.event,
                key=row.key,
                payload=row.payload,
                now=clock(),
            )


def judge(outage: Outage, target: str, standin: Any, watched: Watched, dues: list[Due]) -> None:
    taken = Counter(event.key for event in watched.taken)
    outage.duplicated = sum(n - 1 for n in taken.values())
    ids: dict[str, list[int]] = defaultdict(list)
    for event in watched.taken:
        ids[event.call_key].append(event.id)
    outage.disorder = sum(1 for seq in ids.values() if seq != sorted(seq))
    records = {
        d.row.call_key: record_from_json(d.row.payload["call"])
        for d in dues
        if d.row.event in ("call.finished", "call.updated")
    }
    wanted = {key for key, record in records.items() if record.caller is not None}
    if target == "bitrix24":
        got = bitrix24_got(standin)
        done = {key for key, calls in got.items() if calls[-1].finish is not None}
        outage.duplicated += bitrix24_duplicates(standin)
        outage.disorder += bitrix24_disorder(standin)
    else:
        uniqs = Counter(str(call.get("uniq")) for call in standin.calls)
        done = {key for key, record in records.items() if call_uniq(record) in uniqs}
        outage.duplicated += sum(n - 1 for n in uniqs.values())
    outage.lost = len(wanted - done) + sum(1 for d in dues if d.row.key not in taken)


# -- the run -----------------------------------------------------------------------------------


def header(args: argparse.Namespace) -> list[str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return [
        f"integrations_day: {os.cpu_count()} cores ({model or platform.machine()}), "
        f"Python {platform.python_version()}, SQLite",
        f"settings: --calls {args.calls} --hours {args.hours:g} --speed {args.speed:g} "
        f"--seed {args.seed}; outbox retry_initial 10 s, retry_max 300 s (the defaults)",
    ]


async def run(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    print("\n".join(header(args)), flush=True)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        day = await a_day(args, folder)
        print(
            f"\nPart 1, a day: {args.calls} calls over {args.hours:g} h played x{args.speed:g} "
            f"in {day.play_seconds:.0f} s; outboxes empty {day.settle_seconds:.1f} s after "
            f"the last call (incl. {QUIET:g} s of quiet)\n"
            f"  the stand-ins' clocks run x{args.speed:g} (Bitrix24's leaky bucket 2/s burst 50,"
            f" amoCRM's 7/s, Telegram's flood control count the day's seconds); the daemon's "
            f"own waits (QUERY_LIMIT_EXCEEDED 1 s, 429 Retry-After) are wall seconds, "
            f"x{args.speed:g} longer in the day's time; live ringing is looked at 10 times a "
            f"wall second, i.e. every {args.speed / 10:g} s of the day, so short rings end "
            f"before they are seen and those calls are registered at their end"
        )
        print("\n".join(day.lines), flush=True)
        hour, _ = busiest_hour(day, "bitrix24")
        start = datetime.fromtimestamp(hour, UTC) - datetime.fromtimestamp(
            day.epoch + day.first_ts, UTC
        )
        number = int(start.total_seconds() // 3600) + 1
        print(
            f"\nPart 2, an hour down: the busiest hour's calls (hour {number} "
            f"of the day) written again at their moments; OutboxDelivery with the "
            f"default backoff, a round every second of a clock moved by hand; platform down "
            f"for 3600 s, then back"
        )
        bad = 0
        for target, mode in (
            ("bitrix24", "answering 503"),
            ("bitrix24", "refusing connections"),
            ("amocrm", "answering 503"),
        ):
            sub = folder / f"{target}-{mode.split()[0]}"
            sub.mkdir()
            outage = await an_hour_down(day, target, mode, sub)
            bad += outage.lost + outage.duplicated + outage.disorder
            print("\n".join(outage.lines()), flush=True)
        print("  amocrm, refusing connections: not run (its stand-in can only answer 503)")
    print(f"\nrun time {time.perf_counter() - began:.0f} s")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--hours", type=float, default=8.0, help="the day's length")
    parser.add_argument("--speed", type=float, default=240.0, help="times real time")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    configure_logging("critical", "json")  # the figures say what went wrong
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
