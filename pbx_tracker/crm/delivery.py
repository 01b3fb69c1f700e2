"""`CrmDelivery`: sends the outbox's call events to the CRM, at least once, in order per
call, for as long as the CRM is down (up to ``give_up_hours``).

The daemon wakes it after each stored call; it also looks on its own every
``POLL_SECONDS`` (events due for a retry, or written by another daemon).  Each
event is claimed for the length of one delivery round, sent with the callback
webhook's signing (`WebhookNotifier`: the ``X-PBX-Tracker-Delivery`` header
carries the event's idempotency key, the same on every try), then marked
delivered, or given its next try after ``retry_initial`` seconds, doubling up to
``retry_max``.  A daemon killed mid-send sends that event again after the claim
runs out: the CRM sees the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks.notifiers import NotifyError, WebhookNotifier
from pbx_tracker.crm.outbox import (
    Delivery,
    claim,
    due_deliveries,
    mark_delivered,
    mark_failed,
    mark_retry,
)
from pbx_tracker.crm.settings import CrmSettings

__all__ = ["POLL_SECONDS", "CrmDelivery"]

log = structlog.get_logger(__name__)

POLL_SECONDS = 5.0
BATCH = 50
Clock = Callable[[], datetime]


class CrmDelivery:
    """Delivers due outbox events until stopped; `delivered` is set after each round."""

    def __init__(
        self, engine: AsyncEngine, settings: CrmSettings, notifier: WebhookNotifier, clock: Clock
    ) -> None:
        assert settings.webhook is not None
        self._engine = engine
        self._settings = settings
        self._notifier = notifier
        self._clock = clock
        self._claim_for = timedelta(
            seconds=settings.webhook.timeout * settings.webhook.attempts
            + settings.webhook.backoff * 2**settings.webhook.attempts
            + 30
        )
        self._wake = asyncio.Event()
        self._next_retry: datetime | None = None
        self.rounds = asyncio.Event()  # tests wait on it
        self.sent = 0

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        """Close the webhook's HTTP session (after `run` was cancelled)."""
        await self._notifier.close()

    async def run(self) -> None:
        """Deliver, then wait for a wake-up or the poll interval; a failing database is
        logged and tried again at the next round."""
        while True:
            self._wake.clear()
            try:
                await self.deliver_due()
            except Exception as error:
                log.warning("crm.outbox_unreadable", error=str(error) or type(error).__name__)
            self.rounds.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._pause())

    def _pause(self) -> float:
        """Seconds to the next round: the poll interval, or sooner when a retry is due."""
        retry, self._next_retry = self._next_retry, None
        if retry is None:
            return POLL_SECONDS
        return min(POLL_SECONDS, max(0.0, (retry - self._clock()).total_seconds()))

    async def deliver_due(self) -> int:
        """Send what is due now; how many were delivered."""
        now = self._clock()
        async with self._engine.connect() as conn:
            due = await due_deliveries(conn, now, BATCH)
        delivered = 0
        blocked: set[str] = set()
        for delivery in due:
            if delivery.call_key in blocked:
                continue  # an earlier event of this call did not go through: keep the order
            if await self._deliver(delivery):
                delivered += 1
            else:
                blocked.add(delivery.call_key)
        return delivered

    async def _deliver(self, delivery: Delivery) -> bool:
        now = self._clock()
        async with self._engine.begin() as conn:
            if not await claim(conn, delivery.id, now, now + self._claim_for):
                return False
        try:
            await self._notifier.send(delivery.payload)
        except NotifyError as error:
            await self._failed(delivery, str(error))
            return False
        async with self._engine.begin() as conn:
            await mark_delivered(conn, delivery.id, self._clock())
        self.sent += 1
        log.info("crm.delivered", call_event=delivery.event, delivery=delivery.idempotency_key)
        return True

    async def _failed(self, delivery: Delivery, reason: str) -> None:
        now = self._clock()
        give_up = delivery.created_at + timedelta(hours=self._settings.give_up_hours)
        async with self._engine.begin() as conn:
            if now >= give_up:
                await mark_failed(conn, delivery.id, now, reason)
                log.error(
                    "crm.given_up", delivery=delivery.idempotency_key, tries=delivery.attempts + 1
                )
                return
            wait = min(
                self._settings.retry_initial * 2**delivery.attempts, self._settings.retry_max
            )
            retry_at = now + timedelta(seconds=wait)
            await mark_retry(conn, delivery.id, retry_at, reason)
        if self._next_retry is None or retry_at < self._next_retry:
            self._next_retry = retry_at
        log.warning(
            "crm.retry_later",
            delivery=delivery.idempotency_key,
            tries=delivery.attempts + 1,
            retry_in=wait,
            reason=reason,
        )
