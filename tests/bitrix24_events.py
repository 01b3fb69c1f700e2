"""Bitrix24's events as its queue server POSTs them to a handler, for tests.

Bitrix24 sends an event (here ``ONEXTERNALCALLSTART``, a user clicked a phone number in
the CRM) as ``application/x-www-form-urlencoded``, PHP's ``http_build_query`` of
``{event, event_handler_id, data: {...}, ts, auth: {...}}``: nested keys written
``data[PHONE_NUMBER]``, brackets percent-encoded, spaces as ``+``, every value a string.
An outgoing webhook's ``auth`` holds the portal's addresses, ``member_id`` and the
webhook's ``application_token`` (an app's event binding adds OAuth tokens, never needed
here).  Fields as in the public reference of the event
(apidocs.bitrix24.com, telephony/events/on-external-call-start).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

FORM = "application/x-www-form-urlencoded"
PORTAL = "example.bitrix24.ru"
MEMBER_ID = "a223c6b9410f85df78e9377d6c4f7213"
TS = "1773236988"

Form = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Click:
    """A user's click on a number in a CRM card: ``ONEXTERNALCALLSTART``'s ``data``."""

    user_id: int
    phone_number: str
    call_id: str
    line_number: str = "7"
    entity_type: str = "CONTACT"
    entity_id: int = 797
    call_list_id: int = 0
    is_mobile: bool = False

    def data(self) -> dict[str, str]:
        return {
            "PHONE_NUMBER": self.phone_number,
            "PHONE_NUMBER_INTERNATIONAL": self.phone_number,
            "EXTENSION": "",
            "USER_ID": str(self.user_id),
            "CALL_LIST_ID": str(self.call_list_id),
            "LINE_NUMBER": self.line_number,
            "IS_MOBILE": "1" if self.is_mobile else "0",
            "CALL_ID": self.call_id,
            "CRM_ENTITY_TYPE": self.entity_type,
            "CRM_ENTITY_ID": str(self.entity_id),
        }


def event_form(
    event: str, data: Mapping[str, str], token: str | None, *, handler_id: int = 1055
) -> list[tuple[str, str]]:
    """The fields of one event in the order Bitrix24 writes them; ``token`` None: no
    ``auth[application_token]`` at all."""
    auth = {
        "domain": PORTAL,
        "client_endpoint": f"https://{PORTAL}/rest/",
        "server_endpoint": "https://oauth.bitrix.info/rest/",
        "member_id": MEMBER_ID,
    }
    if token is not None:
        auth["application_token"] = token
    return [
        ("event", event),
        ("event_handler_id", str(handler_id)),
        *((f"data[{name}]", value) for name, value in data.items()),
        ("ts", TS),
        *((f"auth[{name}]", value) for name, value in auth.items()),
    ]


def call_start(click: Click, token: str | None) -> list[tuple[str, str]]:
    """``ONEXTERNALCALLSTART`` for ``click``, signed with ``token``."""
    return event_form("ONEXTERNALCALLSTART", click.data(), token)


async def post_event(
    url: str, form: Form | bytes, *, content_type: str = FORM
) -> tuple[int, dict[str, object]]:
    """POST ``form`` (or raw bytes) to the handler as Bitrix24 does; its status and JSON."""
    body = form if isinstance(form, bytes) else urlencode(list(form)).encode("ascii")
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url, data=body, headers={"Content-Type": content_type}) as response,
    ):
        answer = await response.json(content_type=None)
        return response.status, answer if isinstance(answer, dict) else {}
