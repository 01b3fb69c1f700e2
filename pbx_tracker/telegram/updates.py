"""`TelegramUpdates`: the bot's long polling loop, which takes managers' button presses and
``/start`` messages.

Each round asks getUpdates for what came after the last update seen (the offset
confirms those before it).  Every update is read with its shape checked; one
that is not of ours (missing fields, foreign data, a button from elsewhere) is
logged and skipped, and the offset moves past every update whatever came of it,
so one bad update never blocks the bot.  Each press is answered
(answerCallbackQuery, `pbx_tracker.telegram.buttons` says with what); after
"Call now" the message says the phone rings.  ``/start`` is answered with the
chat's id, for the administrator to put in the manager's ``telegram_chat``.

Telegram down or slow to answer is logged and asked again after a pause (its
``retry_after``, else doubling from one second up to a minute).  Updates are
confirmed only by the next getUpdates, so after a restart the last ones may
come again: pressing Done twice says "already done".
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from typing import Any

import structlog

from pbx_tracker.crm.platform import PlatformError
from pbx_tracker.staff import Directory
from pbx_tracker.telegram.api import TelegramApi
from pbx_tracker.telegram.buttons import Buttons, Press, Pressed
from pbx_tracker.telegram.messages import read_button, ringing_text, task_keyboard

__all__ = ["TelegramUpdates"]

log = structlog.get_logger(__name__)

MAX_PAUSE = 60.0
_ANSWER_LIMIT = 200  # characters Telegram shows of a press's answer


class TelegramUpdates:
    """Polls for updates until cancelled; `handled` is set after each update (tests wait)."""

    def __init__(
        self,
        api: TelegramApi,
        buttons: Buttons,
        directory: Directory,
        *,
        written: Callable[[], None] = lambda: None,
    ) -> None:
        self._api = api
        self._buttons = buttons
        self._directory = directory
        self._written = written  # outbox events were written: wake the delivery
        self.offset: int | None = None
        self.handled = asyncio.Event()
        self._failures = 0

    async def run(self) -> None:
        while True:
            try:
                updates = await self._api.get_updates(self.offset)
            except PlatformError as error:
                await self._pause(error)
                continue
            self._failures = 0
            await self.take(updates)

    async def take(self, updates: list[Any]) -> None:
        """Handle each update in order, moving the offset past each."""
        for update in updates:
            update_id = update.get("update_id") if isinstance(update, dict) else None
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                log.warning("telegram.update_skipped", reason="no update_id")
                continue
            self.offset = max(self.offset or 0, update_id + 1)
            try:
                await self._handle(update)
            except Exception as error:  # one update must never stop the bot
                reason = error.reason if isinstance(error, PlatformError) else type(error).__name__
                log.warning("telegram.update_failed", update_id=update_id, reason=reason)
            self.handled.set()

    async def _pause(self, error: PlatformError) -> None:
        self._failures += 1
        wait = error.retry_after or min(2.0 ** (self._failures - 1), MAX_PAUSE)
        log.warning("telegram.updates_failed", reason=error.reason, retry_in=wait)
        await asyncio.sleep(wait)

    async def _handle(self, update: dict[str, Any]) -> None:
        if isinstance(update.get("callback_query"), dict):
            await self._press(update["callback_query"])
        elif isinstance(update.get("message"), dict):
            await self._message(update["message"])
        else:
            log.info("telegram.update_skipped", update_id=update["update_id"], reason="kind")

    async def _press(self, query: dict[str, Any]) -> None:
        query_id = query.get("id")
        message = query.get("message")
        chat = _chat_of(message)
        if not isinstance(query_id, str) or not query_id:
            log.warning("telegram.update_skipped", reason="callback_query without an id")
            return
        button = read_button(query.get("data"))
        if chat is None or button is None:
            log.warning("telegram.update_skipped", reason="not a button of ours", chat=chat)
            await self._answer(query_id, "This button is not one of ours.")
            return
        if _user_of(query) != chat:  # a group chat: only the manager's own chat acts
            log.warning("telegram.press_refused", chat=chat, reason="not a private chat")
            await self._answer(query_id, "Buttons work in your private chat with the bot.")
            return
        action, task_id = button
        pressed = await self._buttons.press(Press(chat, action, task_id))
        await self._answer(query_id, pressed.answer)
        if pressed.done:
            self._written()
        if pressed.ringing is not None and isinstance(message, dict):
            await self._show_ringing(chat, message, task_id, pressed)

    async def _show_ringing(
        self, chat: int, message: dict[str, Any], task_id: int, pressed: Pressed
    ) -> None:
        message_id, shown = message.get("message_id"), message.get("text")
        if not isinstance(message_id, int) or not isinstance(shown, str):
            return
        text = ringing_text(shown, pressed.ringing or "")
        keyboard = task_keyboard(task_id, dialable=True)
        try:
            await self._api.edit_message_text(chat, message_id, text, keyboard)
        except PlatformError as error:
            log.info("telegram.edit_failed", chat=chat, message=message_id, reason=error.reason)

    async def _answer(self, query_id: str, text: str) -> None:
        try:
            await self._api.answer_callback_query(query_id, text[:_ANSWER_LIMIT])
        except PlatformError as error:
            log.info("telegram.answer_failed", reason=error.reason)

    async def _message(self, message: dict[str, Any]) -> None:
        chat, text = _chat_of(message), message.get("text")
        if chat is None or not isinstance(text, str):
            log.info("telegram.update_skipped", reason="message without a chat or text")
            return
        if text.split("@")[0].split(" ")[0] != "/start":
            return  # the bot only talks about callbacks
        manager = self._directory.manager_for_account("telegram_chat", chat)
        if manager is None:
            reply = (
                f"This chat's id is {chat}. Give the administrator this line for your entry "
                f"under managers in the config:\ntelegram_chat: {chat}"
            )
        else:
            reply = f"This chat is {manager.name}'s: reminders about your callbacks come here."
        log.info("telegram.start", chat=chat, manager=manager.name if manager else None)
        await self._api.send_message(chat, html.escape(reply, quote=False))


def _user_of(query: dict[str, Any]) -> int | None:
    """Who pressed: the query's ``from.id`` (in a private chat, the chat's id)."""
    return _chat_of({"chat": query.get("from")})


def _chat_of(message: Any) -> int | None:
    chat = message.get("chat") if isinstance(message, dict) else None
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    return chat_id if isinstance(chat_id, int) and not isinstance(chat_id, bool) else None
