"""What ``check-config --live`` asks Telegram: does the token belong to a bot.

One ``getMe`` through `TelegramApi`, bounded by ``callbacks.telegram.timeout``:
the bot's username when the token works, else one `Problem` naming the key to
fix (``token_file`` when Telegram does not know the token, ``api_url`` when
nothing, or something else than the Bot API, answered).  The token is in the
request's path, never in a reason.  Managers without a ``telegram_chat`` are a
note: they get no reminders in Telegram until they start the bot.
"""

from __future__ import annotations

from collections.abc import Sequence

from pbx_tracker.callbacks.settings import TelegramSettings
from pbx_tracker.crm.checks import PlatformFindings, answered, note_managers
from pbx_tracker.staff import Manager
from pbx_tracker.telegram.api import TelegramApi, TelegramError

__all__ = ["check_bot"]


async def check_bot(settings: TelegramSettings, managers: Sequence[Manager]) -> PlatformFindings:
    """The token is a bot's (``getMe``); the managers the bot cannot reach, noted."""
    found = PlatformFindings()
    api = TelegramApi(settings)
    try:
        username = await api.get_me()
    except TelegramError as error:
        found.add(*_refusal(error, settings.api_url))
        return found
    finally:
        await api.close()
    effect = f"they get no reminders in Telegram; each sends /start to @{username} for the chat id"
    note_managers(found, "callbacks.telegram", managers, "telegram_chat", effect)
    found.passed.append(f"Telegram OK: bot @{username}")
    return found


def _refusal(error: TelegramError, api_url: str) -> tuple[str, str]:
    """(key, text) of a failed ``getMe``."""
    if not answered(error):
        return (
            "callbacks.telegram.api_url",
            f"cannot reach the Bot API at {api_url} ({error.reason}); is it reachable from "
            "this server (a proxy or firewall in the way)?",
        )
    if error.code in (401, 404):
        return (
            "callbacks.telegram.token_file",
            f"Telegram knows no bot with this token ({error.reason}); put the token "
            "@BotFather gave (/mybots, API Token) in the file",
        )
    return (
        "callbacks.telegram.api_url",
        f"the Bot API at {api_url} did not answer getMe ({error.reason}); is api_url "
        "Telegram's Bot API (https://api.telegram.org)?",
    )
