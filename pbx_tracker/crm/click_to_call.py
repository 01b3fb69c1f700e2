"""Click-to-call from Bitrix24: a manager clicks a customer's number in the CRM, their phone
rings, then the customer's (the same `RingMe` Originate as the callbacks page's "Call now").

Bitrix24 tells of the click with the event ``ONEXTERNALCALLSTART``, POSTed as
``application/x-www-form-urlencoded`` to the handler of an outgoing webhook (or of an
app's event binding): ``event``, ``data[USER_ID]`` (who clicked), ``data[PHONE_NUMBER]``,
``data[CALL_ID]`` (the call Bitrix24 registered for the click), ``data[LINE_NUMBER]``,
``data[CRM_ENTITY_TYPE]`` / ``data[CRM_ENTITY_ID]``, ``data[IS_MOBILE]``, ``ts`` and
``auth[...]`` with ``auth[application_token]``, the webhook's token.

The rules, in order (every field is hostile until checked):

- `read_form`: UTF-8 ``name=value`` pairs, a bounded number, each name once, else `BadForm`;
- the token is compared in constant time with the configured one
  (``crm.bitrix24.application_token_file``); missing or wrong: ``forbidden``, logged
  without it;
- any other event: ``ignored`` (Bitrix24 sends again what was not answered 2xx, and
  sending it again would not change our mind); so is a well-signed event that does not
  hold together (a user id, call id or number of the wrong shape), a user who is no
  manager (``Manager.bitrix24_user``), or a number that cannot be dialled; each logged;
- otherwise ``ringing``: the RingMe for ``crm:<CALL_ID>`` is started in the background
  (the answer does not wait for Asterisk), its Originate carrying ``CALLBACK_CRM_CALL_ID``.
  The same ``CALL_ID`` told again is not dialled again (`RingMe`: one attempt per CRM
  call), only logged.

The line the click went out on (``LINE_NUMBER``) is the number shown to the customer
when it is one of our tracked numbers; else `RingMeSettings.caller_id` or the dialplan's.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Mapping
from typing import Literal
from urllib.parse import parse_qsl

import structlog
from pydantic import SecretStr

from pbx_tracker.callbacks.ringme import CRM_CALL_ID, RingMe, RingMeCall, RingMeRefused
from pbx_tracker.crm.settings import Bitrix24Settings
from pbx_tracker.phones import is_dialable, read_phone_number
from pbx_tracker.staff import Directory

__all__ = [
    "CALL_START",
    "MAX_FIELDS",
    "BadForm",
    "ClickToCall",
    "Reception",
    "read_form",
]

log = structlog.get_logger(__name__)

CALL_START = "ONEXTERNALCALLSTART"
MAX_FIELDS = 64  # the event has about twenty
TOKEN = "auth[application_token]"
_LONGEST_NUMBER = 64  # characters of a phone number as a person typed it
_SHOWN = 64  # characters of an unknown event's name put in the log

Reception = Literal["forbidden", "ignored", "ringing"]


class BadForm(ValueError):
    """The body is no form Bitrix24 would send; the reason holds none of its values."""


def read_form(body: bytes) -> dict[str, str]:
    """The fields of a form-encoded body (at most `MAX_FIELDS`, each name once)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except UnicodeDecodeError as error:
        raise BadForm("the form is not UTF-8") from error
    except ValueError as error:
        raise BadForm(f"the form has more than {MAX_FIELDS} fields") from error
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise BadForm("a field comes twice")
        fields[name] = value
    return fields


class ClickToCall:
    """Bitrix24's ``ONEXTERNALCALLSTART`` taken in: who clicked, whom to ring, the RingMe.

    ``dial``: the channel string ringing a manager's phone (`RoutingPlan.dial_string`),
    its first channel is rung.
    """

    def __init__(
        self,
        token: SecretStr,
        directory: Directory,
        ringme: RingMe,
        *,
        dial: Callable[[str], str],
    ) -> None:
        if not token.get_secret_value():
            raise ValueError("click-to-call needs the outgoing webhook's application token")
        self._token = token
        self._directory = directory
        self._ringme = ringme
        self._dial = dial
        self._starting: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(
        cls,
        settings: Bitrix24Settings | None,
        directory: Directory,
        ringme: RingMe | None,
        *,
        dial: Callable[[str], str],
    ) -> ClickToCall | None:
        """Click-to-call as configured, or None (logged when it was asked for and cannot be)."""
        token = settings.application_token_file if settings is not None else None
        if token is None:
            return None
        if ringme is None:
            reason = "ring me is off (callbacks.enabled, callbacks.ring_me.enabled)"
            log.warning("crm.click_to_call_off", reason=reason)
            return None
        return cls(token, directory, ringme, dial=dial)

    # -- one event -----------------------------------------------------------------------

    def take(self, form: Mapping[str, str], *, client: str = "") -> Reception:
        """What becomes of one POSTed event; a ring-me call it asks for is started.
        ``client``: who sent it, for the log of a refused token."""
        if not self._authentic(form.get(TOKEN), client):
            return "forbidden"
        event = form.get("event", "")
        if event.upper() != CALL_START:
            log.info("crm.event_ignored", crm_event=event[:_SHOWN] or "(none)")
            return "ignored"
        call = self._call(form)
        if call is None:
            return "ignored"
        self._start(call)
        return "ringing"

    def _authentic(self, given: str | None, client: str) -> bool:
        """The configured token, compared in constant time; the log never shows either."""
        expected = self._token.get_secret_value().encode()
        if given and hmac.compare_digest(given.encode(), expected):
            return True
        reason = "wrong application token" if given else "no application token"
        log.warning("crm.click_to_call_forbidden", reason=reason, client=client)
        return False

    def _call(self, form: Mapping[str, str]) -> RingMeCall | None:
        """The ring-me call the event asks for; None (logged) when there is none to make."""
        call_id, user = form.get("data[CALL_ID]", ""), form.get("data[USER_ID]", "")
        if not CRM_CALL_ID.fullmatch(call_id):
            log.warning("crm.click_to_call_malformed", field="data[CALL_ID]")
            return None
        if not (user.isascii() and user.isdigit() and 0 < len(user) <= 10 and int(user) > 0):
            log.warning("crm.click_to_call_malformed", field="data[USER_ID]", crm_call=call_id)
            return None
        manager = self._directory.manager_for_account("bitrix24_user", int(user))
        if manager is None:
            log.warning("crm.click_to_call_unknown_user", bitrix24_user=int(user), crm_call=call_id)
            return None
        customer = self._customer(form)
        if customer is None:
            log.warning("crm.click_to_call_undialable", crm_call=call_id, manager=manager.extension)
            return None
        return RingMeCall(
            task_id=None,
            manager=manager.extension,
            manager_dial=self._dial(manager.extension).split("&")[0],
            customer=customer,
            did=self._line(form.get("data[LINE_NUMBER]", "")),
            crm_call_id=call_id,
        )

    def _customer(self, form: Mapping[str, str]) -> str | None:
        """The clicked number in E.164 (as typed in the CRM, else as Bitrix24 wrote it)."""
        region = self._directory.region
        for field in ("data[PHONE_NUMBER]", "data[PHONE_NUMBER_INTERNATIONAL]"):
            raw = form.get(field, "").strip()
            if raw and len(raw) <= _LONGEST_NUMBER:
                number = read_phone_number(raw, region)
                if is_dialable(number):
                    return number
        return None

    def _line(self, line: str) -> str | None:
        """The line's number when it is one of our tracked numbers, shown to the customer."""
        if not line or len(line) > _LONGEST_NUMBER:
            return None
        labels = self._directory.find_number(line)
        return labels.did if labels is not None else None

    # -- the Originate, in the background ------------------------------------------------

    def _start(self, call: RingMeCall) -> None:
        task = asyncio.create_task(self._ring(call), name="crm-click-to-call")
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _ring(self, call: RingMeCall) -> None:
        try:
            action_id = await self._ringme.start(call)
        except RingMeRefused as refused:
            log.info("crm.click_to_call_not_dialled", **call.labels, reason=refused.reason)
            return
        except Exception as error:  # nobody awaits this task: what went wrong is told here
            reason = str(error) or type(error).__name__
            log.error("crm.click_to_call_failed", **call.labels, reason=reason)
            return
        log.info(
            "crm.click_to_call_ringing",
            **call.labels,
            manager=call.manager,
            action_id=action_id,
        )

    async def settle(self) -> None:
        """Until every Originate started so far has been answered by Asterisk (or refused)."""
        while self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)

    async def close(self) -> None:
        """Stop waiting for Asterisk's answers (an Originate already sent stays sent)."""
        for task in list(self._starting):
            task.cancel()
        await self.settle()
