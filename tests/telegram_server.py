"""A Telegram Bot API stand-in on loopback, following the Bot API's documentation.

Requests are ``GET`` or ``POST`` to ``/bot<token>/<method>`` with the parameters as
JSON, a form or the query string; every answer is ``{"ok": true, "result": ...}``
or ``{"ok": false, "error_code": N, "description": "..."}`` (plus ``parameters``
with ``retry_after`` on 429), with the HTTP status equal to the error code.

- a token other than the bot's: 401 "Unauthorized"; an unknown method: 404 "Not Found";
- getMe: the bot (``id``, ``is_bot`` true, ``first_name``, ``username``, ...);
- sendMessage (``chat_id``, ``text``, ``parse_mode``, ``reply_markup`` with an
  ``inline_keyboard``): a chat the bot was never started in is 400 "Bad Request:
  chat not found", a chat that blocked the bot 403 "Forbidden: bot was blocked by
  the user"; HTML is checked (tags Telegram knows, entities decoded) and the plain
  text kept, as Telegram gives it back; ``callback_data`` must be 1 to 64 bytes;
- editMessageText: a message the bot did not send there is 400 "Bad Request:
  message to edit not found"; the same text and buttons again is 400 "Bad Request:
  message is not modified: ..."; without ``reply_markup`` the buttons go;
- answerCallbackQuery: each press's ``callback_query_id`` once, else 400 "Bad
  Request: query is too old and response timeout expired or query ID is invalid";
- getUpdates (``offset``, ``limit``, ``timeout``, ``allowed_updates``): an offset
  confirms every update before it; waits up to ``timeout`` seconds and answers as
  soon as an update is there;
- flood control: at most one message (sent or edited) per second in a chat and 30
  per second in all, else 429 "Too Many Requests: retry after N" with
  ``parameters.retry_after``, timed by ``clock`` (tests move it on).

Tests press buttons (`press`), write to the bot (`say`) or queue any update
(`queue`); `messages` holds the bot's messages per chat as they read now.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web
from servers import serving_app

BOT_ID = 7000000001
BOT_USERNAME = "cb_bot"
PER_CHAT_SECONDS = 1.0
PER_SECOND = 30
MAX_TEXT = 4096
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler"}
_TAGS |= {"a", "code", "pre", "blockquote", "tg-emoji"}

Keyboard = list[list[tuple[str, str]]]  # rows of (label, callback_data)


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


@dataclass
class Message:
    """A message of the bot as the chat shows it now."""

    message_id: int
    chat: int
    text: str
    keyboard: Keyboard
    date: int
    edits: int = 0

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "message_id": self.message_id,
            "from": {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "Callbacks",
                "username": BOT_USERNAME,
            },
            "chat": {"id": self.chat, "type": "private", "first_name": f"User {self.chat}"},
            "date": self.date,
            "text": self.text,
        }
        if self.keyboard:
            shown["reply_markup"] = {
                "inline_keyboard": [
                    [{"text": label, "callback_data": data} for label, data in row]
                    for row in self.keyboard
                ]
            }
        return shown

    @property
    def buttons(self) -> list[str]:
        return [label for row in self.keyboard for label, _ in row]


@dataclass
class BotApi:
    """The stand-in's state; `url` is the ``api_url`` to configure."""

    token: str
    chats: set[int] = field(default_factory=set)  # chats that sent /start to the bot
    blocked: set[int] = field(default_factory=set)
    clock: Callable[[], float] = time.monotonic
    url: str = ""
    messages: dict[int, list[Message]] = field(default_factory=dict)
    answers: list[tuple[str, str]] = field(default_factory=list)  # (query id, text)
    calls: list[str] = field(default_factory=list)  # methods called, in order
    updates: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0  # getUpdates answered
    _pending_queries: set[str] = field(default_factory=set)
    _sent_at: dict[int, float] = field(default_factory=dict)
    _recent: list[float] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _update_ids: Iterator[int] = field(default_factory=lambda: itertools.count(500_000_001))
    _queued: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # any call answered

    # -- what tests do ----------------------------------------------------------------

    def press(self, chat: int, message_id: int, label: str, *, by: int | None = None) -> str:
        """The user of ``chat`` presses the button ``label`` under the bot's message; the
        callback query's id."""
        message = self.message(chat, message_id)
        data = next((d for row in message.keyboard for text, d in row if text == label), None)
        assert data is not None, f"no button {label!r} under message {message_id}"
        query_id = str(next(self._update_ids))
        self._pending_queries.add(query_id)
        self.queue(
            {
                "callback_query": {
                    "id": query_id,
                    "from": self._user(by or chat),
                    "message": message.as_json(),
                    "chat_instance": f"-{chat}",
                    "data": data,
                }
            }
        )
        return query_id

    def press_data(self, chat: int, data: str) -> str:
        """A callback query from ``chat`` with any ``data`` (an old message, another bot's
        button, a modified client); the query's id."""
        query_id = str(next(self._update_ids))
        self._pending_queries.add(query_id)
        chat_json = {"id": chat, "type": "private", "first_name": f"User {chat}"}
        message = {"message_id": 1, "date": 0, "chat": chat_json, "text": "?"}
        self.queue(
            {
                "callback_query": {
                    "id": query_id,
                    "from": self._user(chat),
                    "message": message,
                    "chat_instance": f"-{chat}",
                    "data": data,
                }
            }
        )
        return query_id

    def say(self, chat: int, text: str) -> None:
        """The user of ``chat`` writes ``text`` to the bot (``/start`` opens the chat)."""
        if text.startswith("/start"):
            self.chats.add(chat)
        message = {
            "message_id": next(self._ids),
            "from": self._user(chat),
            "chat": {"id": chat, "type": "private", "first_name": f"User {chat}"},
            "date": int(time.time()),
            "text": text,
        }
        if text.startswith("/"):
            word = len(text.split()[0])
            message["entities"] = [{"offset": 0, "length": word, "type": "bot_command"}]
        self.queue({"message": message})

    def queue(self, update: dict[str, Any]) -> int:
        """Add an update (its ``update_id`` given here); its id."""
        update_id = next(self._update_ids)
        self.updates.append({"update_id": update_id, **update})
        self._queued.set()
        return update_id

    def message(self, chat: int, message_id: int) -> Message:
        found = [m for m in self.messages.get(chat, []) if m.message_id == message_id]
        assert found, f"no message {message_id} in chat {chat}"
        return found[0]

    def last(self, chat: int) -> Message:
        return self.messages[chat][-1]

    # -- the API ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            method = request.match_info["method"]
            self.calls.append(method)
            params = await _params(request)
            handler = {
                "sendmessage": self._send_message,
                "editmessagetext": self._edit_message_text,
                "answercallbackquery": self._answer_callback_query,
                "getupdates": self._get_updates,
                "getme": self._get_me,
            }.get(method.lower())
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
        except ApiError as error:
            return _error(error)
        finally:
            self.changed.set()
        return web.json_response({"ok": True, "result": result})

    async def _get_me(self, params: dict[str, Any]) -> Any:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Callbacks",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _send_message(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        text = _html_text(params)
        keyboard = _keyboard(params.get("reply_markup"))
        self._flood(chat)
        message = Message(next(self._ids), chat, text, keyboard, int(time.time()))
        self.messages.setdefault(chat, []).append(message)
        return message.as_json()

    async def _edit_message_text(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        message_id = _int(params.get("message_id"), "message_id")
        found = [m for m in self.messages.get(chat, []) if m.message_id == message_id]
        if not found:
            raise ApiError(400, "Bad Request: message to edit not found")
        message, text = found[0], _html_text(params)
        keyboard = _keyboard(params.get("reply_markup"))
        if message.text == text and message.keyboard == keyboard:
            raise ApiError(400, NOT_MODIFIED)
        self._flood(chat)
        message.text, message.keyboard, message.edits = text, keyboard, message.edits + 1
        return message.as_json()

    async def _answer_callback_query(self, params: dict[str, Any]) -> Any:
        query_id = params.get("callback_query_id")
        text = params.get("text") or ""
        if not isinstance(query_id, str) or query_id not in self._pending_queries:
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        if not isinstance(text, str) or len(text) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self._pending_queries.discard(query_id)
        self.answers.append((query_id, text))
        return True

    async def _get_updates(self, params: dict[str, Any]) -> Any:
        offset = _int(params.get("offset", 0), "offset")
        limit = min(max(_int(params.get("limit", 100), "limit"), 1), 100)
        wait = _int(params.get("timeout", 0), "timeout")
        allowed = params.get("allowed_updates")
        if offset > 0:  # confirms every update before it
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        deadline = asyncio.get_running_loop().time() + max(wait, 0)
        while not self._due(allowed):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            self._queued.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queued.wait(), left)
        self.polls += 1
        return [u for u in self.updates if _kind_allowed(u, allowed)][:limit]

    def _due(self, allowed: Any) -> bool:
        return any(_kind_allowed(u, allowed) for u in self.updates)

    # -- rules -----------------------------------------------------------------------

    def _chat(self, params: dict[str, Any]) -> int:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        try:
            chat = int(raw)
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None
        if chat in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if chat not in self.chats:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _flood(self, chat: int) -> None:
        """About one message a second per chat, 30 a second in all (Telegram's FAQ)."""
        now = self.clock()
        self._recent = [t for t in self._recent if now - t < 1.0]
        since = now - self._sent_at.get(chat, -math.inf)
        wait = PER_CHAT_SECONDS - since if since < PER_CHAT_SECONDS else 0.0
        if len(self._recent) >= PER_SECOND:
            wait = max(wait, 1.0 - (now - self._recent[0]))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {seconds}", seconds)
        self._sent_at[chat] = now
        self._recent.append(now)

    @staticmethod
    def _user(user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}


@contextlib.asynccontextmanager
async def telegram_server(
    token: str, chats: Iterable[int] = (), *, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[BotApi]:
    """`BotApi` for the bot ``token``, with ``chats`` started, served on 127.0.0.1 for the
    block."""
    api = BotApi(token, set(chats), clock=clock)
    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", api.handle)
    async with serving_app(app, handler_cancellation=True) as port:
        api.url = f"http://127.0.0.1:{port}"
        yield api


async def _params(request: web.Request) -> dict[str, Any]:
    """The parameters however they came: JSON, a form, or the query string."""
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.read())
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise ApiError(400, "Bad Request: can't parse JSON") from None
            if not isinstance(body, dict):
                raise ApiError(400, "Bad Request: parameters must be an object")
            params.update(body)
        else:
            params.update(dict(await request.post()))
    for name in ("reply_markup", "allowed_updates"):
        if isinstance(params.get(name), str):
            try:
                params[name] = json.loads(params[name])
            except json.JSONDecodeError:
                raise ApiError(400, f"Bad Request: can't parse {name} JSON object") from None
    return params


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ApiError(400, f"Bad Request: wrong {name}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: wrong {name}") from None


def _html_text(params: dict[str, Any]) -> str:
    """The plain text a user sees, HTML checked as Telegram does for parse_mode HTML."""
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    if str(params.get("parse_mode", "")).lower() == "html":
        reader = _TelegramHtml()
        reader.feed(text)
        reader.close()
        if reader.problem:
            raise ApiError(400, f"Bad Request: can't parse entities: {reader.problem}")
        text = "".join(reader.plain)
    if len(text) > MAX_TEXT:
        raise ApiError(400, "Bad Request: message is too long")
    return text


class _TelegramHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.plain: list[str] = []
        self.problem = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _TAGS and not self.problem:
            self.problem = f'Unsupported start tag "{tag}"'

    def handle_data(self, data: str) -> None:
        self.plain.append(data)


def _keyboard(markup: Any) -> Keyboard:
    if markup is None:
        return []
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ApiError(
            400, "Bad Request: can't parse inline keyboard button: field is not an array"
        )
    keyboard: Keyboard = []
    for row in rows:
        buttons = []
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise ApiError(
                    400, "Bad Request: can't parse inline keyboard button: Text must be String"
                )
            data = button.get("callback_data")
            if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            buttons.append((button["text"], data))
        keyboard.append(buttons)
    return [row for row in keyboard if row]


def _kind_allowed(update: dict[str, Any], allowed: Any) -> bool:
    if not isinstance(allowed, list) or not allowed:
        return True
    return any(kind in update for kind in allowed)


def _error(error: ApiError) -> web.Response:
    body: dict[str, Any] = {
        "ok": False,
        "error_code": error.code,
        "description": error.description,
    }
    if error.retry_after is not None:
        body["parameters"] = {"retry_after": error.retry_after}
    return web.json_response(body, status=error.code)
