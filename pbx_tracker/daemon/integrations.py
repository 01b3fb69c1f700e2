"""The outside platforms the daemon talks to, put together from the config: the CRM
webhook, Bitrix24, amoCRM, Telegram reminders; each an outbox target with its own
delivery loop, a part of /healthz and figures on /metrics.

Nothing of a call's handling waits for them: stored calls and live events go to
the outbox (`pbx_tracker.crm.outbox`), and each target's `OutboxDelivery` sends
them when its platform takes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks.notifiers import WebhookNotifier
from pbx_tracker.callbacks.ringme import RingMe, RingMeResult
from pbx_tracker.callbacks.sending import ExtraChannel
from pbx_tracker.calls.live import LiveCall
from pbx_tracker.config import Settings
from pbx_tracker.crm.amocrm import AmoCrmPlatform
from pbx_tracker.crm.bitrix24 import Bitrix24Platform, unanswered_click
from pbx_tracker.crm.delivery import OutboxDelivery
from pbx_tracker.crm.live_events import LiveEvents
from pbx_tracker.crm.platform import Platform
from pbx_tracker.crm.webhook import WebhookPlatform
from pbx_tracker.daemon.telegram import Telegram
from pbx_tracker.routing.owners import Finder, OwnerLookup
from pbx_tracker.routing.settings import zone_of
from pbx_tracker.telegram.buttons import Buttons
from pbx_tracker.telegram.sender import telegram_sender
from pbx_tracker.web.health import PartState

__all__ = ["Integrations"]

log = structlog.get_logger(__name__)

Loop = tuple[str, Callable[[], Coroutine[Any, Any, object]]]
LIVE_TARGETS = ("bitrix24",)  # the platforms that show a call while it rings


def _now() -> datetime:
    return datetime.now(UTC)


class Integrations:
    """The configured platforms' deliveries, and what feeds them."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        live_calls: Callable[[], Iterable[LiveCall]],
        *,
        ringme: RingMe | None = None,
        dial: Callable[[str], str] | None = None,
    ) -> None:
        """``ringme`` and ``dial`` (a manager's dial string): Telegram's "Call now"."""
        self.settings = settings
        self.engine = engine
        self.zone = zone_of(settings.routing.timezone)
        self._ringme, self._dial = ringme, dial
        self.telegram: Telegram | None = None
        self._writing: set[asyncio.Task[bool]] = set()
        self.deliveries: dict[str, OutboxDelivery] = {}
        self.bitrix24: Bitrix24Platform | None = None
        self.amocrm: AmoCrmPlatform | None = None
        for platform in self._platforms():
            self.deliveries[platform.name] = OutboxDelivery(engine, platform, settings.crm, _now)
        live = [target for target in LIVE_TARGETS if target in self.deliveries]
        self.live_events = (
            LiveEvents(
                engine,
                live_calls,
                settings.directory,
                node=settings.node,
                targets=live,
                written=self.wake,
            )
            if live
            else None
        )
        self.owners = self._owner_lookup()

    def _platforms(self) -> Iterator[Platform]:
        crm, settings = self.settings.crm, self.settings
        if crm.webhook is not None:
            yield WebhookPlatform(WebhookNotifier(crm.webhook))
        if crm.bitrix24 is not None:
            self.bitrix24 = Bitrix24Platform(
                crm.bitrix24,
                settings.directory,
                recordings_dir=settings.recordings_dir,
                region=settings.phone_region,
            )
            yield self.bitrix24
        if crm.amocrm is not None:
            self.amocrm = AmoCrmPlatform(
                crm.amocrm, settings.directory, region=settings.phone_region
            )
            yield self.amocrm
        callbacks = settings.callbacks
        if callbacks.enabled and callbacks.telegram is not None:
            self.telegram = Telegram(
                settings,
                self.engine,
                self.zone,
                self.wake,
                Buttons(
                    self.engine,
                    settings.directory,
                    callbacks,
                    now=_now,
                    zone=self.zone,
                    ringme=self._ringme,
                    dial=self._dial,
                ),
            )
            yield self.telegram.platform

    def _owner_lookup(self) -> OwnerLookup | None:
        """The CRMs asked for a caller's owner (Bitrix24 first), when a group wants it."""
        groups = self.settings.routing.groups
        finders: list[Finder] = [
            crm.find_owner for crm in (self.bitrix24, self.amocrm) if crm is not None
        ]
        if not finders or not any(group.crm_owner for group in groups):
            return None
        crm = self.settings.crm
        return OwnerLookup(
            finders,
            deadline=crm.owner_deadline_ms / 1000,
            cache_seconds=crm.owner_cache_minutes * 60,
        )

    @property
    def loops(self) -> list[Loop]:
        loops: list[Loop] = [(f"outbox-{name}", d.run) for name, d in self.deliveries.items()]
        if self.live_events is not None:
            loops.append(("live-events", self.live_events.run))
        if self.telegram is not None:
            loops += [
                ("telegram-updates", self.telegram.poll),
                ("telegram-closed", self.telegram.watch_closed),
            ]
        return loops

    @property
    def reminder_channels(self) -> dict[str, ExtraChannel]:
        """Reminder channels besides the callbacks' own (``telegram``)."""
        if self.telegram is None:
            return {}
        return {"telegram": telegram_sender(self.engine, _now, written=self.wake)}

    def ringme_result(self, result: RingMeResult) -> None:
        """A click-to-call from Bitrix24 whose manager did not pick up: no call follows, so
        Bitrix24's call is ended from here (an outbox event), or it would stay open there."""
        if self.bitrix24 is None or result.crm_call_id is None:
            return
        if result.outcome in ("answered", "timeout"):  # a call follows, or may still
            return
        writing = asyncio.get_running_loop().create_task(unanswered_click(self.engine, result))
        self._writing.add(writing)
        writing.add_done_callback(self._written)

    def _written(self, writing: asyncio.Task[bool]) -> None:
        self._writing.discard(writing)
        if not writing.cancelled() and writing.exception() is None and writing.result():
            self.wake()
        elif not writing.cancelled() and writing.exception() is not None:
            error = writing.exception()
            log.warning("crm.click_unanswered_unwritten", error=type(error).__name__)

    def call_stored(self) -> None:
        """A call was stored (it may have closed a callback task): events go out now."""
        self.wake()
        if self.telegram is not None:
            self.telegram.tasks_changed()

    def wake(self) -> None:
        """Events were written: every target looks at its outbox now."""
        for delivery in self.deliveries.values():
            delivery.wake()

    def call_changed(self) -> None:
        """An AMI event was taken in: the live events look at the calls again."""
        if self.live_events is not None:
            self.live_events.changed()

    async def close(self) -> None:
        if self.owners is not None:
            await self.owners.close()
        for delivery in self.deliveries.values():
            await delivery.close()

    def health_parts(self) -> dict[str, Callable[[], PartState]]:
        """``outbox.<target>`` parts for /healthz: down from the first failure in a row."""
        return {
            f"outbox.{name}": partial(_part_state, delivery)
            for name, delivery in self.deliveries.items()
        }

    def owner_figures(self) -> dict[str, float]:
        """The CRM owner lookups, for /metrics."""
        owners = self.owners
        if owners is None:
            return {}
        names = ("lookups", "hits", "timeouts", "errors")
        return {name: float(getattr(owners, name)) for name in names}

    def figures(self) -> dict[str, dict[str, float]]:
        """Per target, for /metrics."""
        return {
            name: {
                "up": float(d.state.down_since is None),
                "pending": float(d.state.pending),
                "delivered": float(d.state.delivered),
                "given_up": float(d.state.given_up),
                "retries": float(d.state.retries),
                "rate_limited": float(d.state.rate_limited),
            }
            for name, d in self.deliveries.items()
        }


def _part_state(delivery: OutboxDelivery) -> PartState:
    state = delivery.state
    if state.down_since is not None:
        since = state.down_since.isoformat(timespec="seconds")
        return PartState("down", f"since {since}: {state.last_error}; {state.pending} waiting")
    return PartState("ok", f"{state.delivered} delivered, {state.pending} waiting")
