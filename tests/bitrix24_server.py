"""A Bitrix24 portal's REST on loopback, behind an incoming webhook, as its documentation
describes it (apidocs.bitrix24.com: telephony.externalCall.*, crm.*.update, error codes,
limits).

``async with serving() as portal:`` starts it on 127.0.0.1 and a port the system picks;
``portal.webhook_url`` is the webhook (``http://127.0.0.1:<port>/rest/1/<code>/``).
A method is ``POST /rest/<user>/<code>/<method>[.json]`` with a JSON body or a form
(PHP's ``fields[UTM_SOURCE]=..``, ``USER_ID[]=..``); method names are
case-insensitive, as on a real portal.  Answers are ``{"result": ..., "time":
{...}}``; errors ``{"error": CODE, "error_description": ...}`` with the documented
HTTP status:

- a wrong user or code: 401 ``INVALID_CREDENTIALS`` (``auth_error`` sets another
  code, e.g. ``NO_AUTH_FOUND`` as older portals answer);
- more than the leaky bucket lets through (``burst`` requests, draining ``rate`` a
  second; 50 and 2 by default, the plans below Enterprise): 503
  ``QUERY_LIMIT_EXCEEDED``;
- an unknown method: 404 ``ERROR_METHOD_NOT_FOUND``;
- ``scope``: the webhook's scopes (``scopes``, ``crm`` and ``telephony`` unless a test
  chooses others), ``full=true`` every scope of the portal; a ``telephony.*`` or
  ``crm.*`` method of a webhook without that scope: 401 ``insufficient_scope``;
- a method's own errors: 400 ``ERROR_CORE`` / ``INVALID_ARGUMENT`` / an empty code,
  with the documented descriptions.

The telephony methods keep calls: ``register`` finds the caller among the CRM's
contacts and leads (`add_contact`, `add_lead`) or, with ``CRM_CREATE=1``, makes a
lead; registering the same call again within 30 minutes, unfinished, gives the same
CALL_ID; ``finish`` of an unknown or finished call is ``Call is not found``;
``attachRecord`` wants a finished call and a wav or mp3 in ``FILE_CONTENT``.

For tests: ``requests`` holds every accepted method call (method in lower case,
params, monotonic time) in order and ``changed`` is set after each; ``down = True``
answers 503 pages, `refuse()` / `resume()` stop and restart listening; ``script``
holds raw answers ``(status, body)`` given, in turn, to the next requests instead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

USER = "1"
CODE = "w3bh00kc0de42xyz"
REGISTRATION_KEPT = 30 * 60.0  # seconds a repeated register gives the same CALL_ID
# a few of the scopes a portal offers (apidocs: "Method scopes")
PORTAL_SCOPES = ("crm", "telephony", "user", "department", "im", "task", "disk", "calendar")


@dataclass(frozen=True)
class Accepted:
    """One method call the portal took (past auth and the rate limit)."""

    method: str
    params: dict[str, Any]
    at: float


@dataclass
class PortalCall:
    """A registered external call."""

    call_id: str
    params: dict[str, Any]
    registered_at: float
    entity: tuple[str, int] | None
    shown: list[int] = field(default_factory=list)
    hidden: list[int] = field(default_factory=list)
    finish: dict[str, Any] | None = None
    records: list[tuple[str, bytes]] = field(default_factory=list)


class MethodError(Exception):
    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.code, self.description, self.status = code, description, status


class Bitrix24Portal:
    """The portal's state and its request handler (see the module doc)."""

    def __init__(
        self,
        *,
        rate: float = 2.0,
        burst: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.user, self.code = USER, CODE
        self.rate, self.burst, self.clock = rate, burst, clock
        self.auth_error = "INVALID_CREDENTIALS"
        self.scopes: list[str] = ["crm", "telephony"]  # ticked in the webhook's settings
        self.port = 0
        self.down = False
        self.script: list[tuple[int, bytes | str]] = []
        self.requests: list[Accepted] = []
        self.refused: list[tuple[str, str]] = []  # (method, error code) of each refusal
        self.changed = asyncio.Event()
        self.calls: dict[str, PortalCall] = {}
        self.entities: dict[tuple[str, int], dict[str, Any]] = {}
        self._bucket, self._drained_at = 0.0, clock()
        self._next_id = 100
        self._runner: web.AppRunner | None = None

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/rest/{self.user}/{self.code}/"

    def methods(self) -> list[str]:
        """The accepted methods, in order."""
        return [accepted.method for accepted in self.requests]

    def add_contact(self, phone: str, assigned_by: int, name: str = "Client") -> int:
        return self._add("CONTACT", {"NAME": name, "PHONE": [_phone(phone)]}, assigned_by)

    def add_lead(self, phone: str, assigned_by: int, title: str = "Lead") -> int:
        return self._add("LEAD", {"TITLE": title, "PHONE": [_phone(phone)]}, assigned_by)

    def add_deal(self, assigned_by: int, title: str = "Deal") -> int:
        return self._add("DEAL", {"TITLE": title}, assigned_by)

    # -- serving -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/rest/{user}/{code}/{method}", self.handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def refuse(self) -> None:
        """Stop listening: connections are refused until `resume()`."""
        await self.stop()

    async def resume(self) -> None:
        """Listen again on the same port."""
        await self.start()

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503, text="<html>503 Service Unavailable</html>")
        if self.script:
            status, body = self.script.pop(0)
            return web.Response(status=status, body=body, content_type="application/json")
        method = request.match_info["method"].lower().removesuffix(".json")
        user, code = request.match_info["user"], request.match_info["code"]
        if (user, code) != (self.user, self.code):
            description = (
                "Wrong authorization data"
                if self.auth_error == "NO_AUTH_FOUND"
                else ("Invalid request credentials")
            )
            return self._refuse(method, MethodError(self.auth_error, description, 401))
        if not self._take_token():
            return self._refuse(
                method, MethodError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)
            )
        params = await _params(request)
        handler = _METHODS.get(method)
        if handler is None:
            return self._refuse(
                method, MethodError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
            )
        scope = method.split(".", 1)[0] if "." in method else None
        if scope in PORTAL_SCOPES and scope not in self.scopes:
            return self._refuse(
                method,
                MethodError(
                    "insufficient_scope",
                    "The request requires higher privileges than provided by the webhook token",
                    401,
                ),
            )
        self.requests.append(Accepted(method, params, self.clock()))
        try:
            result = handler(self, params)
        except MethodError as error:
            return self._refuse(method, error)
        finally:
            self.changed.set()
        return web.json_response({"result": result, "time": _timing()})

    def _refuse(self, method: str, error: MethodError) -> web.Response:
        self.refused.append((method, error.code))
        self.changed.set()
        body = {"error": error.code, "error_description": error.description}
        return web.json_response(body, status=error.status)

    def _take_token(self) -> bool:
        """The leaky bucket: ``burst`` requests at once, draining ``rate`` a second."""
        now = self.clock()
        self._bucket = max(0.0, self._bucket - (now - self._drained_at) * self.rate)
        self._drained_at = now
        if self._bucket + 1 > self.burst:
            return False
        self._bucket += 1
        return True

    # -- the CRM -------------------------------------------------------------------------

    def _add(self, kind: str, fields: dict[str, Any], assigned_by: int) -> int:
        self._next_id += 1
        self.entities[(kind, self._next_id)] = {**fields, "ASSIGNED_BY_ID": assigned_by}
        return self._next_id

    def find_by_phone(self, phone: str) -> list[tuple[str, int]]:
        """Entities with this phone: contacts first, then leads (the portal's priority)."""
        digits = _digits(phone)
        found = [
            key
            for key, fields in self.entities.items()
            if digits
            and any(_digits(p.get("VALUE", "")) == digits for p in fields.get("PHONE", []))
        ]
        order = {"CONTACT": 0, "COMPANY": 1, "LEAD": 2}
        return sorted(found, key=lambda key: (order.get(key[0], 3), key[1]))

    def call(self, call_id: str) -> PortalCall:
        return self.calls[call_id]


# -- the methods ---------------------------------------------------------------------------


def _register(portal: Bitrix24Portal, params: dict[str, Any]) -> dict[str, Any]:
    user = _user_of(params)
    phone = str(params.get("PHONE_NUMBER") or "")
    if not _digits(phone):
        raise MethodError("ERROR_CORE", "Unsupported phone number format.")
    if _int(params.get("TYPE")) not in (1, 2, 3, 4, 5):
        raise MethodError("ERROR_CORE", "Unknown TYPE")
    start = params.get("CALL_START_DATE")
    if start is not None and _iso(start) is None:
        raise MethodError("ERROR_CORE", "CALL_START_DATE should be in the ISO-8601 format.")
    same = _same_registration(portal, params, user)
    if same is not None:
        return _registration(portal, same, created=None)
    entity, created = _entity_for(portal, phone, params, user)
    call_id = f"externalCall.{hashlib.md5(repr(params).encode()).hexdigest()}.{int(time.time())}"
    call_id += f".{len(portal.calls)}"
    call = PortalCall(call_id, params, portal.clock(), entity)
    if _int(params.get("SHOW"), 1) == 1 and _int(params.get("USER_ID")):
        call.shown.append(_int(params.get("USER_ID")) or 0)
    portal.calls[call_id] = call
    return _registration(portal, call, created=created)


def _same_registration(
    portal: Bitrix24Portal, params: dict[str, Any], user: tuple[int | None, str | None]
) -> PortalCall | None:
    keys = ("PHONE_NUMBER", "TYPE", "LINE_NUMBER", "EXTERNAL_CALL_ID")
    for call in portal.calls.values():
        fresh = portal.clock() - call.registered_at < REGISTRATION_KEPT
        alike = all(str(call.params.get(k)) == str(params.get(k)) for k in keys)
        if fresh and alike and call.finish is None and _user_of(call.params) == user:
            return call
    return None


def _entity_for(
    portal: Bitrix24Portal, phone: str, params: dict[str, Any], user: tuple[int | None, str | None]
) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    """(the call's CRM entity, the lead made for it or None)."""
    found = portal.find_by_phone(phone)
    if found:
        return found[0], None
    if _int(params.get("CRM_CREATE"), 0) != 1:
        return None, None
    lead = portal.add_lead(phone, user[0] or 1, title=f"{phone} - incoming call")
    return ("LEAD", lead), ("LEAD", lead)


def _registration(
    portal: Bitrix24Portal, call: PortalCall, created: tuple[str, int] | None
) -> dict[str, Any]:
    kind, number = call.entity if call.entity else (None, None)
    return {
        "CALL_ID": call.call_id,
        "CRM_CREATED_LEAD": created[1] if created else None,
        "CRM_CREATED_ENTITIES": (
            [{"ENTITY_TYPE": created[0], "ENTITY_ID": created[1]}] if created else []
        ),
        "CRM_ENTITY_TYPE": kind,
        "CRM_ENTITY_ID": number,
    }


def _show(portal: Bitrix24Portal, params: dict[str, Any]) -> bool:
    call = portal.calls.get(str(params.get("CALL_ID")))
    if call is None or call.finish is not None:
        return False
    call.shown += _users(params.get("USER_ID"), call)
    return True


def _hide(portal: Bitrix24Portal, params: dict[str, Any]) -> bool:
    call = portal.calls.get(str(params.get("CALL_ID")))
    if call is None or call.finish is not None:
        return False
    call.hidden += _users(params.get("USER_ID"), call)
    return True


def _finish(portal: Bitrix24Portal, params: dict[str, Any]) -> dict[str, Any]:
    call_id = params.get("CALL_ID")
    if not isinstance(call_id, str):
        raise MethodError("INVALID_ARGUMENT", "CALL_ID must be a string")
    user, _ = _user_of(params)
    call = portal.calls.get(call_id)
    if call is None or call.finish is not None:
        raise MethodError(
            "ERROR_CORE", "Call is not found (call should be registered prior to finishing)"
        )
    call.finish = params
    duration = _int(params.get("DURATION"), 0) or 0
    code = str(params.get("STATUS_CODE") or ("200" if duration > 0 else "304"))
    kind, number = call.entity if call.entity else (None, None)
    return {
        "CALL_ID": call.call_id,
        "EXTERNAL_CALL_ID": call.params.get("EXTERNAL_CALL_ID"),
        "PORTAL_USER_ID": user,
        "PHONE_NUMBER": call.params.get("PHONE_NUMBER"),
        "PORTAL_NUMBER": call.params.get("LINE_NUMBER") or "",
        "INCOMING": str(call.params.get("TYPE")),
        "CALL_DURATION": duration,
        "CALL_START_DATE": {},
        "CALL_STATUS": 1 if code == "200" else 0,
        "CALL_VOTE": None,
        "COST": 0,
        "COST_CURRENCY": "",
        "CALL_FAILED_CODE": code,
        "CALL_FAILED_REASON": str(params.get("FAILED_REASON") or ""),
        "REST_APP_ID": None,
        "REST_APP_NAME": None,
        "CRM_ACTIVITY_ID": 7000 + len(portal.calls),
        "COMMENT": None,
        "CRM_ENTITY_TYPE": kind,
        "CRM_ENTITY_ID": number,
        "ID": len([c for c in portal.calls.values() if c.finish is not None]),
    }


def _attach_record(portal: Bitrix24Portal, params: dict[str, Any]) -> dict[str, Any]:
    filename, content = params.get("FILENAME"), params.get("FILE_CONTENT")
    if not filename and not params.get("RECORD_URL"):
        raise MethodError(
            "",
            "Required parameters are not set. "
            "Request should contain either URL or FILENAME parameter",
        )
    call = portal.calls.get(str(params.get("CALL_ID")))
    if call is None or call.finish is None:
        raise MethodError(
            "", "Call is not found in the statistic table. It looks like it is not finished yet."
        )
    name = str(filename or "")
    if not name.lower().endswith((".wav", ".mp3")):
        raise MethodError("ERROR_CORE", "Wrong file extension. Only wav and mp3 are allowed")
    if content is None:
        return {"uploadUrl": f"{portal.webhook_url}upload.json", "fieldName": "file"}
    try:
        data = base64.b64decode(str(content), validate=True)
    except (binascii.Error, ValueError):
        raise MethodError(
            "ERROR_CORE", "File content is not properly encoded. Base64 encoding is expected."
        ) from None
    if not data:
        raise MethodError("ERROR_CORE", "File content is empty.")
    call.records.append((name, data))
    return {"FILE_ID": 9000 + sum(len(c.records) for c in portal.calls.values())}


def _search(portal: Bitrix24Portal, params: dict[str, Any]) -> list[dict[str, Any]]:
    phone = str(params.get("PHONE_NUMBER") or "")
    if not phone:
        raise MethodError("ERROR_CORE", "PHONE_NUMBER is empty")
    found = []
    for kind, number in portal.find_by_phone(phone):
        fields = portal.entities[(kind, number)]
        assigned = fields["ASSIGNED_BY_ID"]
        found.append(
            {
                "CRM_ENTITY_TYPE": kind,
                "CRM_ENTITY_ID": number,
                "ASSIGNED_BY_ID": assigned,
                "NAME": fields.get("NAME") or fields.get("TITLE"),
                "ASSIGNED_BY": {
                    "ID": str(assigned),
                    "TIMEMAN_STATUS": "OPENED",
                    "USER_PHONE_INNER": None,
                    "WORK_PHONE": None,
                    "PERSONAL_PHONE": None,
                    "PERSONAL_MOBILE": None,
                },
            }
        )
    return found


def _updater(kind: str) -> Callable[[Bitrix24Portal, dict[str, Any]], bool]:
    def update(portal: Bitrix24Portal, params: dict[str, Any]) -> bool:
        number = _int(params.get("id") if "id" in params else params.get("ID"))
        if number is None or number <= 0:
            raise MethodError("", "ID is not defined or invalid.")
        entity = portal.entities.get((kind, number))
        if entity is None:
            raise MethodError("", "Not found")
        fields = params.get("fields") or params.get("FIELDS") or {}
        if not isinstance(fields, dict):
            raise MethodError("", "Parameter 'fields' must be array.")
        entity.update(fields)
        return True

    return update


def _scope(portal: Bitrix24Portal, params: dict[str, Any]) -> list[str]:
    """The webhook's scopes; with ``full=true`` every scope of the portal."""
    if str(params.get("full", "")).lower() in ("true", "1", "y"):
        return list(PORTAL_SCOPES)
    return list(portal.scopes)


_METHODS: dict[str, Callable[[Bitrix24Portal, dict[str, Any]], Any]] = {
    "scope": _scope,
    "telephony.externalcall.register": _register,
    "telephony.externalcall.show": _show,
    "telephony.externalcall.hide": _hide,
    "telephony.externalcall.finish": _finish,
    "telephony.externalcall.attachrecord": _attach_record,
    "telephony.externalcall.searchcrmentities": _search,
    "crm.lead.update": _updater("LEAD"),
    "crm.deal.update": _updater("DEAL"),
    "crm.contact.update": _updater("CONTACT"),
}


# -- reading requests -------------------------------------------------------------------------


async def _params(request: web.Request) -> dict[str, Any]:
    """The method's parameters: a JSON object, or a PHP-style form / query string."""
    raw = await request.read()
    if request.content_type == "application/json":
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise web.HTTPBadRequest(text="bad JSON") from None
        return data if isinstance(data, dict) else {}
    pairs = parse_qsl(request.query_string, keep_blank_values=True)
    pairs += parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return _php_form(pairs)


def _php_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``a[b]=1&c[]=2&c[]=3`` -> ``{"a": {"b": "1"}, "c": ["2", "3"]}``, as PHP reads it."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        name, _, rest = key.partition("[")
        parts = [name] + [p.rstrip("]") for p in rest.split("[")] if rest else [name]
        node: Any = data
        for part, following in zip(parts, [*parts[1:], None], strict=True):
            if following is None:
                _put(node, part, value)
            else:
                node = _child(node, part, following == "")
    return data


def _child(node: Any, part: str, is_list: bool) -> Any:
    empty: Any = [] if is_list else {}
    if isinstance(node, list):
        node.append(empty)
        return empty
    return node.setdefault(part, empty)


def _put(node: Any, part: str, value: str) -> None:
    if isinstance(node, list):
        node.append(value)
    else:
        node[part] = value


# -- small readers ------------------------------------------------------------------------------


def _user_of(params: dict[str, Any]) -> tuple[int | None, str | None]:
    user, inner = _int(params.get("USER_ID")), params.get("USER_PHONE_INNER")
    if user is None and not inner:
        raise MethodError("ERROR_CORE", "USER_ID or USER_PHONE_INNER should be set")
    return user, str(inner) if inner else None


def _users(value: Any, call: PortalCall) -> list[int]:
    if value is None:
        return [_int(call.params.get("USER_ID")) or 0]
    values = value if isinstance(value, list) else [value]
    return [number for number in (_int(v) for v in values) if number is not None]


def _int(value: Any, default: int | None = None) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return default


def _iso(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _digits(phone: str) -> str:
    return "".join(ch for ch in str(phone) if ch.isdigit())


def _phone(number: str) -> dict[str, str]:
    return {"VALUE": number, "VALUE_TYPE": "WORK"}


def _timing() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "start": now.timestamp(),
        "finish": now.timestamp() + 0.01,
        "duration": 0.01,
        "processing": 0,
        "date_start": now.isoformat(timespec="seconds"),
        "date_finish": now.isoformat(timespec="seconds"),
        "operating_reset_at": int((now + timedelta(minutes=10)).timestamp()),
        "operating": 0,
    }


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[Bitrix24Portal]:
    """A portal listening on 127.0.0.1 until the block ends (``options``: rate, burst, clock)."""
    portal = Bitrix24Portal(**options)
    await portal.start()
    try:
        yield portal
    finally:
        await portal.stop()
