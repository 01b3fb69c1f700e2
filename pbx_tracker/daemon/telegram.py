"""The Telegram bot of the reminders, as the daemon runs it: one Bot API client for the
outbox's platform (sending and editing reminders) and the long polling of button
presses, and a watch that edits the messages of tasks closed elsewhere (on the web
page, by the CLI, by the customer being reached), after each stored call and every
minute.

Only the daemon that sends the reminders (the callbacks' leader) polls: Telegram
lets one ``getUpdates`` run per bot (a second one gets 409 Conflict).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import tzinfo

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.config import Settings
from pbx_tracker.telegram.api import TelegramApi
from pbx_tracker.telegram.buttons import Buttons
from pbx_tracker.telegram.closing import closed_elsewhere
from pbx_tracker.telegram.platform import TelegramPlatform
from pbx_tracker.telegram.updates import TelegramUpdates
from pbx_tracker.waking import woken

__all__ = ["Telegram"]

log = structlog.get_logger(__name__)

CLOSED_WATCH_SECONDS = 60.0


class Telegram:
    """The bot's parts; ``leader`` is set while this daemon sends the reminders."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        zone: tzinfo | None,
        written: Callable[[], None],
        buttons: Buttons,
    ) -> None:
        assert settings.callbacks.telegram is not None
        self.api = TelegramApi(settings.callbacks.telegram)
        self.platform = TelegramPlatform(self.api, region=settings.phone_region, zone=zone)
        self.updates = TelegramUpdates(self.api, buttons, settings.directory, written=written)
        self.leader: asyncio.Event | None = None  # None: no leadership to wait for
        self._engine = engine
        self._region = settings.phone_region
        self._zone = zone
        self._written = written
        self._changed = asyncio.Event()

    def tasks_changed(self) -> None:
        self._changed.set()

    async def poll(self) -> None:
        """Long polling for button presses, while this daemon leads the callbacks."""
        if self.leader is not None:
            await self.leader.wait()
        await self.updates.run()

    async def watch_closed(self) -> None:
        """Edit the messages of tasks closed elsewhere: after each change, and every minute."""
        while True:
            self._changed.clear()
            try:
                if await closed_elsewhere(self._engine, region=self._region, zone=self._zone):
                    self._written()
            except Exception as error:  # the database is down: the next look tries again
                log.warning(
                    "telegram.closed_watch_failed", error=str(error) or type(error).__name__
                )
            await woken(self._changed, CLOSED_WATCH_SECONDS)
