"""`OutboxDelivery`: sends one target's outbox events to its platform, at least once, in
order per call, for as long as the platform is down (up to ``give_up_hours``).

The daemon wakes it after each stored call (and after each live event); it also
looks on its own every ``POLL_SECONDS`` (events due for a retry, or written by
another daemon).  Each event is claimed for the length of one try, handed to the
`Platform`, then marked delivered.  When the platform fails:

- it is down (network, 5xx, a refused token): the event is tried again after
  ``retry_initial`` seconds, doubling with each failure in a row up to
  ``retry_max``, and the round ends, so a dead platform gets one probe per wait,
  not one request per waiting call; /healthz shows it down from the first
  failure until an event goes through;
- it asks to slow down (``retry_after``: Bitrix24's ``QUERY_LIMIT_EXCEEDED``,
  Telegram's and amoCRM's 429): the whole target pauses that long;
- it refuses the event itself (``permanent``): the event is given up at once
  (logged, counted), and the call's next events go on.

A daemon killed mid-send sends that event again after the claim runs out: the
platform sees the same idempotency key (platforms keep their progress in `Links`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.crm.links import StoredLinks
from pbx_tracker.crm.outbox import (
    Delivery,
    claim,
    due_deliveries,
    mark_delivered,
    mark_failed,
    mark_retry,
    pending_count,
)
from pbx_tracker.crm.platform import Links, OutboxEvent, Platform, PlatformError
from pbx_tracker.crm.settings import CrmSettings
from pbx_tracker.waking import woken

__all__ = ["POLL_SECONDS", "OutboxDelivery", "TargetState"]

log = structlog.get_logger(__name__)

POLL_SECONDS = 5.0
BATCH = 50
CLAIM_SECONDS = 120.0  # one try; a platform's own timeouts are shorter
Clock = Callable[[], datetime]


@dataclass
class TargetState:
    """How a target is doing, for /healthz and /metrics."""

    down_since: datetime | None = None
    last_error: str | None = None
    last_delivered_at: datetime | None = None
    delivered: int = 0
    given_up: int = 0
    retries: int = 0
    rate_limited: int = 0
    pending: int = 0


class OutboxDelivery:
    """Delivers ``platform``'s due outbox events until stopped; `rounds` is set after each
    round (tests wait on it)."""

    def __init__(
        self,
        engine: AsyncEngine,
        platform: Platform,
        settings: CrmSettings,
        clock: Clock,
        links: Links | None = None,
    ) -> None:
        self.target = platform.name
        self.platform = platform
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self.links = links or StoredLinks(engine, platform.name, clock)
        self._wake = asyncio.Event()
        self._paused_until: datetime | None = None
        self._failures = 0  # down answers in a row
        self.state = TargetState()
        self.rounds = asyncio.Event()

    @property
    def sent(self) -> int:
        return self.state.delivered

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        """Close the platform's HTTP session (after `run` was cancelled)."""
        await self.platform.close()

    async def run(self) -> None:
        """Deliver, then wait for a wake-up or the poll interval; a failing database is
        logged and tried again at the next round."""
        while True:
            self._wake.clear()
            try:
                await self.deliver_due()
                async with self._engine.connect() as conn:
                    self.state.pending = await pending_count(conn, self.target)
            except Exception as error:
                log.warning(
                    "crm.outbox_unreadable",
                    target=self.target,
                    error=str(error) or type(error).__name__,
                )
            self.rounds.set()
            pause = self._pause()
            if pause is not None:  # paused: a wake-up does not cut the wait short
                await asyncio.sleep(pause)
                continue
            await woken(self._wake, POLL_SECONDS)

    def _pause(self) -> float | None:
        """Seconds the target is still paused (down, or asked to slow down), or None."""
        if self._paused_until is None:
            return None
        left = (self._paused_until - self._clock()).total_seconds()
        if left <= 0:
            self._paused_until = None
            return None
        return min(left, POLL_SECONDS)

    async def deliver_due(self) -> int:
        """Send what is due now; how many were delivered."""
        if self._pause() is not None:
            return 0
        async with self._engine.connect() as conn:
            due = await due_deliveries(conn, self._clock(), BATCH, self.target)
        delivered = 0
        blocked: set[str] = set()
        for delivery in due:
            if delivery.call_key in blocked:
                continue  # an earlier event of this call did not go through: keep the order
            outcome = await self._deliver(delivery)
            if outcome == "delivered":
                delivered += 1
            elif outcome == "stop":
                break
            else:
                blocked.add(delivery.call_key)
        return delivered

    async def _deliver(self, delivery: Delivery) -> str:
        """``delivered``, ``skipped`` (another daemon has it, or given up), or ``stop``
        (the platform is down or asked to wait: end the round)."""
        now = self._clock()
        async with self._engine.begin() as conn:
            if not await claim(conn, delivery.id, now, now + timedelta(seconds=CLAIM_SECONDS)):
                return "skipped"
        try:
            await self.platform.deliver(_event(delivery), self.links)
        except PlatformError as error:
            return await self._failed(delivery, error)
        async with self._engine.begin() as conn:
            await mark_delivered(conn, delivery.id, self._clock())
        self._delivered()
        log.info(
            "crm.delivered",
            target=self.target,
            call_event=delivery.event,
            delivery=delivery.idempotency_key,
        )
        return "delivered"

    def _delivered(self) -> None:
        state = self.state
        if state.down_since is not None:
            log.info("crm.platform_back", target=self.target, down_since=state.down_since)
        state.down_since, state.last_error = None, None
        state.last_delivered_at = self._clock()
        state.delivered += 1
        self._failures = 0

    async def _failed(self, delivery: Delivery, error: PlatformError) -> str:
        now = self._clock()
        give_up = delivery.created_at + timedelta(hours=self._settings.give_up_hours)
        if error.permanent or now >= give_up:
            async with self._engine.begin() as conn:
                await mark_failed(conn, delivery.id, now, error.reason)
            self.state.given_up += 1
            log.error(
                "crm.given_up",
                target=self.target,
                delivery=delivery.idempotency_key,
                tries=delivery.attempts + 1,
                reason=error.reason,
            )
            return "skipped"
        wait = self._wait(error)
        retry_at = now + timedelta(seconds=wait)
        async with self._engine.begin() as conn:
            await mark_retry(conn, delivery.id, retry_at, error.reason)
        self.state.retries += 1
        log.warning(
            "crm.retry_later",
            target=self.target,
            delivery=delivery.idempotency_key,
            tries=delivery.attempts + 1,
            retry_in=wait,
            reason=error.reason,
        )
        if error.retry_after is None and not error.down:
            return "skipped"  # this event only: the others may go
        self._paused_until = retry_at
        return "stop"

    def _wait(self, error: PlatformError) -> float:
        """Seconds before the next try: the platform's own wish, or the backoff."""
        if error.retry_after is not None:
            self.state.rate_limited += 1
            return max(error.retry_after, 0.5)
        if error.down:
            self._failures += 1
            if self.state.down_since is None:
                self.state.down_since = self._clock()
                log.error("crm.platform_down", target=self.target, reason=error.reason)
            self.state.last_error = error.reason
        settings = self._settings
        return float(
            min(settings.retry_initial * 2 ** max(self._failures - 1, 0), settings.retry_max)
        )


def _event(delivery: Delivery) -> OutboxEvent:
    return OutboxEvent(
        id=delivery.id,
        target=delivery.target,
        call_key=delivery.call_key,
        kind=delivery.event,
        key=delivery.idempotency_key,
        payload=delivery.payload,
        created_at=delivery.created_at,
        attempts=delivery.attempts,
    )
