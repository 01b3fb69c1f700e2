"""A loopback stand-in of amoCRM's REST API v4, as its documentation describes it.

What it serves (each needs ``Authorization: Bearer <token>``; without it, or with
another token, or once `revoke()` was called, a 401 ``application/problem+json``):

- ``POST /api/v4/calls``: a batch of calls.  Each is attached to the contact
  whose phone matches (the last ten digits compared), answered in
  ``_embedded.calls`` (``id``, ``entity_id``, ``entity_type``, ``account_id``,
  ``request_id``); a call whose phone no contact has is not added and is answered
  in ``_embedded.errors`` (``request_id``, ``title``, ``detail``, ``status``).
  ``uniq`` does not de-duplicate: a call posted twice is added twice (the docs
  promise nothing else), so a client must not post it twice.  A call without
  ``direction``, ``duration``, ``source`` or ``phone``, or with a ``call_status``
  off amoCRM's list (1-8), is a 400 with ``validation-errors``.
- ``POST /api/v4/contacts``: contacts (``name``, ``responsible_user_id``,
  ``custom_fields_values`` with the ``PHONE`` field); answers their ids.
- ``GET /api/v4/contacts?query=``: contacts whose phone or name holds the query;
  204 No Content when none.
- ``POST /api/v4/leads/unsorted/sip``: incoming leads of calls; answers
  ``_embedded.unsorted`` with each ``uid`` and the lead and contact made.
- ``GET /api/v4/account``: the account (``id``, ``name``, ``subdomain``,
  ``current_user_id``, ``country``, ...), ``account_name`` and ``subdomain`` as set.

amoCRM allows 7 requests a second per integration: more within ``window``
seconds (of ``clock``: ``time.monotonic`` unless given) answer 429, and after
``block_after`` refused ones in a row, 403 (the address blocked) until
`unblock()`.  ``down`` answers 503 to everything; ``scripted`` answers (status,
body, headers) come first, one a request, for garbage and odd answers.  Every
request served (past the token, the limit and the switches) is kept in
``requests``, in order.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

ACCOUNT_ID = 28805383
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY = web.RequestKey("body", object)  # the request's JSON, read once by the gate
CALL_STATUSES = range(1, 9)


@dataclass
class Contact:
    id: int
    name: str
    phones: list[str]
    responsible_user_id: int

    def json(self) -> dict[str, Any]:
        values = [{"value": phone, "enum_code": "WORK"} for phone in self.phones]
        return {
            "id": self.id,
            "name": self.name,
            "responsible_user_id": self.responsible_user_id,
            "account_id": ACCOUNT_ID,
            "custom_fields_values": [
                {"field_id": 1, "field_name": "Phone", "field_code": "PHONE", "values": values}
            ],
            "_links": {"self": {"href": f"/api/v4/contacts/{self.id}"}},
        }


@dataclass(frozen=True)
class Seen:
    """One request served: method, path, query and JSON body (None for none)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class Scripted:
    status: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)


class AmoCrmStandIn:
    """The stand-in (see the module doc); ``base_url`` once started."""

    def __init__(
        self,
        token: str,
        *,
        rate_limit: int = 7,
        window: float = 1.0,
        block_after: int = 20,
        default_user: int = 9000001,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.rate_limit = rate_limit
        self.window = window
        self.clock = clock
        self.block_after = block_after
        self.default_user = default_user  # responsible for contacts made without one
        self.base_url = ""
        self.account_name = "Example"
        self.subdomain = "example"
        self.down = False
        self.scripted: list[Scripted] = []
        self.requests: list[Seen] = []
        self.contacts: list[Contact] = []
        self.calls: list[dict[str, Any]] = []
        self.unsorted: list[dict[str, Any]] = []
        self.refused = 0  # 429s answered
        self.down_answers = 0  # 503s answered while down
        self.changed = asyncio.Event()  # set after each request answered (tests wait on it)
        self._revoked = False
        self._blocked = False
        self._excess = 0
        self._recent: deque[float] = deque()
        self._next_id = 1000
        self._runner: web.AppRunner | None = None

    # -- the test's side -------------------------------------------------------------

    def add_contact(self, name: str, phone: str, responsible_user_id: int) -> Contact:
        contact = Contact(self._new_id(), name, [phone], responsible_user_id)
        self.contacts.append(contact)
        return contact

    def revoke(self) -> None:
        """The token is revoked: every request answers 401 from now on."""
        self._revoked = True

    def unblock(self) -> None:
        self._blocked, self._excess = False, 0

    def served(self, method: str, path: str) -> list[Seen]:
        return [seen for seen in self.requests if (seen.method, seen.path) == (method, path)]

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/api/v4/calls", self._add_calls)
        app.router.add_post("/api/v4/contacts", self._add_contacts)
        app.router.add_get("/api/v4/contacts", self._find_contacts)
        app.router.add_post("/api/v4/leads/unsorted/sip", self._add_unsorted)
        app.router.add_get("/api/v4/account", self._account)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- what every request passes -----------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await self._pass(request, handler)
        finally:
            self.changed.set()

    async def _pass(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}" or self._revoked:
            return problem(401, "Unauthorized", "Token is invalid or expired")
        if self.down:
            self.down_answers += 1
            return problem(503, "Service Unavailable", "Try again later")
        if self._blocked:
            return problem(403, "Forbidden", "Access blocked for too many requests")
        if self._over_limit():
            return self._too_many()
        self._excess = 0
        if self.scripted:
            answer = self.scripted.pop(0)
            return web.Response(status=answer.status, text=answer.text, headers=answer.headers)
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return problem(400, "Bad Request", "Request body is not JSON")
        self.requests.append(Seen(request.method, request.path, dict(request.query), body))
        request[BODY] = body
        return await handler(request)

    def _over_limit(self) -> bool:
        now = self.clock()
        while self._recent and now - self._recent[0] >= self.window:
            self._recent.popleft()
        if len(self._recent) >= self.rate_limit:
            return True
        self._recent.append(now)
        return False

    def _too_many(self) -> web.Response:
        self.refused += 1
        self._excess += 1
        if self._excess >= self.block_after:
            self._blocked = True
        return problem(429, "Too Many Requests", "Too many requests")

    # -- the methods ---------------------------------------------------------------------

    async def _add_calls(self, request: web.Request) -> web.Response:
        calls = request[BODY]
        if not isinstance(calls, list) or not calls:
            return validation_failed([{"request_id": "0", "errors": [bad("", "NotArray")]}])
        problems = [_call_problems(str(index), call) for index, call in enumerate(calls)]
        if any(item["errors"] for item in problems):
            return validation_failed([item for item in problems if item["errors"]])
        added, errors = [], []
        for index, call in enumerate(calls):
            request_id = str(call.get("request_id", index))
            contact = self._contact_with(str(call["phone"]))
            if contact is None:
                errors.append(
                    {
                        "request_id": request_id,
                        "title": "Entity not found",
                        "detail": "No entity found with this phone",
                        "status": 404,
                    }
                )
                continue
            stored = {**call, "id": self._new_id(), "entity_id": contact.id}
            self.calls.append({**stored, "entity_type": "contact"})
            added.append(
                {
                    "id": stored["id"],
                    "entity_id": contact.id,
                    "entity_type": "contact",
                    "account_id": ACCOUNT_ID,
                    "request_id": request_id,
                    "_embedded": {"entity": {"id": contact.id}},
                }
            )
        embedded = {"calls": added, "errors": errors}
        return web.json_response({"_total_items": len(added), "_embedded": embedded})

    async def _add_contacts(self, request: web.Request) -> web.Response:
        contacts = request[BODY]
        if not isinstance(contacts, list) or not contacts:
            return validation_failed([{"request_id": "0", "errors": [bad("", "NotArray")]}])
        made = []
        for index, data in enumerate(contacts):
            contact = self._made_contact(data)
            if contact is None:
                return validation_failed([{"request_id": str(index), "errors": [bad("name")]}])
            self.contacts.append(contact)
            made.append({"id": contact.id, "request_id": str(data.get("request_id", index))})
        return web.json_response({"_embedded": {"contacts": made}})

    async def _find_contacts(self, request: web.Request) -> web.Response:
        query = request.query.get("query", "").strip().lower()
        found = [contact for contact in self.contacts if query and _matches(contact, query)]
        if not found:
            return web.Response(status=204)
        contacts = [contact.json() for contact in found]
        return web.json_response({"_page": 1, "_embedded": {"contacts": contacts}})

    async def _add_unsorted(self, request: web.Request) -> web.Response:
        entries = request[BODY]
        if not isinstance(entries, list) or not entries:
            return validation_failed([{"request_id": "0", "errors": [bad("", "NotArray")]}])
        answered = []
        for index, entry in enumerate(entries):
            errors = _unsorted_problems(entry)
            if errors:
                return validation_failed([{"request_id": str(index), "errors": errors}])
            uid = uuid.uuid4().hex
            lead_id = self._new_id()
            contacts = entry.get("_embedded", {}).get("contacts", [])
            contact_ids = [{"id": self._new_id()} for _ in contacts]
            self.unsorted.append({**entry, "uid": uid, "lead_id": lead_id})
            answered.append(
                {
                    "uid": uid,
                    "account_id": ACCOUNT_ID,
                    "request_id": str(entry.get("request_id", index)),
                    "_embedded": {"leads": [{"id": lead_id}], "contacts": contact_ids},
                }
            )
        return web.json_response(
            {"_total_items": len(answered), "_embedded": {"unsorted": answered}}
        )

    async def _account(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "id": ACCOUNT_ID,
                "name": self.account_name,
                "subdomain": self.subdomain,
                "created_at": 1585840134,
                "created_by": 0,
                "updated_at": 1589472711,
                "updated_by": 0,
                "current_user_id": self.default_user,
                "country": "RU",
                "customers_mode": "disabled",
                "is_unsorted_on": True,
                "is_loss_reason_enabled": True,
                "is_helpbot_enabled": False,
                "is_technical_account": False,
                "contact_name_display_order": 1,
                "_links": {"self": {"href": f"{self.base_url}/api/v4/account"}},
            }
        )

    # -- the account's data --------------------------------------------------------------

    def _contact_with(self, phone: str) -> Contact | None:
        wanted = re.sub(r"\D", "", phone)[-10:]
        for contact in self.contacts:
            if wanted and any(re.sub(r"\D", "", p)[-10:] == wanted for p in contact.phones):
                return contact
        return None

    def _made_contact(self, data: Any) -> Contact | None:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        phones = [
            str(value.get("value"))
            for item in data.get("custom_fields_values") or []
            if isinstance(item, dict) and item.get("field_code") == "PHONE"
            for value in item.get("values") or []
            if isinstance(value, dict)
        ]
        user = data.get("responsible_user_id", self.default_user)
        return Contact(self._new_id(), data["name"], phones, user)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id


def _matches(contact: Contact, query: str) -> bool:
    """A contact found by ``query``: in its name, or the digits of one of its phones
    (the last ten digits alike, as a number with another trunk prefix)."""
    digits = re.sub(r"\D", "", query)
    phones = [re.sub(r"\D", "", phone) for phone in contact.phones]
    by_phone = bool(digits) and any(
        digits in phone or (len(digits) >= 10 and phone[-10:] == digits[-10:]) for phone in phones
    )
    return by_phone or query in contact.name.lower()


def problem(status: int, title: str, detail: str, **more: Any) -> web.Response:
    """An amoCRM error answer (``application/problem+json``)."""
    body = {"title": title, "type": f"https://httpstatus.es/{status}", "status": status}
    return web.Response(
        status=status,
        text=json.dumps({**body, "detail": detail, **more}),
        content_type="application/problem+json",
    )


def validation_failed(errors: list[dict[str, Any]]) -> web.Response:
    return problem(400, "Bad Request", "Request validation failed", **{"validation-errors": errors})


def bad(path: str, code: str = "NotSupportedChoice") -> dict[str, str]:
    return {"code": code, "path": path, "detail": "This value is not valid."}


def _call_problems(request_id: str, call: Any) -> dict[str, Any]:
    if not isinstance(call, dict):
        return {"request_id": request_id, "errors": [bad("", "NotObject")]}
    errors = []
    if call.get("direction") not in ("inbound", "outbound"):
        errors.append(bad("direction"))
    if not isinstance(call.get("duration"), int) or call["duration"] < 0:
        errors.append(bad("duration"))
    for name in ("source", "phone"):
        if not isinstance(call.get(name), str) or not call[name]:
            errors.append(bad(name, "NotBlank"))
    if "call_status" in call and call["call_status"] not in CALL_STATUSES:
        errors.append(bad("call_status"))
    return {"request_id": request_id, "errors": errors}


def _unsorted_problems(entry: Any) -> list[dict[str, str]]:
    if not isinstance(entry, dict):
        return [bad("", "NotObject")]
    errors = [
        bad(name, "NotBlank") for name in ("source_uid", "source_name") if not entry.get(name)
    ]
    metadata = entry.get("metadata")
    if not isinstance(metadata, dict):
        return [*errors, bad("metadata", "NotBlank")]
    for name in ("from", "phone", "called_at", "duration", "service_code", "uniq"):
        if metadata.get(name) in (None, ""):
            errors.append(bad(f"metadata.{name}", "NotBlank"))
    return errors
