"""Calls as Google Analytics 4 Measurement Protocol events: written to a file or sent.

One event per call with a GA client id (``visits.ga_client_id``: the last two
parts of the site's ``_ga`` cookie, e.g. ``1234567890.1700000000``)::

    {"client_id": "1234567890.1700000000",
     "events": [{"name": "phone_call", "timestamp_micros": 1700000000000000,
                 "params": {"source": "google", "medium": "cpc", "campaign": "spring",
                            "term": "plastic windows", "call_status": "answered",
                            "talk_seconds": 95, "first_time_caller": 1, "target_call": 1,
                            "engagement_time_msec": 1}}]}

``timestamp_micros`` is when the call started (microseconds since the epoch,
UTC); labels that are not known (no campaign, no term) are left out of
``params``, ``first_time_caller`` too when unknown (a hidden number);
``target_call`` is 1 for an answered call with at least ``calls.target_seconds``
of talk.  Strings are cut to 100 characters (GA4's limit for a parameter value).

The file (``--out``) holds one such request body per line (JSON Lines), each
ready to be POSTed as is.  Sending groups the events by client id, at most 25
per request (GA4's limit), to ``{endpoint}?measurement_id=…&api_secret=…``;
a 5xx answer, a timeout or a connection error is retried (``attempts`` in all,
waits of ``backoff`` seconds doubling), any other non-2xx answer stops the
export.  GA4 accepts ``timestamp_micros`` only up to 72 hours back, so calls
that started earlier than 72 hours before the export are left out (and
counted), whether written or sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from yarl import URL

from pbx_tracker.exports.calls import ExportedCall, kept_calls
from pbx_tracker.exports.settings import Ga4Settings

__all__ = [
    "EVENT_NAME",
    "GA4_WINDOW",
    "MAX_EVENTS_PER_REQUEST",
    "Ga4Events",
    "Ga4SendError",
    "ga4_events",
    "request_bodies",
    "send_events",
    "write_ga4",
]

log = structlog.get_logger(__name__)

EVENT_NAME = "phone_call"
GA4_WINDOW = timedelta(hours=72)
MAX_EVENTS_PER_REQUEST = 25
MAX_VALUE_LENGTH = 100

Event = dict[str, Any]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Ga4Events:
    """(client id, event) per exported call, in call order, and what was left out."""

    events: list[tuple[str, Event]]
    without_client_id: int
    too_old: int
    spam: int = 0


class Ga4SendError(Exception):
    """Sending stopped: ``sent`` of ``total`` events had been accepted."""

    def __init__(self, reason: str, *, sent: int, total: int) -> None:
        self.reason, self.sent, self.total = reason, sent, total
        super().__init__(f"{reason}; {sent} of {total} events were sent")


def ga4_events(calls: Iterable[ExportedCall], *, target_seconds: int, now: datetime) -> Ga4Events:
    """The events of ``calls``: spam calls, those without a client id and those older
    than 72 hours out."""
    kept = kept_calls(calls, lambda call: call.ga_client_id, window=GA4_WINDOW, now=now)
    events = [(client, call_event(call, target_seconds)) for client, call in kept.calls]
    return Ga4Events(events, kept.without_client_id, kept.too_old, kept.spam)


def call_event(call: ExportedCall, target_seconds: int) -> Event:
    """The ``phone_call`` event of one call."""
    labels = {
        "source": call.source,
        "medium": call.medium,
        "campaign": call.campaign,
        "term": call.utm_term,
    }
    params: dict[str, Any] = {
        name: value[:MAX_VALUE_LENGTH] for name, value in labels.items() if value
    }
    params["call_status"] = "answered" if call.answered else "missed"
    params["talk_seconds"] = call.talk_seconds
    if call.first_time_caller is not None:
        params["first_time_caller"] = int(call.first_time_caller)
    params["target_call"] = int(call.answered and call.talk_seconds >= target_seconds)
    params["engagement_time_msec"] = 1
    micros = int(call.started_at.timestamp()) * 1_000_000 + call.started_at.microsecond
    return {"name": EVENT_NAME, "timestamp_micros": micros, "params": params}


def request_bodies(
    events: Sequence[tuple[str, Event]], *, batch: int = MAX_EVENTS_PER_REQUEST
) -> list[dict[str, Any]]:
    """Measurement Protocol request bodies: the events grouped by client id (in order
    of first appearance), at most ``batch`` per body."""
    grouped: dict[str, list[Event]] = {}
    for client_id, event in events:
        grouped.setdefault(client_id, []).append(event)
    return [
        {"client_id": client_id, "events": client_events[start : start + batch]}
        for client_id, client_events in grouped.items()
        for start in range(0, len(client_events), batch)
    ]


def write_ga4(path: Path, events: Sequence[tuple[str, Event]]) -> None:
    """One request body per event and line, in call order (JSON Lines, UTF-8); OSError
    when it cannot."""
    with path.open("w", encoding="utf-8") as out:
        for client_id, event in events:
            out.write(_json({"client_id": client_id, "events": [event]}) + "\n")


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


# --- sending -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    accepted: bool
    reason: str = ""
    retry: bool = False


async def send_events(
    settings: Ga4Settings,
    events: Sequence[tuple[str, Event]],
    *,
    sleep: Sleep = asyncio.sleep,
) -> int:
    """POST the events in batches; how many were sent, or Ga4SendError when one batch
    could not be delivered (with how many were sent before it)."""
    if not settings.configured:
        raise Ga4SendError("GA4 is not configured", sent=0, total=len(events))
    bodies, sent = request_bodies(events), 0
    async with aiohttp.ClientSession() as session:
        sender = _Sender(settings, session, sleep)
        for number, body in enumerate(bodies, 1):
            reason = await sender.deliver(body)
            if reason is not None:
                where = f"GA4 request {number} of {len(bodies)}"
                raise Ga4SendError(f"{where}: {reason}", sent=sent, total=len(events))
            sent += len(body["events"])
    return sent


class _Sender:
    """Delivers one request body with bounded retries; never shows the API secret."""

    def __init__(self, settings: Ga4Settings, session: aiohttp.ClientSession, sleep: Sleep):
        self._settings, self._session, self._sleep = settings, session, sleep
        endpoint = URL(settings.endpoint)
        self.target = f"{endpoint.scheme}://{endpoint.host}:{endpoint.port}{endpoint.path}"

    async def deliver(self, body: dict[str, Any]) -> str | None:
        """None once accepted, else the last reason it was not."""
        data = _json(body).encode()
        attempts = self._settings.attempts
        for attempt in range(1, attempts + 1):
            outcome = await self._post(data)
            if outcome.accepted:
                return None
            again = outcome.retry and attempt < attempts
            wait = self._settings.backoff * 2 ** (attempt - 1) if again else None
            log.warning(
                "exports.ga4_request_failed",
                target=self.target,
                events=len(body["events"]),
                attempt=attempt,
                attempts=attempts,
                reason=outcome.reason,
                retry_in=wait,
            )
            if wait is None:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                return f"{outcome.reason}{tries}"
            await self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, data: bytes) -> _Outcome:
        settings = self._settings
        assert settings.measurement_id is not None and settings.api_secret is not None
        params = {
            "measurement_id": settings.measurement_id,
            "api_secret": settings.api_secret.get_secret_value(),
        }
        timeout = aiohttp.ClientTimeout(total=settings.timeout)
        headers = {"Content-Type": "application/json", "User-Agent": "pbx-tracker"}
        try:
            async with self._session.post(
                settings.endpoint,
                params=params,
                data=data,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,  # the secret goes only where it was configured to
            ) as response:
                await response.read()
                return _answer(response.status)
        except TimeoutError:
            return _Outcome(False, f"no answer within {settings.timeout:g} s", retry=True)
        except aiohttp.ClientError as error:
            return _Outcome(False, f"{self.target}: {_client_reason(error)}", retry=True)


def _client_reason(error: aiohttp.ClientError) -> str:
    """What went wrong, without the error's text (it may hold the URL with the secret)."""
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect ({error.os_error.strerror or type(error.os_error).__name__})"
    return type(error).__name__


def _answer(status: int) -> _Outcome:
    if 200 <= status < 300:
        return _Outcome(True)
    return _Outcome(False, f"HTTP {status}", retry=status >= 500)
