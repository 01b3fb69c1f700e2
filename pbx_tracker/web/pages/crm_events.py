"""The CRM's events: ``POST /crm/bitrix24/events``, where Bitrix24 tells of a click on a
number (``ONEXTERNALCALLSTART``: click-to-call, `pbx_tracker.crm.click_to_call`).

No session and no CSRF token here: Bitrix24 proves itself with the outgoing webhook's
application token inside the form.  Everything about the request is hostile: only
``application/x-www-form-urlencoded`` (else 415), at most `MAX_EVENT_BYTES` (else 413),
read within `READ_SECONDS` (else 408), a form Bitrix24 would send (else 400); a missing
or wrong token 403 (logged, never shown); any event with the right token 200, at once
(the Originate goes on in the background; Bitrix24 sends again what is not answered
2xx, and slows down for a handler that answers slowly).  Without click-to-call
configured the address answers 404.

Setting it up: `add_crm_event_routes(app, ClickToCall.from_settings(...))` before the
app starts; the click-to-call is kept as ``app[CLICK_TO_CALL]`` and closed with the app.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from pbx_tracker.crm.click_to_call import BadForm, ClickToCall, read_form
from pbx_tracker.web.clients import client_key
from pbx_tracker.web.middleware import SETTINGS

__all__ = [
    "BITRIX24_EVENTS",
    "CLICK_TO_CALL",
    "FORM",
    "MAX_EVENT_BYTES",
    "READ_SECONDS",
    "add_crm_event_routes",
]

log = structlog.get_logger(__name__)

BITRIX24_EVENTS = "/crm/bitrix24/events"
FORM = "application/x-www-form-urlencoded"
MAX_EVENT_BYTES = 16 * 1024  # an ONEXTERNALCALLSTART is under 2 KiB
READ_SECONDS = 10.0

CLICK_TO_CALL = web.AppKey("click_to_call", ClickToCall)


def _answer(status: int, **body: str) -> web.Response:
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def _client(request: web.Request) -> str:
    settings = request.app.get(SETTINGS)
    trust_proxy = settings.trust_proxy if settings is not None else False
    return client_key(request, trust_proxy)


async def _body(request: web.Request) -> bytes | None:
    """The body, or None when it is longer than `MAX_EVENT_BYTES`."""
    if request.content_length is not None and request.content_length > MAX_EVENT_BYTES:
        return None
    body = bytearray()
    while chunk := await request.content.read(MAX_EVENT_BYTES + 1 - len(body)):
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            return None
    return bytes(body)


async def bitrix24_event(request: web.Request) -> web.Response:
    """One event from Bitrix24 (see the module doc for the answers)."""
    click_to_call = request.app.get(CLICK_TO_CALL)
    if click_to_call is None:
        return _answer(404, error="click-to-call is not configured")
    if request.content_type != FORM:
        return _answer(415, error=f"send {FORM}")
    try:
        async with asyncio.timeout(READ_SECONDS):
            body = await _body(request)
    except TimeoutError:
        return _answer(408, error="the event came too slowly")
    if body is None:
        log.warning("web.crm_event_too_large", client=_client(request))
        return _answer(413, error=f"an event is at most {MAX_EVENT_BYTES} bytes")
    try:
        form = read_form(body)
    except BadForm as bad:
        log.warning("web.crm_event_malformed", reason=str(bad), client=_client(request))
        return _answer(400, error=str(bad))
    reception = click_to_call.take(form, client=_client(request))
    if reception == "forbidden":
        return _answer(403, error="wrong application token")
    return _answer(200, result=reception)


def add_crm_event_routes(app: web.Application, click_to_call: ClickToCall | None = None) -> None:
    """``POST /crm/bitrix24/events``; ``click_to_call`` (None: the address answers 404) kept
    in the app and closed with it."""
    if click_to_call is not None:
        app[CLICK_TO_CALL] = click_to_call

        async def close(_: web.Application) -> None:
            await click_to_call.close()

        app.on_cleanup.append(close)
    app.router.add_post(BITRIX24_EVENTS, bitrix24_event)
