"""The Telegram Bot API as the bot uses it: ``POST {api_url}/bot<token>/<method>`` with JSON.

Five methods: sendMessage, editMessageText, answerCallbackQuery, getUpdates
(long polling: the request waits up to ``poll_seconds`` for an update), and getMe
(the bot's username: the token works).  Every
answer is checked before it is believed; anything but ``{"ok": true,
"result": ...}`` of the expected shape is a `TelegramError` (a `PlatformError`):

- 429 (flood control): ``retry_after`` from ``parameters.retry_after``;
- 401 / 404 (a token Telegram does not know), 409 (another bot polls with this
  token), 5xx, a network failure, a timeout or a garbled answer: ``down``;
- 400 "message is not modified" on an edit: no error at all (the edit was made);
- any other 400 / 403 ("chat not found", "bot was blocked by the user", a
  message gone): ``permanent`` (trying again cannot help).

The token is in the URL's path, so neither a URL nor aiohttp's exception text
(which holds it) ever reaches a log or a reason; reasons say the method, the
code and Telegram's description, with the token struck out should Telegram echo
it.  Errors are raised ``from None`` so no traceback carries the URL either.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import aiohttp

from pbx_tracker.callbacks.settings import TelegramSettings
from pbx_tracker.crm.platform import PlatformError

__all__ = ["Button", "Keyboard", "TelegramApi", "TelegramError"]

Button = tuple[str, str]  # the label, and the callback_data (at most 64 bytes)
Keyboard = Sequence[Sequence[Button]]  # rows of buttons under a message

NOT_MODIFIED = "message is not modified"
_MAX_REASON = 200


class TelegramError(PlatformError):
    """Telegram refused a call (or could not be asked); ``code`` is its error_code (0: no
    error code), ``description`` its words, both free of the token; ``status`` as
    `PlatformError` says (the HTTP status, None when nothing answered)."""

    def __init__(
        self,
        method: str,
        code: int,
        description: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        down: bool = True,
        status: int | None = None,
    ) -> None:
        shown = f"{code} {description}" if code else description
        super().__init__(
            f"telegram {method}: {shown}",
            retry_after=retry_after,
            permanent=permanent,
            down=down,
            status=status if status is not None or not code else code,
        )
        self.method = method
        self.code = code
        self.description = description


class TelegramApi:
    """Calls the Bot API with the configured token; one HTTP session, closed by `close`.

    A ``session`` given is used as is and left open.
    """

    def __init__(
        self, settings: TelegramSettings, session: aiohttp.ClientSession | None = None
    ) -> None:
        self._settings = settings
        self._session = session
        self._owns_session = session is None

    async def send_message(self, chat_id: int, text: str, keyboard: Keyboard = ()) -> int:
        """Send ``text`` (HTML, already escaped) to the chat; the new message's id."""
        params: dict[str, Any] = {"chat_id": chat_id, "text": text, "parse_mode": "HTML"}
        if keyboard:
            params["reply_markup"] = reply_markup(keyboard)
        message = await self._call("sendMessage", params)
        message_id = message.get("message_id") if isinstance(message, dict) else None
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise TelegramError("sendMessage", 0, "answer without a message_id")
        return message_id

    async def edit_message_text(
        self, chat_id: int, message_id: int, text: str, keyboard: Keyboard = ()
    ) -> None:
        """Replace the message's text and buttons (no ``keyboard``: the buttons go)."""
        params: dict[str, Any] = {
            "chat_id": chat_id,
            "message_id": message_id,
            "text": text,
            "parse_mode": "HTML",
        }
        if keyboard:
            params["reply_markup"] = reply_markup(keyboard)
        try:
            await self._call("editMessageText", params)
        except TelegramError as error:
            if error.code == 400 and NOT_MODIFIED in error.description.lower():
                return  # it already reads so: the edit is done
            raise

    async def answer_callback_query(self, query_id: str, text: str) -> None:
        """Answer a button press; ``text`` shows on the manager's screen for a moment."""
        await self._call("answerCallbackQuery", {"callback_query_id": query_id, "text": text})

    async def get_me(self) -> str:
        """The bot's username (``getMe``): what managers look the bot up by."""
        bot = await self._call("getMe", {})
        username = bot.get("username") if isinstance(bot, dict) else None
        if not isinstance(username, str) or not username or bot.get("is_bot") is not True:
            raise TelegramError("getMe", 0, "answered no bot with a username", status=200)
        return username

    async def get_updates(self, offset: int | None) -> list[Any]:
        """Updates after ``offset`` (confirming those before it), waiting up to
        ``poll_seconds`` for one; the items are as Telegram sent them, unchecked."""
        params: dict[str, Any] = {
            "timeout": self._settings.poll_seconds,
            "allowed_updates": ["message", "callback_query"],
        }
        if offset is not None:
            params["offset"] = offset
        wait = self._settings.poll_seconds + self._settings.timeout
        result = await self._call("getUpdates", params, seconds=wait)
        if not isinstance(result, list):
            raise TelegramError("getUpdates", 0, "answer is not a list of updates")
        return result

    async def close(self) -> None:
        """Close the session this client opened."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _call(
        self, method: str, params: dict[str, Any], *, seconds: float | None = None
    ) -> Any:
        """One call: Telegram's ``result``, or a TelegramError that holds no secret."""
        token = self._settings.token_file.get_secret_value()
        url = f"{self._settings.api_url}/bot{token}/{method}"
        body = json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode()
        limit = aiohttp.ClientTimeout(total=seconds or self._settings.timeout)
        try:
            async with self._client().post(
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=limit,
                allow_redirects=False,
            ) as response:
                status, raw = response.status, await response.read()
        except TimeoutError:
            raise TelegramError(method, 0, f"no answer within {limit.total:g} s") from None
        except aiohttp.ClientError as error:
            raise TelegramError(method, 0, _network_reason(error)) from None
        return _result(method, status, raw, token)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def reply_markup(keyboard: Keyboard) -> dict[str, Any]:
    """An InlineKeyboardMarkup of ``keyboard``'s rows."""
    return {
        "inline_keyboard": [
            [{"text": label, "callback_data": data} for label, data in row] for row in keyboard
        ]
    }


def _result(method: str, status: int, raw: bytes, token: str) -> Any:
    """The ``result`` of a well-formed success, else the matching TelegramError."""
    try:
        answer = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise TelegramError(method, 0, f"HTTP {status} with no Bot API answer", status=status)
    if answer["ok"] is True and "result" in answer:
        return answer["result"]
    code = answer.get("error_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else status
    description = answer.get("description")
    text = _short(description.replace(token, "***")) if isinstance(description, str) else ""
    raise _error(method, code, text or f"HTTP {status}", answer.get("parameters"))


def _error(method: str, code: int, description: str, parameters: Any) -> TelegramError:
    if code == 429:
        wait = parameters.get("retry_after") if isinstance(parameters, dict) else None
        seconds = wait if isinstance(wait, int | float) and not isinstance(wait, bool) else None
        sane = seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else 1.0
        return TelegramError(method, code, description, retry_after=float(sane), down=False)
    if code in (400, 403):
        return TelegramError(method, code, description, permanent=True, down=False)
    return TelegramError(method, code, description)  # 401, 404, 409, 5xx: the bot is down


def _network_reason(error: aiohttp.ClientError) -> str:
    """What went wrong, from the error's type only (its text holds the URL, and so the token)."""
    if isinstance(error, aiohttp.ClientConnectorError):
        os_error = error.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused"
        return _short(os_error.strerror or "") or "cannot connect"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    return type(error).__name__


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"
