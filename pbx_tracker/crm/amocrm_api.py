"""`AmoCrmApi`: the few methods of amoCRM's REST API v4 the amoCRM platform uses.

Every request goes to the account's ``base_url`` with ``Authorization: Bearer
<long-lived token>``; an answer is turned into Python values only after its
shape was checked, so an account answering garbage becomes a `PlatformError`,
never a KeyError.  amoCRM answers its errors as ``application/problem+json``
(``{"title", "type", "status", "detail"}``; a 400 adds ``validation-errors``):

- 401 (the token was revoked or ran out), 402 (the account is not paid for),
  403 (the account or our address is blocked), 5xx, a network failure or a
  timeout: the platform is *down* until an event goes through;
- 429 (more than 7 requests a second from one integration): the target waits the
  answer's ``Retry-After`` seconds, else one second;
- 400 (amoCRM refused the content itself): *permanent*, trying again cannot help.

The token never reaches a reason or a log line, whole or in part: reasons are
built from statuses and amoCRM's own titles, and scrubbed of it besides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from pbx_tracker.crm.platform import PlatformError
from pbx_tracker.crm.settings import AmoCrmSettings

__all__ = ["Account", "AddedCall", "AmoCrmApi", "UnsortedLead"]

log = structlog.get_logger(__name__)

USER_AGENT = "pbx-tracker"
RATE_LIMIT_WAIT = 1.0  # seconds: amoCRM counts requests per second
_MAX_REASON = 200


@dataclass(frozen=True, slots=True)
class Account:
    """The amoCRM account the token opens: its id, name and subdomain."""

    id: int
    name: str
    subdomain: str


@dataclass(frozen=True, slots=True)
class AddedCall:
    """A call amoCRM took: its id, and the card (contact, company, lead) it landed on."""

    id: int
    entity_id: int | None
    entity_type: str | None


@dataclass(frozen=True, slots=True)
class UnsortedLead:
    """An incoming lead amoCRM put in Unsorted for a call: its uid and the lead's id."""

    uid: str
    lead_id: int | None


class AmoCrmApi:
    """A client of one amoCRM account; opens its HTTP session on first use."""

    def __init__(self, settings: AmoCrmSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def add_call(self, call: Mapping[str, Any]) -> AddedCall | None:
        """``POST /api/v4/calls`` with one call (``request_id`` "0"): the call added, or
        None when amoCRM found no card with its phone (an error for it in ``_embedded``)."""
        body = await self._request("POST", "api/v4/calls", body=[{**call, "request_id": "0"}])
        embedded = _embedded(body)
        for item in _dicts(embedded.get("calls", []), "calls"):
            if str(item.get("request_id", "0")) == "0":
                return _added_call(item)
        errors = _dicts(embedded.get("errors", []), "errors")
        if errors:
            log.info("crm.amocrm_call_not_attached", problem=_error_text(errors[0]))
            return None
        raise PlatformError("amoCRM answered neither the call nor an error for it")

    async def add_contact(self, contact: Mapping[str, Any]) -> int:
        """``POST /api/v4/contacts`` with one contact: the new contact's id."""
        body = await self._request("POST", "api/v4/contacts", body=[dict(contact)])
        contacts = _dicts(_embedded(body).get("contacts"), "contacts")
        if not contacts:
            raise PlatformError("amoCRM answered no contact for the one added")
        return _id(contacts[0].get("id"), "contact id")

    async def add_unsorted_call(self, entry: Mapping[str, Any]) -> UnsortedLead:
        """``POST /api/v4/leads/unsorted/sip`` with one call: the incoming lead made."""
        body = await self._request("POST", "api/v4/leads/unsorted/sip", body=[dict(entry)])
        unsorted = _dicts(_embedded(body).get("unsorted"), "unsorted")
        if not unsorted or not isinstance(unsorted[0].get("uid"), str) or not unsorted[0]["uid"]:
            raise PlatformError("amoCRM answered no uid for the incoming lead")
        inner = unsorted[0].get("_embedded", {})
        leads = _dicts(inner.get("leads", []), "leads") if isinstance(inner, dict) else []
        lead_id = _id(leads[0].get("id"), "lead id") if leads else None
        return UnsortedLead(uid=unsorted[0]["uid"], lead_id=lead_id)

    async def find_contacts(self, query: str) -> list[dict[str, Any]]:
        """``GET /api/v4/contacts?query=...``: the contacts found (none: amoCRM's 204)."""
        body = await self._request("GET", "api/v4/contacts", params={"query": query})
        if body is None:
            return []
        return _dicts(_embedded(body).get("contacts", []), "contacts")

    async def account(self) -> Account:
        """``GET /api/v4/account``: the account the token opens (a working token's proof)."""
        body = await self._request("GET", "api/v4/account")
        if not isinstance(body, dict):
            raise PlatformError("amoCRM answered no account", status=200)
        name, subdomain = body.get("name"), body.get("subdomain")
        if not isinstance(name, str) or not isinstance(subdomain, str) or not subdomain:
            raise PlatformError(
                "amoCRM answered an account without its name or subdomain", status=200
            )
        return Account(id=_id(body.get("id"), "account id"), name=name, subdomain=subdomain)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """One request: the JSON answer (None for 204), or PlatformError (module doc)."""
        timeout = self._settings.timeout
        try:
            async with self._client().request(
                method,
                self._settings.base_url + path,
                json=body,
                params=params,
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,  # the token goes to the account, nowhere else
            ) as response:
                return await self._answer(response, path)
        except TimeoutError:
            raise PlatformError(f"amoCRM {path}: no answer within {timeout:g} s") from None
        except aiohttp.ClientError as error:
            reason = self._scrub(_short(str(error)) or type(error).__name__)
            raise PlatformError(f"amoCRM {path}: {reason}") from None

    async def _answer(self, response: aiohttp.ClientResponse, path: str) -> Any:
        status = response.status
        if status == 204:
            return None
        text = await response.text(errors="replace")
        if 200 <= status < 300:
            try:
                return json.loads(text)
            except ValueError:
                reason = f"amoCRM {path}: HTTP {status} with no JSON"
                raise PlatformError(reason, status=status) from None
        reason = self._scrub(f"amoCRM {path}: HTTP {status} {_problem(text)}".strip())
        if status == 429:
            wait = _retry_after(response.headers)
            raise PlatformError(reason, retry_after=wait, down=False, status=status)
        if status == 400:
            raise PlatformError(reason, permanent=True, down=False, status=status)
        # 401, 402, 403, 5xx; a redirect: the address is wrong
        raise PlatformError(reason, status=status)

    def _headers(self) -> dict[str, str]:
        token = self._settings.token_file.get_secret_value()
        return {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _scrub(self, text: str) -> str:
        """``text`` without the token (a backstop: amoCRM should never echo it)."""
        for secret in self._settings.secret_values():
            if secret:
                text = text.replace(secret, "***")
        return text


def _embedded(body: Any) -> dict[str, Any]:
    """The answer's ``_embedded`` object; PlatformError when the answer has none."""
    embedded = body.get("_embedded") if isinstance(body, dict) else None
    if not isinstance(embedded, dict):
        raise PlatformError("amoCRM answered without _embedded")
    return embedded


def _dicts(value: Any, name: str) -> list[dict[str, Any]]:
    """``value`` as a list of JSON objects; PlatformError when it is anything else."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise PlatformError(f"amoCRM answered a malformed {name} list")
    return value


def _id(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlatformError(f"amoCRM answered a malformed {name}")
    return value


def _optional_id(value: Any, name: str) -> int | None:
    return None if value is None else _id(value, name)


def _added_call(item: dict[str, Any]) -> AddedCall:
    kind = item.get("entity_type")
    return AddedCall(
        id=_id(item.get("id"), "call id"),
        entity_id=_optional_id(item.get("entity_id"), "entity id"),
        entity_type=kind if isinstance(kind, str) else None,
    )


def _error_text(error: dict[str, Any]) -> str:
    parts = (error.get(key) for key in ("title", "detail", "status", "code"))
    return _short(" ".join(str(part) for part in parts if part is not None)) or "no detail"


def _problem(text: str) -> str:
    """amoCRM's ``title`` and ``detail`` of a problem+json answer, short; else nothing."""
    try:
        problem = json.loads(text)
    except ValueError:
        return ""
    if not isinstance(problem, dict):
        return ""
    found = [problem.get(key) for key in ("title", "detail")]
    return _short(": ".join(str(part) for part in found if isinstance(part, str) and part))


def _retry_after(headers: Mapping[str, str]) -> float:
    """``Retry-After`` in seconds when it is a sane number of them, else one second."""
    try:
        seconds = float(headers.get("Retry-After", ""))
    except ValueError:
        return RATE_LIMIT_WAIT
    return seconds if math.isfinite(seconds) and seconds >= 0 else RATE_LIMIT_WAIT


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"
