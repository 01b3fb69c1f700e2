"""`TelegramPlatform`: the outbox's target ``telegram``, which carries callback reminders to
managers' chats and takes the buttons off them once the task is closed.

Its events have the call key ``task:<id>`` (so one task's events go in order):

- ``reminder``: `ReminderMessage.payload` plus ``chat`` (and ``manager``, the name,
  for the log): sendMessage with the buttons, and the message's id is kept at
  once (``Links.put``) under the chat;
- ``task.closed``: ``{"text": ...}``: every message of the task is edited to that
  text, without buttons.

A later reminder about the same task is a new message, since only a new message
makes the manager's phone sound: an edit is silent.  The earlier one then reads
"Reminded again below." without buttons, so a chat never holds two sets of
buttons for one task.  What the links keep, per task::

    {"chats": {"<chat id>": {"message": 12, "key": "<event key>", "previous": [9]}},
     "closed": true}

``key`` says which event sent ``message``: an event delivered again after a
crash finds its message and does not send it twice.  A chat Telegram refuses
("chat not found", "bot was blocked by the user") gives the reminder up
(``permanent``) and is logged with the manager; on a close, a message that can
no longer be edited is logged and skipped.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.callbacks.reminders import Reminder, delivery_id
from pbx_tracker.callbacks.tasks import CallbackTask
from pbx_tracker.crm.outbox import enqueue_event
from pbx_tracker.crm.platform import Links, OutboxEvent, PlatformError
from pbx_tracker.staff import Manager
from pbx_tracker.telegram.api import TelegramApi, TelegramError
from pbx_tracker.telegram.messages import ReminderMessage, reminded_again_text

__all__ = [
    "CLOSED",
    "REMINDER",
    "TARGET",
    "TelegramPlatform",
    "enqueue_closed",
    "enqueue_reminder",
    "task_call_key",
    "task_of_call_key",
]

log = structlog.get_logger(__name__)

TARGET = "telegram"
REMINDER = "reminder"
CLOSED = "task.closed"


def task_call_key(task_id: int) -> str:
    return f"task:{task_id}"


def task_of_call_key(call_key: str) -> int | None:
    """The task id of ``task:<id>``; None for any other key."""
    prefix, _, number = call_key.partition(":")
    if prefix != "task" or not (number.isascii() and number.isdigit()) or len(number) > 18:
        return None
    return int(number)


async def enqueue_reminder(
    conn: AsyncConnection, task: CallbackTask, reminder: Reminder, manager: Manager, now: datetime
) -> bool:
    """Write the reminder for ``manager``'s chat to the outbox (in the caller's transaction);
    False when they have no chat, or this very reminder is there already."""
    if manager.telegram_chat is None:
        return False
    payload = ReminderMessage.of(reminder).payload()
    payload |= {"chat": manager.telegram_chat, "manager": manager.name}
    return await enqueue_event(
        conn,
        target=TARGET,
        call_key=task_call_key(task.id),
        kind=REMINDER,
        key=f"{task_call_key(task.id)}:{delivery_id(reminder)}:{manager.telegram_chat}",
        payload=payload,
        now=now,
    )


async def enqueue_closed(conn: AsyncConnection, task_id: int, text: str, now: datetime) -> bool:
    """Write the task's ``task.closed`` (``text``: what its messages become); once per task."""
    return await enqueue_event(
        conn,
        target=TARGET,
        call_key=task_call_key(task_id),
        kind=CLOSED,
        key=f"{task_call_key(task_id)}:closed",
        payload={"text": text},
        now=now,
    )


class TelegramPlatform:
    """Delivers the ``telegram`` target's events through the Bot API (see the module doc)."""

    name = TARGET

    def __init__(self, api: TelegramApi, *, region: str, zone: tzinfo | None) -> None:
        self._api = api
        self._region = region
        self._zone = zone

    async def close(self) -> None:
        await self._api.close()

    async def deliver(self, event: OutboxEvent, links: Links) -> None:
        if task_of_call_key(event.call_key) is None:
            raise PlatformError(f"telegram: {event.call_key!r} is no task", permanent=True)
        kept = _Kept.read(await links.get(event.call_key))
        if event.kind == REMINDER:
            await self._remind(event, links, kept)
        elif event.kind == CLOSED:
            await self._close(event, links, kept)
        else:
            raise PlatformError(f"telegram: no such event {event.kind!r}", permanent=True)

    async def _remind(self, event: OutboxEvent, links: Links, kept: _Kept) -> None:
        message = ReminderMessage.from_payload(event.payload)
        chat = event.payload.get("chat")
        if message is None or not isinstance(chat, int) or isinstance(chat, bool):
            raise PlatformError("telegram: reminder of another shape", permanent=True)
        if kept.closed:
            return  # the task was closed meanwhile: nothing to remind of
        entry = kept.chats.get(str(chat), {})
        if entry.get("key") != event.key:
            entry = await self._send(event, chat, message, entry)
            kept.chats[str(chat)] = entry
            await links.put(event.call_key, kept.data())
        if entry["previous"]:
            text = reminded_again_text(message, self._region)
            await self._edit_all(chat, entry["previous"], text, event)
            entry["previous"] = []
            await links.put(event.call_key, kept.data())

    async def _send(
        self, event: OutboxEvent, chat: int, message: ReminderMessage, entry: dict[str, Any]
    ) -> dict[str, Any]:
        text = message.text(self._region, self._zone)
        try:
            sent = await self._api.send_message(chat, text, message.keyboard())
        except TelegramError as error:
            if error.permanent:
                log.warning(
                    "telegram.chat_refused",
                    manager=event.payload.get("manager"),
                    chat=chat,
                    task_id=message.task_id,
                    reason=error.reason,
                )
            raise
        log.info("telegram.reminder_sent", task_id=message.task_id, chat=chat, message=sent)
        earlier = [entry["message"]] if "message" in entry else []
        return {"message": sent, "key": event.key, "previous": earlier + entry.get("previous", [])}

    async def _close(self, event: OutboxEvent, links: Links, kept: _Kept) -> None:
        text = event.payload.get("text")
        if not isinstance(text, str) or not text:
            raise PlatformError("telegram: task.closed without a text", permanent=True)
        for chat, entry in kept.chats.items():
            messages = [entry["message"], *entry["previous"]] if "message" in entry else []
            await self._edit_all(int(chat), messages, text, event)
        if kept.chats and not kept.closed:
            kept.closed = True
            await links.put(event.call_key, kept.data())

    async def _edit_all(
        self, chat: int, messages: list[int], text: str, event: OutboxEvent
    ) -> None:
        """Each message to ``text`` without buttons; one that cannot be edited is skipped."""
        for message_id in messages:
            try:
                await self._api.edit_message_text(chat, message_id, text)
            except TelegramError as error:
                if not error.permanent:
                    raise
                log.warning(
                    "telegram.edit_refused",
                    call_key=event.call_key,
                    chat=chat,
                    message=message_id,
                    reason=error.reason,
                )


class _Kept:
    """The links of one task, read with their shape checked (anything odd is dropped)."""

    def __init__(self, chats: dict[str, dict[str, Any]], closed: bool) -> None:
        self.chats = chats
        self.closed = closed

    @classmethod
    def read(cls, data: dict[str, Any] | None) -> _Kept:
        raw = data.get("chats") if isinstance(data, dict) else None
        chats: dict[str, dict[str, Any]] = {}
        for chat, entry in raw.items() if isinstance(raw, dict) else []:
            if not (isinstance(chat, str) and chat.lstrip("-").isdigit()):
                continue
            if isinstance(entry, dict) and _is_id(entry.get("message")):
                previous = entry.get("previous")
                ids = [m for m in previous if _is_id(m)] if isinstance(previous, list) else []
                key = entry.get("key")
                chats[chat] = {"message": entry["message"], "key": key, "previous": ids}
        closed = isinstance(data, dict) and data.get("closed") is True
        return cls(chats, closed)

    def data(self) -> dict[str, Any]:
        return {"chats": self.chats, "closed": self.closed}


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
