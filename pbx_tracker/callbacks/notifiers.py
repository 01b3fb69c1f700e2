"""Sending reminders: email over SMTP (aiosmtplib) and an HTTP webhook (aiohttp).

Both notifiers are fully asynchronous and raise `NotifyError` with a short
reason (``smtp 127.0.0.1:2525: connection refused``) that a log line can carry;
a reason never holds the SMTP password, the webhook secret, the webhook path
or query (they may hold a token), or the message body.

Webhook requests
----------------
Each reminder is one ``POST`` of compact UTF-8 JSON to the configured URL with::

    Content-Type: application/json
    User-Agent: pbx-tracker
    X-PBX-Tracker-Event: callback.reminder          (or callback.escalation)
    X-PBX-Tracker-Delivery: 0651edaf-3ae7-59f2-...  (same on every retry: de-duplicate on it)
    X-PBX-Tracker-Timestamp: 1715670300             (unix seconds of this attempt)
    X-PBX-Tracker-Signature: sha256=<64 hex digits> (only when a secret is configured)

The signature is the hex HMAC-SHA256, keyed with the secret (UTF-8), of the
timestamp header, a dot, and the raw request body bytes::

    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, "sha256").hexdigest()
    valid = hmac.compare_digest(f"sha256={expected}", request.headers["X-PBX-Tracker-Signature"])

Verify it over the body exactly as received (before parsing the JSON), compare
in constant time, and reject timestamps too far from your clock (five minutes
is usual) so that a captured request cannot be replayed later;
`verify_signature()` does all of that.  Any 2xx answer counts as delivered.
Connection errors, timeouts, 429 and 5xx answers are retried up to
``attempts`` times in all, waiting ``backoff`` seconds, doubled after each try
(at most a minute), or the ``Retry-After`` seconds of the answer when that is
longer and no more than a minute.  Other answers (3xx, 4xx) are not retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self

import aiohttp
import aiosmtplib
import structlog
from pydantic import SecretStr
from yarl import URL

from pbx_tracker.callbacks.settings import SmtpSettings, WebhookSettings

__all__ = [
    "USER_AGENT",
    "EmailNotifier",
    "NotifyError",
    "WebhookNotifier",
    "sign",
    "verify_signature",
]

log = structlog.get_logger(__name__)

USER_AGENT = "pbx-tracker"
MAX_WAIT = 60.0  # seconds: the longest pause between two webhook tries
_SIGNATURE_PREFIX = "sha256="
_MAX_REASON = 200

Sleep = Callable[[float], Awaitable[object]]


class NotifyError(Exception):
    """A reminder could not be delivered; ``reason`` is short and holds no secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EmailNotifier:
    """Sends messages through the configured SMTP server, one connection per message."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self.target = f"smtp {settings.host}:{settings.port}"

    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to its ``To``/``Cc`` recipients; NotifyError when none got it.

        Recipients the server refused while it accepted others are logged, not raised:
        sending again would reach the others twice.
        """
        try:
            refused, _ = await aiosmtplib.send(message, **self._options())
        except (aiosmtplib.SMTPException, OSError, ValueError) as error:
            reason = _scrub(_smtp_reason(error, self._settings.timeout), self._secrets())
            raise NotifyError(f"{self.target}: {reason}") from error
        if refused:
            log.warning(
                "callbacks.email_recipients_refused", target=self.target, refused=sorted(refused)
            )

    def _options(self) -> dict[str, Any]:
        settings = self._settings
        password = settings.password.get_secret_value() if settings.password else None
        return {
            "hostname": settings.host,
            "port": settings.port,
            "use_tls": settings.security == "tls",
            "start_tls": settings.security == "starttls",
            "username": settings.username or None,
            "password": password if settings.username else None,
            "timeout": settings.timeout,
            **self._tls(),
        }

    def _tls(self) -> dict[str, Any]:
        """A TLS context trusting `ca_file` (a private CA), else the system's CAs."""
        ca_file = self._settings.ca_file
        if ca_file is None or self._settings.security == "none":
            return {}
        return {"tls_context": ssl.create_default_context(cafile=str(ca_file))}

    def _secrets(self) -> list[str]:
        password = self._settings.password
        return [password.get_secret_value()] if password else []


class WebhookNotifier:
    """POSTs signed JSON to the configured URL, retrying with backoff (see the module doc).

    Without a ``session`` it opens its own on first use and `close()` closes it; a
    session given is used as is and left open.  ``sleep`` waits between tries
    (tests pass a recorder).
    """

    def __init__(
        self,
        settings: WebhookSettings,
        session: aiohttp.ClientSession | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._session = session
        self._owns_session = session is None
        self._sleep = sleep
        url = URL(settings.url)
        self.target = f"webhook {url.host}:{url.port}"

    async def send(self, payload: Mapping[str, Any]) -> None:
        """Deliver ``payload``; NotifyError with the last reason when every try failed.

        ``payload["event"]`` and ``payload["delivery"]`` (see `webhook_payload()`) become
        the event and delivery headers; without a delivery id a new one is made.
        """
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        event = str(payload.get("event") or "message")
        delivery = str(payload.get("delivery") or uuid.uuid4())
        attempts = self._settings.attempts
        for attempt in range(1, attempts + 1):
            outcome = await self._post(body, event, delivery)
            if outcome.delivered:
                return
            wait = self._wait(attempt, outcome) if outcome.retry and attempt < attempts else None
            log.warning(
                "callbacks.webhook_delivery_failed",
                target=self.target,
                webhook_event=event,
                delivery=delivery,
                attempt=attempt,
                attempts=attempts,
                reason=outcome.reason,
                retry_in=wait,
            )
            if wait is None:
                break
            await self._sleep(wait)
        raise NotifyError(f"{self.target}: {outcome.reason}")

    async def close(self) -> None:
        """Close the session this notifier opened (a session given to it stays open)."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _post(self, body: bytes, event: str, delivery: str) -> _Outcome:
        """One try: the outcome, never an exception for network trouble."""
        session = self._client()
        headers = self._headers(body, event, delivery)
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout)
        try:
            async with session.post(
                self._settings.url,
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,  # a signed reminder goes where it was configured to
            ) as response:
                return _answer(response)
        except TimeoutError:
            return _Outcome(f"no answer within {self._settings.timeout:g} s", retry=True)
        except aiohttp.ClientError as error:
            reason = _scrub(_client_reason(error), [self._settings.url, *self._secrets()])
            return _Outcome(reason, retry=True)

    def _headers(self, body: bytes, event: str, delivery: str) -> dict[str, str]:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-PBX-Tracker-Event": event,
            "X-PBX-Tracker-Delivery": delivery,
            "X-PBX-Tracker-Timestamp": timestamp,
        }
        if self._settings.secret is not None:
            headers["X-PBX-Tracker-Signature"] = sign(self._settings.secret, timestamp, body)
        return headers

    def _wait(self, attempt: int, outcome: _Outcome) -> float:
        """Seconds before the next try: the doubled backoff, or a longer sane Retry-After."""
        cap = max(MAX_WAIT, self._settings.backoff)
        wait = min(self._settings.backoff * 2.0 ** (attempt - 1), cap)
        if outcome.retry_after is not None and outcome.retry_after <= cap:
            wait = max(wait, outcome.retry_after)
        return wait

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _secrets(self) -> list[str]:
        secret = self._settings.secret
        return [secret.get_secret_value()] if secret else []


def sign(secret: str | SecretStr, timestamp: str | int, body: bytes) -> str:
    """The ``X-PBX-Tracker-Signature`` value: ``sha256=`` and the hex HMAC of ``ts.body``."""
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    signed = f"{timestamp}.".encode() + body
    return _SIGNATURE_PREFIX + hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | SecretStr,
    timestamp: str | int | None,
    body: bytes | str,
    header: str | None,
    *,
    tolerance: float | None = 300.0,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs ``body`` at ``timestamp`` with ``secret``.

    With a ``tolerance`` (seconds; None turns it off) the timestamp must also be that
    close to ``now`` (default: the current time), so an old request cannot be replayed.
    """
    stamp = "" if timestamp is None else str(timestamp).strip()
    if header is None or not (stamp.isascii() and stamp.isdigit()):
        return False
    if tolerance is not None:
        current = time.time() if now is None else now
        if abs(current - int(stamp)) > tolerance:
            return False
    raw = body.encode() if isinstance(body, str) else body
    expected = sign(secret, stamp, raw)
    return hmac.compare_digest(expected.encode(), header.strip().encode())


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How one webhook try ended."""

    reason: str | None  # None: delivered
    retry: bool = False
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.reason is None


def _answer(response: aiohttp.ClientResponse) -> _Outcome:
    if 200 <= response.status < 300:
        return _Outcome(None)
    reason = f"HTTP {response.status} {response.reason or ''}".strip()
    retry = response.status == 429 or response.status >= 500
    return _Outcome(reason, retry=retry, retry_after=_retry_after(response.headers))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds when it is a sane number of them (not a date)."""
    try:
        seconds = float(headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _client_reason(error: aiohttp.ClientError) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return _os_reason(error.os_error)
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    return _short(str(error)) or type(error).__name__


def _smtp_reason(error: Exception, timeout: float) -> str:
    if isinstance(error, aiosmtplib.SMTPTimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return f"authentication failed ({error.code} {_short(error.message)})"
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        refused = (f"{r.recipient} ({r.code} {_short(r.message)})" for r in error.recipients)
        return f"recipients refused: {', '.join(refused)}"
    if isinstance(error, aiosmtplib.SMTPSenderRefused):
        return f"sender refused: {error.sender} ({error.code} {_short(error.message)})"
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return f"server answered {error.code} {_short(error.message)}"
    if isinstance(error, aiosmtplib.SMTPConnectError) and isinstance(error.__cause__, OSError):
        return _os_reason(error.__cause__)
    if isinstance(error, OSError):
        return _os_reason(error)
    if isinstance(error, ValueError):
        return f"message not sendable: {_short(str(error))}"
    return _short(str(error)) or type(error).__name__


def _os_reason(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {_short(error.verify_message or str(error))}"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed: {_short(error.reason or str(error))}"
    return _short(error.strerror or str(error)) or type(error).__name__


def _short(text: str) -> str:
    """One line, at most a couple of hundred characters."""
    line = " ".join(text.split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"


def _scrub(text: str, secrets: list[str]) -> str:
    """``text`` without any of ``secrets`` (a backstop: servers should not echo them)."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
