"""What an outside platform is to the outbox: it takes one event at a time and either
carries it out or says why not.

Each platform (the generic webhook, Bitrix24, amoCRM, Telegram) is a *target* of
the outbox (`pbx_tracker.crm.outbox`): its events are delivered in the order they
were written, per call (``call_key``), at least once.  `Platform.deliver` is
called with an `OutboxEvent` and the platform's `Links` (what it remembers of a
call between its events, e.g. Bitrix24's ``CALL_ID``); it returns when the
platform accepted the event and raises `PlatformError` when not.  An event may
come again after a crash between the platform's answer and the outbox's mark,
so a platform keeps what it got (``Links.put``) as soon as it got it, and makes
each step safe to repeat.

The call events (``call_key`` ``node:linkedid``):

- ``call.ringing``: ``{"call": LIVE, "managers": [extension, ...]}``, managers whose
  phones began to ring for the call (each manager once per call);
- ``call.answered``: ``{"call": LIVE, "manager": extension}``;
- ``call.finished`` / ``call.updated``: ``{"event", "delivery", "call": record}``,
  the stored call record (`CallRecord.to_json`), as the webhook sends it.

``LIVE`` is ``{"node", "linkedid", "caller", "caller_name", "did", "source",
"started_at"}`` (ISO 8601 UTC).  A call that ended before it was seen ringing
(a short call, a call recovered from CEL after a downtime) has only its
``call.finished``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

__all__ = ["Links", "OutboxEvent", "Platform", "PlatformError"]


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One row of the outbox for one target; ``key`` is the same on every try."""

    id: int
    target: str
    call_key: str
    kind: str
    key: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int


class PlatformError(Exception):
    """The platform did not take the event.

    ``retry_after``: seconds the platform asked us to wait (Telegram's 429
    ``retry_after``, Bitrix24's ``QUERY_LIMIT_EXCEEDED``); the whole target pauses
    that long.  ``permanent``: trying again cannot help (the platform refused the
    content itself); the event is given up at once and logged.  ``down``: the
    platform could not be reached or failed (network, 5xx, a refused token): it
    shows as down on /healthz until an event goes through.  ``status``: the HTTP status
    the platform answered with (200 for an answer of the wrong shape); None when
    nothing answered (network trouble, a timeout).
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        down: bool = True,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.permanent = permanent
        self.down = down


class Links(Protocol):
    """What a platform keeps of a call between its events (one JSON object per call)."""

    async def get(self, call_key: str) -> dict[str, Any] | None: ...

    async def put(self, call_key: str, data: dict[str, Any]) -> None: ...


class Platform(Protocol):
    """An outside service the outbox delivers to (a target)."""

    name: str

    async def deliver(self, event: OutboxEvent, links: Links) -> None: ...

    async def close(self) -> None: ...
