"""`Bitrix24Api`: calls of Bitrix24's REST through an incoming webhook, each answer checked.

A method is ``POST <webhook_url><method>.json`` with a JSON body; Bitrix24 answers
``{"result": ..., "time": {...}}``, or ``{"error": "CODE", "error_description": "..."}``
with HTTP 400/401/403/404/429/500/503.  Every failure becomes a `PlatformError`:

- ``QUERY_LIMIT_EXCEEDED`` (503): more than the portal's leaky bucket lets through
  (it drains 2 requests a second): ``retry_after`` one second, not down;
  ``OPERATION_TIME_LIMIT`` (429, a method blocked for its run time): a minute;
- the webhook refused or unusable (``NO_AUTH_FOUND``, ``INVALID_CREDENTIALS``,
  ``expired_token``, ``insufficient_scope``, ``ACCESS_DENIED``, ``WRONG_AUTH_TYPE``,
  ``ERROR_METHOD_NOT_FOUND``: a method missing is a webhook without the
  ``telephony`` scope far more often than a typo), ``PORTAL_DELETED``, any 5xx,
  network trouble, timeouts, redirects and answers that are not Bitrix24's JSON:
  down, tried again later;
- any other error (``ERROR_CORE``, ``ERROR_ARGUMENT``, an empty code: the content was
  refused): permanent.

The webhook's URL holds its secret code: no reason or log line carries the URL or
the code (the descriptions Bitrix24 sends are scrubbed of them too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from pbx_tracker.crm.platform import PlatformError

__all__ = ["QUERY_LIMIT_WAIT", "Bitrix24Api"]

QUERY_LIMIT_WAIT = 1.0  # seconds: the bucket drains 2 requests a second
OPERATION_LIMIT_WAIT = 60.0
_DOWN_CODES = frozenset(
    {
        "NO_AUTH_FOUND",
        "INVALID_CREDENTIALS",
        "INVALID_REQUEST",
        "EXPIRED_TOKEN",
        "INVALID_TOKEN",
        "INSUFFICIENT_SCOPE",
        "ACCESS_DENIED",
        "USER_ACCESS_ERROR",
        "WRONG_AUTH_TYPE",
        "OVERLOAD_LIMIT",
        "PORTAL_DELETED",
        "ERROR_METHOD_NOT_FOUND",
        "INTERNAL_SERVER_ERROR",
        "ERROR_UNEXPECTED_ANSWER",
    }
)
_MAX_TEXT = 160


class Bitrix24Api:
    """One portal's REST through its incoming webhook; `close()` closes the session it opened."""

    def __init__(
        self,
        webhook_url: str,
        *,
        timeout: float,
        secrets: list[str],
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._base = webhook_url if webhook_url.endswith("/") else f"{webhook_url}/"
        self._timeout = timeout
        self._secrets = sorted(filter(None, [webhook_url, *secrets]), key=len, reverse=True)
        self._session = session
        self._owns_session = session is None

    async def call(self, method: str, params: Mapping[str, Any]) -> Any:
        """The ``result`` of ``method`` called with ``params``; PlatformError when none came."""
        body = json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with self._client().post(
                f"{self._base}{method}.json",
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,  # the code goes only where it was configured to
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            raise self._error(method, f"no answer within {self._timeout:g} s") from None
        except aiohttp.ClientError as error:
            raise self._error(method, _client_reason(error)) from None
        return self._answer(method, status, raw)

    async def scopes(self) -> list[str]:
        """The webhook's scopes (method ``scope``: ``["crm", "telephony", ...]``)."""
        result = await self.call("scope", {})
        if not isinstance(result, list) or not all(isinstance(s, str) for s in result):
            raise self._error("scope", "answered no list of scopes", status=200)
        return result

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _answer(self, method: str, status: int, raw: bytes) -> Any:
        try:
            answer = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            answer = None
        if not isinstance(answer, dict):
            raise self._error(method, f"HTTP {status}, not Bitrix24's JSON", status=status)
        if "error" in answer or status >= 300:
            raise self._refusal(method, status, answer)
        if "result" not in answer:
            raise self._error(method, f"HTTP {status} without a result", status=status)
        return answer["result"]

    def _refusal(self, method: str, status: int, answer: dict[str, Any]) -> PlatformError:
        """What a Bitrix24 error answer means for the outbox (see the module doc)."""
        code = answer.get("error")
        code = code if isinstance(code, str) else ""
        description = answer.get("error_description")
        text = f"HTTP {status} {code or '(no code)'}"
        if isinstance(description, str) and description.strip():
            text += f": {_short(description)}"
        key = code.upper()
        if key == "QUERY_LIMIT_EXCEEDED":
            wait = QUERY_LIMIT_WAIT
            return self._error(method, text, retry_after=wait, down=False, status=status)
        if key == "OPERATION_TIME_LIMIT" or status == 429:
            wait = OPERATION_LIMIT_WAIT
            return self._error(method, text, retry_after=wait, down=False, status=status)
        if key in _DOWN_CODES or status >= 500 or status in (401, 403) or 300 <= status < 400:
            return self._error(method, text, status=status)
        return self._error(method, text, permanent=True, down=False, status=status)

    def _error(
        self,
        method: str,
        reason: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        down: bool = True,
        status: int | None = None,
    ) -> PlatformError:
        text = f"bitrix24 {_short(method)}: {reason}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return PlatformError(
            text, retry_after=retry_after, permanent=permanent, down=down, status=status
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def _client_reason(error: aiohttp.ClientError) -> str:
    """A short reason for network trouble; never the request's URL (it holds the code)."""
    if isinstance(error, aiohttp.ClientConnectorError):
        os_error = error.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused"
        return _short(os_error.strerror or type(os_error).__name__)
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "answer cut short"
    return type(error).__name__


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_TEXT else line[: _MAX_TEXT - 1] + "…"
