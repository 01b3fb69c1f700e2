"""Callback reminders in Telegram, against the Bot API stand-in over real HTTP, on real
SQLite and PostgreSQL databases.

A missed call opens a task for Anna (101); `ReminderSender` sends its reminder
through the ``telegram`` channel (the outbox), `OutboxDelivery` carries it with
`TelegramPlatform`, and `TelegramUpdates` polls for the managers' presses.  One
clock (`DateClock`) drives the service and the stand-in's flood control.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clocks import DateClock
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram_server import BotApi, telegram_server
from waiting import until

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.finished_calls import apply_call
from pbx_tracker.callbacks.policy import TaskStatus
from pbx_tracker.callbacks.sending import ReminderSender
from pbx_tracker.callbacks.settings import CallbackSettings, TelegramSettings
from pbx_tracker.callbacks.task_actions import assign_task, close_task
from pbx_tracker.calls.records import CallRecord, RingAttempt
from pbx_tracker.crm.delivery import OutboxDelivery
from pbx_tracker.crm.settings import CrmSettings
from pbx_tracker.staff import Directory, Manager
from pbx_tracker.store.calls import save_call
from pbx_tracker.telegram.api import TelegramApi, TelegramError
from pbx_tracker.telegram.buttons import Buttons
from pbx_tracker.telegram.closing import closed_elsewhere
from pbx_tracker.telegram.platform import TelegramPlatform
from pbx_tracker.telegram.sender import telegram_sender
from pbx_tracker.telegram.updates import TelegramUpdates
from stored import missed_call

TOKEN = "123456789:AAE-stand-in-bot-token-xyz"
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
CUSTOMER = "+79161234567"
ANNA, BORIS, VERA = 1001, 1002, 1003
STRANGER = 4242
MANAGERS = [
    Manager(name="Anna", extension="101", group="sales", telegram_chat=ANNA),
    Manager(name="Boris", extension="102", group="sales", telegram_chat=BORIS),
    Manager(name="Vera", extension="103", telegram_chat=VERA),
]
CONFIG = CallbackSettings(notify=["telegram"], supervisors={"sales": "103"})


def missed(linkedid: str = "1700000000.1") -> CallRecord:
    """A missed call on a tracked number (source google) where only Anna's phone rang."""
    attempt = RingAttempt("101", "PJSIP/101-00000001", T0, T0, "noanswer")
    return missed_call(linkedid, T0, CUSTOMER).replace(
        source="google",
        attempts=(attempt,),
        variables={"ROUTE_GROUP": "sales", "ROUTE_MANAGER": "101"},
    )


@dataclass
class Bot:
    """The pieces of the daemon that make the Telegram reminders, and the stand-in."""

    telegram: BotApi
    engine: AsyncEngine
    clock: DateClock
    api: TelegramApi
    sender: ReminderSender
    delivery: OutboxDelivery
    updates: TelegramUpdates

    async def task(self, task_id: int) -> tasks.CallbackTask:
        async with self.engine.connect() as conn:
            found = await tasks.get_task(conn, task_id)
        assert found is not None
        return found

    async def remind(self, task_id: int, number: int = 1) -> None:
        """The scheduler's reminder, carried to the chat at once."""
        assert await self.sender.send(await self.task(task_id), "reminder", number) == ["telegram"]
        await self.delivery.deliver_due()

    async def answered(self, query_id: str) -> str:
        """The answer the press got, once the loop gave it."""
        await until(lambda: query_id in dict(self.telegram.answers), self.telegram.changed)
        return dict(self.telegram.answers)[query_id]

    def later(self, seconds: float = 2.0) -> None:
        self.clock.advance(seconds)


@pytest.fixture(name="token_file")
def _token_file(tmp_path: Path) -> Path:
    path = tmp_path / "telegram-token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    return path


@pytest.fixture(name="bot")
async def _bot(engine: AsyncEngine, token_file: Path) -> AsyncIterator[Bot]:
    clock = DateClock(T0 + timedelta(minutes=1))
    async with telegram_server(TOKEN, [ANNA, BORIS, VERA], clock=clock.seconds) as telegram:
        settings = TelegramSettings(
            token_file=str(token_file), api_url=telegram.url, poll_seconds=1
        )
        api = TelegramApi(settings)
        directory = Directory(MANAGERS)
        platform = TelegramPlatform(api, region=directory.region, zone=UTC)
        delivery = OutboxDelivery(engine, platform, CrmSettings(), clock)
        channel = telegram_sender(engine, clock, written=delivery.wake)
        sender = ReminderSender(
            CONFIG, directory, engine, zone=UTC, now=clock, extra_channels={"telegram": channel}
        )
        buttons = Buttons(engine, directory, CONFIG, now=clock, zone=UTC)
        updates = TelegramUpdates(api, buttons, directory, written=delivery.wake)
        polling = asyncio.create_task(updates.run())
        try:
            yield Bot(telegram, engine, clock, api, sender, delivery, updates)
        finally:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
            await sender.close()
            await api.close()


async def opened(bot: Bot, record: CallRecord | None = None) -> int:
    """A missed call stored and applied, as the daemon does; the task's id."""
    async with bot.engine.begin() as conn:
        record = record or missed()
        await save_call(conn, record)
        change = await apply_call(conn, record, CONFIG, now=T0)
    assert change is not None and change.task.assignee == "101"
    return change.task.id


async def test_a_reminder_shows_the_number_source_wait_and_three_buttons(bot: Bot) -> None:
    """Anna's chat gets the customer's number as people write it, the source, how long they
    have waited, and Call now / Done / Snooze 15 min."""
    task_id = await opened(bot)
    await bot.remind(task_id)
    message = bot.telegram.last(ANNA)
    assert "8 (916) 123-45-67" in message.text
    assert "Source: google" in message.text
    assert "Waiting 1 min" in message.text
    assert "Reminder #1" in message.text
    assert message.buttons == ["Call now", "Done", "Snooze 15 min"]
    assert BORIS not in bot.telegram.messages


async def test_done_closes_the_task_by_that_manager_and_takes_the_buttons_off(bot: Bot) -> None:
    """Pressing Done closes the task in Anna's name; the message then says so, without buttons."""
    task_id = await opened(bot)
    await bot.remind(task_id)
    message = bot.telegram.last(ANNA)
    query = bot.telegram.press(ANNA, message.message_id, "Done")
    assert await bot.answered(query) == "Marked as done."
    task = await bot.task(task_id)
    assert task.status is TaskStatus.DONE and task.resolved_by == "Anna"
    bot.later()
    await bot.delivery.deliver_due()
    edited = bot.telegram.message(ANNA, message.message_id)
    assert edited.text.startswith("✅ Done by Anna at 09:31")
    assert edited.buttons == []


async def test_snooze_holds_the_reminders_back_15_minutes(bot: Bot) -> None:
    """Snooze 15 min moves the task's snoozed_until to 15 minutes from the press."""
    task_id = await opened(bot)
    await bot.remind(task_id)
    query = bot.telegram.press(ANNA, bot.telegram.last(ANNA).message_id, "Snooze 15 min")
    assert await bot.answered(query) == "No reminders before 09:46."
    task = await bot.task(task_id)
    assert task.is_open and task.snoozed_until == bot.clock.now + timedelta(minutes=15)


async def test_a_press_from_someone_elses_chat_changes_nothing(bot: Bot) -> None:
    """A task given to Boris after Anna's reminder, and a chat no manager has, are refused."""
    task_id = await opened(bot)
    await bot.remind(task_id)
    message = bot.telegram.last(ANNA)
    async with bot.engine.begin() as conn:
        await assign_task(conn, task_id, extension="102", by="admin", now=bot.clock.now)
    query = bot.telegram.press(ANNA, message.message_id, "Done")
    assert "belongs to another manager" in await bot.answered(query)
    stranger = bot.telegram.press_data(STRANGER, f"done:{task_id}")
    assert "not linked to a manager" in await bot.answered(stranger)
    task = await bot.task(task_id)
    assert task.is_open and task.resolved_by is None


async def test_a_press_by_someone_else_in_the_managers_chat_changes_nothing(bot: Bot) -> None:
    """Anna's chat id made a group: a press there by another member is refused, the task
    stays open."""
    task_id = await opened(bot)
    await bot.remind(task_id)
    message = bot.telegram.last(ANNA)
    query = bot.telegram.press(ANNA, message.message_id, "Done", by=STRANGER)
    assert "private chat" in await bot.answered(query)
    assert (await bot.task(task_id)).is_open


async def test_the_groups_supervisor_may_close_its_tasks(bot: Bot) -> None:
    """Vera supervises sales: her press on an escalation closes the task in her name."""
    task_id = await opened(bot)
    assert await bot.sender.send(await bot.task(task_id), "escalation", 1) == ["telegram"]
    await bot.delivery.deliver_due()
    message = bot.telegram.last(VERA)
    assert "within the SLA by 101" in message.text
    query = bot.telegram.press(VERA, message.message_id, "Done")
    assert await bot.answered(query) == "Marked as done."
    assert (await bot.task(task_id)).resolved_by == "Vera"


async def test_a_task_closed_elsewhere_loses_its_buttons(bot: Bot) -> None:
    """Closed on the callbacks page, the task's message says by whom, without buttons, once."""
    task_id = await opened(bot)
    await bot.remind(task_id)
    message = bot.telegram.last(ANNA)
    async with bot.engine.begin() as conn:
        await close_task(conn, task_id, by="Boris", now=bot.clock.now)
    assert await closed_elsewhere(bot.engine, zone=UTC, now=bot.clock.now) == 1
    assert await closed_elsewhere(bot.engine, zone=UTC, now=bot.clock.now) == 0
    bot.later()
    await bot.delivery.deliver_due()
    edited = bot.telegram.message(ANNA, message.message_id)
    assert edited.text.startswith("✅ Done by Boris at 09:31")
    assert "8 (916) 123-45-67" in edited.text
    assert edited.buttons == []
    assert await closed_elsewhere(bot.engine, zone=UTC, now=bot.clock.now) == 0


async def test_a_second_reminder_is_a_new_message_and_the_first_loses_its_buttons(
    bot: Bot,
) -> None:
    """The phone sounds for each reminder; only the newest message has buttons."""
    task_id = await opened(bot)
    await bot.remind(task_id, 1)
    first = bot.telegram.last(ANNA)
    bot.later(600)
    await bot.remind(task_id, 2)
    bot.later(2)
    await bot.delivery.deliver_due()  # the first's edit waited for the chat's flood limit
    second = bot.telegram.last(ANNA)
    assert second.message_id != first.message_id and "Reminder #2" in second.text
    assert bot.telegram.message(ANNA, first.message_id).buttons == []
    assert second.buttons == ["Call now", "Done", "Snooze 15 min"]


async def test_too_many_requests_becomes_retry_after(bot: Bot) -> None:
    """Telegram's 429 is a wait of its retry_after seconds, not a failure of the platform."""
    await bot.api.send_message(ANNA, "first")
    with pytest.raises(TelegramError) as raised:
        await bot.api.send_message(ANNA, "second")
    assert raised.value.retry_after == 1.0
    assert not raised.value.down and not raised.value.permanent
    bot.later()
    await bot.api.send_message(ANNA, "second")
    assert [m.text for m in bot.telegram.messages[ANNA]] == ["first", "second"]


async def test_start_answers_the_chat_id_for_the_administrator(bot: Bot) -> None:
    """A new manager sends /start and learns the line to give the administrator."""
    bot.telegram.say(5555, "/start")
    await until(lambda: 5555 in bot.telegram.messages, bot.telegram.changed)
    assert "telegram_chat: 5555" in bot.telegram.last(5555).text


async def test_bad_updates_do_not_stop_the_bot(bot: Bot) -> None:
    """Garbled and foreign updates are skipped and the next one is handled all the same."""
    bot.telegram.queue({"callback_query": {"id": "77"}})
    bot.telegram.queue({"callback_query": "not an object"})
    bot.telegram.queue({"message": {"chat": {"id": "ten"}, "text": "/start"}})
    foreign = bot.telegram.press_data(ANNA, "vote:up")
    bot.telegram.say(6666, "/start")
    await until(lambda: 6666 in bot.telegram.messages, bot.telegram.changed)
    assert "telegram_chat: 6666" in bot.telegram.last(6666).text
    assert "not one of ours" in await bot.answered(foreign)
    await until(lambda: not bot.telegram.updates, bot.telegram.changed)  # all confirmed


async def test_a_refused_token_is_down_and_no_reason_holds_it(
    token_file: Path, tmp_path: Path
) -> None:
    """A wrong token or an unreachable Telegram shows as down; the token is in no reason."""
    async with telegram_server("999:another-bot") as telegram:
        settings = TelegramSettings(token_file=str(token_file), api_url=telegram.url)
        api = TelegramApi(settings)
        try:
            with pytest.raises(TelegramError) as refused:
                await api.send_message(ANNA, "hello")
        finally:
            await api.close()
    assert refused.value.down and refused.value.code == 401
    gone = TelegramApi(TelegramSettings(token_file=str(token_file), api_url=telegram.url))
    try:
        with pytest.raises(TelegramError) as unreachable:
            await gone.send_message(ANNA, "hello")
    finally:
        await gone.close()
    assert unreachable.value.down
    for error in (refused.value, unreachable.value):
        assert "AAE" not in str(error) and "123456789" not in str(error)


async def test_a_chat_that_blocked_the_bot_gives_the_reminder_up(bot: Bot) -> None:
    """Boris blocked the bot: his reminder is given up at once, not retried forever."""
    record = missed("1700000000.2")
    task_id = await opened(bot, record)
    async with bot.engine.begin() as conn:
        await assign_task(conn, task_id, extension="102", by="admin", now=bot.clock.now)
    bot.telegram.blocked.add(BORIS)
    await bot.remind(task_id)
    assert bot.delivery.state.given_up == 1
    assert BORIS not in bot.telegram.messages
