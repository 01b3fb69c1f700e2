"""`WebhookPlatform`: the generic CRM webhook as an outbox target (``webhook``): each
event's payload POSTed, signed, by `pbx_tracker.callbacks.notifiers.WebhookNotifier`
(the ``X-PBX-Tracker-Delivery`` header carries the event's idempotency key)."""

from __future__ import annotations

from pbx_tracker.callbacks.notifiers import NotifyError, WebhookNotifier
from pbx_tracker.crm.platform import Links, OutboxEvent, PlatformError

__all__ = ["WebhookPlatform"]


class WebhookPlatform:
    name = "webhook"

    def __init__(self, notifier: WebhookNotifier) -> None:
        self._notifier = notifier

    async def deliver(self, event: OutboxEvent, links: Links) -> None:
        try:
            await self._notifier.send(event.payload)
        except NotifyError as error:
            raise PlatformError(error.reason) from None

    async def close(self) -> None:
        await self._notifier.close()
