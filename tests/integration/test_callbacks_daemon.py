"""Missed calls to call back, through the running daemon: captured calls played by the fake
Asterisk open tasks in the database, reminders arrive on a real SMTP server, "ring me" places a
real Originate, and the task closes when the customer is reached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daemons import start_daemon
from mailserver import Mailbox
from sqlalchemy import select
from telegram_server import telegram_server
from waiting import until

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.tasks import CallbackTask
from pbx_tracker.calls.records import SpamReason
from pbx_tracker.config import Settings, load_settings, settings_from_mapping
from pbx_tracker.daemon import Daemon
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import make_call
from pbx_tracker.sim.traces import trace_events
from pbx_tracker.spam import marking
from pbx_tracker.spam.settings import SpamSettings
from pbx_tracker.store.calls import save_call
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.store.models import CallRow
from stored import (
    connected,
    missed_call,
    saved,
    stored_calls,
    stored_tasks,
    tasks_once_taken,
)
from traces import TRACE_CONFIG, TRACES

WAIT = 20.0
CUSTOMER = "+79161234503"  # the caller of trace 03 (missed, rang 101)


def callback_settings(
    url: str,
    port: int,
    tmp_path: Path,
    *,
    telegram_chats: dict[str, int] | None = None,
    **callbacks: Any,
) -> Settings:
    """The traces' config with ``callbacks`` (and each manager's ``telegram_chat``)."""
    base = load_settings(TRACE_CONFIG, environ={})
    data = base.model_dump(mode="json", exclude={"routing", "agi", "callbacks"})
    data["ami"].update(port=port, secret="tracker-secret", reconnect_initial=0.05)
    data["database"].update(url=url, spill_path=str(tmp_path / "spill.jsonl"))
    data["calls"]["dead_letters"] = str(tmp_path / "dead-letters.jsonl")
    data["agi"] = {"port": 0}
    data["routing"] = {"dial_template": "IAX2/{extension}/{extension}"}
    for manager in data["managers"]:
        manager["email"] = f"m{manager['extension']}@example.ru"
        manager["telegram_chat"] = (telegram_chats or {}).get(manager["extension"])
    data["callbacks"] = {"ring_me": {"context": "callback"}, "sla_minutes": 60, **callbacks}
    return settings_from_mapping(data, environ={})


class Pbx:
    def __init__(self, daemon: Daemon, url: str) -> None:
        self.daemon, self.url = daemon, url

    async def tasks(self, status: str | None = None) -> list[CallbackTask]:
        return await stored_tasks(self.url, status)

    async def until(self, check: Any) -> list[CallbackTask]:
        """Wait (bounded) until the service took in calls and ``check(tasks)`` holds."""
        service = self.daemon.callbacks
        assert service is not None
        return await tasks_once_taken(self.url, service.handled, WAIT, holding=check)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Pbx]:
    await asyncio.to_thread(upgrade_to_head, settings.database.url)
    async with start_daemon(settings, asyncio.Event()) as started:
        yield Pbx(started.daemon, settings.database.url)


def answered_call_from(customer_digits: str, manager: str) -> list[dict[str, str]]:
    """The customer calls the same number again and `manager` picks up."""
    call = make_call(
        "answered",
        start=1.0,
        did="74951110003",
        caller=customer_digits,
        caller_name="",
        source="offline-flyer",
        manager=manager,
        ids=IdAllocator(seed=7, first_seq=500),
    )
    return call.messages


async def test_missed_call_opens_a_task_reminds_by_email_and_closes_when_answered_later(
    tmp_path: Path, asterisk: FakeAsterisk, mailbox: Mailbox, migrated_url: str
) -> None:
    """A missed call opens a task and emails the manager a reminder naming the customer and source;
    when the customer calls again and is answered the task closes and no more reminders are due."""
    settings = callback_settings(
        migrated_url,
        asterisk.port,
        tmp_path,
        notify=["email"],
        smtp={"host": "127.0.0.1", "port": mailbox.port, "sender": "tracker@example.ru"},
    )
    async with running(settings) as pbx:
        await asterisk.play(trace_events(TRACES / "03_missed_no_answer.jsonl"))
        [opened] = await pbx.until(lambda found: len(found) == 1)
        [message] = await mailbox.wait_for(1)
        assert (opened.customer, opened.assignee, opened.source) == (
            CUSTOMER,
            "101",
            "offline-flyer",
        )
        assert message["To"] == "m101@example.ru"
        assert message["X-PBX-Tracker-Task"] == str(opened.id)
        assert "(916) 123-45-03" in message["Subject"]
        assert "offline-flyer" in message.get_body(("plain",)).get_content()
        assert [job for job, _ in pbx.daemon.callbacks.scheduler.pending()]  # next reminder

        await asterisk.play(answered_call_from("79161234503", "102"))
        [closed] = await pbx.until(lambda found: not found[0].is_open)
        assert (closed.resolution, closed.resolved_by) == ("answered_inbound", "102")
        assert pbx.daemon.callbacks.scheduler.pending() == []  # no more reminders
    assert len(mailbox.envelopes) == 1


async def test_ring_me_calls_the_manager_then_the_customer_and_that_closes_the_task(
    tmp_path: Path, asterisk: FakeAsterisk, migrated_url: str
) -> None:
    """With "ring me" the daemon originates a call to the manager's phone that then dials the
    customer, and that reached call closes the task as called back."""
    settings = callback_settings(migrated_url, asterisk.port, tmp_path, notify=["ring_me"])
    async with running(settings) as pbx:
        await asterisk.play(trace_events(TRACES / "03_missed_no_answer.jsonl"))
        await asterisk.wait_for_action("Originate", timeout=WAIT)
        [originate] = asterisk.actions_named("Originate")
        assert (originate["Channel"], originate["Context"], originate["Exten"]) == (
            "IAX2/101/101",
            "callback",
            "79161234503",
        )
        [closed] = await pbx.until(lambda found: found and not found[0].is_open)
    assert (closed.resolution, closed.resolved_by, closed.ringme_attempts) == (
        "called_back",
        "101",
        1,
    )
    assert closed.first_attempt_at is not None


async def test_a_failing_webhook_is_recorded_and_the_task_stays_open(
    tmp_path: Path, asterisk: FakeAsterisk, migrated_url: str
) -> None:
    """A reminder webhook that cannot be reached leaves the task open with a "notify failed" event
    saying connection refused."""
    settings = callback_settings(
        migrated_url,
        asterisk.port,
        tmp_path,
        notify=["webhook"],
        webhook={"url": "http://127.0.0.1:9/hook", "attempts": 2, "backoff": 0.01, "timeout": 1},
    )
    async with running(settings) as pbx:
        await asterisk.play(trace_events(TRACES / "04_missed_caller_abandon.jsonl"))
        [task] = await pbx.until(lambda found: len(found) == 1 and found[0].last_reminder_at)
        async with connected(settings.database.url) as conn:
            events = await tasks.task_events(conn, task.id)
    assert task.is_open
    failed = [e for e in events if e.kind == "notify_failed"]
    assert failed and failed[0].detail["channel"] == "webhook"
    assert "connection refused" in failed[0].detail["reason"]


async def test_a_call_missed_while_no_daemon_ran_gets_its_task_at_start(
    tmp_path: Path, asterisk: FakeAsterisk, migrated_url: str
) -> None:
    """The writer stored the call during a shutdown (or `replay` did): the next start opens
    its task, once, however often the daemon starts."""
    missed = missed_call("1795000000.9", datetime.now(UTC) - timedelta(hours=2), CUSTOMER)
    missed = missed.replace(did="+74951110003", source="offline-flyer", node="pbx")
    await saved(migrated_url, missed)
    settings = callback_settings(migrated_url, asterisk.port, tmp_path)
    for _ in range(2):
        async with running(settings) as pbx:
            [task] = await pbx.until(lambda found: len(found) == 1)
    assert (task.customer, task.tries, task.did) == (CUSTOMER, 1, "+74951110003")


async def test_a_missed_call_from_a_blocked_number_is_kept_as_spam_and_opens_no_task(
    tmp_path: Path, asterisk: FakeAsterisk, migrated_url: str
) -> None:
    """Trace 03's caller is on spam.block (written as a national number); trace 04's is not."""
    settings = callback_settings(migrated_url, asterisk.port, tmp_path)
    blocking = SpamSettings.model_validate({"block": ["8 916 123-45-03"]})
    settings = settings.model_copy(update={"spam": blocking})
    async with running(settings) as pbx:
        await asterisk.play(trace_events(TRACES / "03_missed_no_answer.jsonl"))
        await asterisk.play(trace_events(TRACES / "04_missed_caller_abandon.jsonl"))
        [task] = await pbx.until(lambda found: len(found) >= 1)
    assert (task.customer, task.tries) == ("+79161234504", 1)  # only the customer's call
    calls = {record.caller: record for record in await stored_calls(migrated_url)}
    assert calls[CUSTOMER].spam == "blocked"
    assert (calls[CUSTOMER].status, calls[CUSTOMER].source) == ("missed", "offline-flyer")
    assert calls["+79161234504"].spam is None


async def test_a_task_opened_by_undoing_spam_elsewhere_gets_a_free_manager(
    tmp_path: Path, asterisk: FakeAsterisk, migrated_url: str
) -> None:
    """The blocked caller's call rang no phone.  A manager undoes the mark on the command
    line (another process): the task it opens has nobody to call back, until the
    daemon's next sweep gives it to the group's free manager idle longest."""
    now = datetime.now(UTC)
    blocked = missed_call("1795000000.7", now - timedelta(minutes=10), CUSTOMER)
    blocked = blocked.replace(
        did="+74951110003", source="offline-flyer", node="pbx", spam=SpamReason.BLOCKED
    )
    engine = make_async_engine(migrated_url)
    async with engine.begin() as conn:
        await save_call(conn, blocked)
    settings = callback_settings(migrated_url, asterisk.port, tmp_path)
    try:
        async with running(settings) as pbx:
            async with engine.begin() as conn:
                [call_id] = (await conn.execute(select(CallRow.id))).scalars().all()
                undone = await marking.undo_spam(
                    conn, call_id, by="102", now=now, callbacks=settings.callbacks
                )
            assert undone.task is not None and undone.task.task.assignee is None
            service = pbx.daemon.callbacks
            assert service is not None
            await service.sweep()
            [task] = await pbx.tasks("open")
    finally:
        await engine.dispose()
    assert (task.id, task.customer, task.assignee) == (undone.task.task_id, CUSTOMER, "101")


async def test_a_telegram_reminder_s_done_button_closes_the_task(
    tmp_path: Path, asterisk: FakeAsterisk, migrated_url: str
) -> None:
    """A missed call sends Anna a Telegram message naming the customer and the source with
    Call now / Done / Snooze buttons; she presses Done and the task is closed in her name,
    the message losing its buttons."""
    token, chat = "123456:bot-token-for-reminders", 5550101
    token_file = tmp_path / "telegram-token"
    token_file.write_text(token, encoding="utf-8")
    async with telegram_server(token, [chat]) as bot:
        telegram = {"token_file": str(token_file), "api_url": bot.url, "poll_seconds": 1}
        settings = callback_settings(
            migrated_url,
            asterisk.port,
            tmp_path,
            telegram_chats={"101": chat},
            notify=["telegram"],
            telegram=telegram,
        )
        async with running(settings) as pbx:
            await asterisk.play(trace_events(TRACES / "03_missed_no_answer.jsonl"))
            await until(lambda: bot.messages.get(chat), bot.changed, WAIT)
            reminder = bot.last(chat)
            assert "(916) 123-45-03" in reminder.text and "offline-flyer" in reminder.text
            assert reminder.buttons == ["Call now", "Done", "Snooze 15 min"]
            bot.press(chat, reminder.message_id, "Done")
            # the message is edited once the task is closed
            await until(lambda: not bot.last(chat).buttons, bot.changed, WAIT)
            [closed] = await pbx.tasks()
    assert (closed.resolution, closed.resolved_by) == ("closed_by_manager", "Anna")
