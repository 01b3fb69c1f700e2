"""Telegram as a reminder channel: what `ReminderSender` calls for ``telegram``.

Sending a reminder only writes it to the outbox (`enqueue_reminder`); the
``telegram`` target's delivery carries it to the chat, retrying while Telegram
is away, so a reminder is never lost to a slow or absent Telegram.  A manager
without a ``telegram_chat`` is not reached this way (False).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks.reminders import Reminder
from pbx_tracker.callbacks.tasks import CallbackTask
from pbx_tracker.staff import Manager
from pbx_tracker.telegram.platform import enqueue_reminder

__all__ = ["TelegramSend", "telegram_sender"]

TelegramSend = Callable[[CallbackTask, Reminder, Manager | None], Awaitable[bool]]


def telegram_sender(
    engine: AsyncEngine,
    now: Callable[[], datetime],
    *,
    written: Callable[[], None] = lambda: None,
) -> TelegramSend:
    """The channel: writes the reminder for the manager's chat, then calls ``written``
    (the daemon wakes the outbox's delivery)."""

    async def send(task: CallbackTask, reminder: Reminder, manager: Manager | None) -> bool:
        if manager is None or manager.telegram_chat is None:
            return False
        async with engine.begin() as conn:
            await enqueue_reminder(conn, task, reminder, manager, now())
        written()
        return True

    return send
