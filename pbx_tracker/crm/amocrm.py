"""`AmoCrmPlatform`: each stored call added to the caller's card in amoCRM (API v4).

Of the outbox's events it takes ``call.finished`` and ``call.updated``; the live
ones (``call.ringing``, ``call.answered``) are accepted and left, amoCRM has no
use for them.  A finished call is one ``POST /api/v4/calls``: amoCRM attaches it
to the card (contact, company, or their lead) that has the caller's phone.  When
no card has it, ``unknown_callers`` says what follows:

- ``contact``: a contact is made (the caller's name, else the number; the phone
  as a work phone; the manager who answered as responsible) and the call is
  added again;
- ``unsorted``: the call goes to Unsorted as an incoming lead
  (``/api/v4/leads/unsorted/sip``) that a manager accepts or declines;
- ``none``: the call is left, and logged.

Each step is kept in the call's links as soon as amoCRM answered it (the call's
id, the contact made, the incoming lead), so an event that comes again adds
nothing twice; the call's ``uniq`` is a UUID of its node and linkedid, the same
on every try.  amoCRM calls cannot be edited: a ``call.updated`` for a call
already added sends nothing.  A spam call from a caller amoCRM does not know
makes neither contact nor lead, and a call without the caller's number
(hidden) cannot be placed on any card: both are left and logged.

`find_owner` answers whose client a caller is: the responsible user of the
first contact amoCRM finds by the number, as that manager's extension.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import structlog

from pbx_tracker.calls.records import CallRecord, CallStatus, MissedReason, record_from_json
from pbx_tracker.crm.amocrm_api import AmoCrmApi
from pbx_tracker.crm.platform import Links, OutboxEvent, PlatformError
from pbx_tracker.crm.settings import AmoCrmSettings
from pbx_tracker.phones import display_number, normalize_number
from pbx_tracker.staff import Directory, Manager

__all__ = ["CALL_EVENTS", "SOURCE", "AmoCrmPlatform", "call_status", "call_uniq"]

log = structlog.get_logger(__name__)

SOURCE = "pbx-tracker"  # the calls' source and the Unsorted service's code
CALL_EVENTS = frozenset({"call.finished", "call.updated"})
_UNIQ_SPACE = uuid.UUID("6f1d3a52-4c1e-5b8e-9a34-1c2b7e0d9f11")

# amoCRM's call_status list
TALKED = 4  # the conversation took place
NOT_REACHED = 6  # no answer, could not get through
LINE_BUSY = 7  # the line was busy


class AmoCrmPlatform:
    """The ``amocrm`` target of the outbox (see the module doc)."""

    name = "amocrm"

    def __init__(self, settings: AmoCrmSettings, directory: Directory, *, region: str) -> None:
        self._settings = settings
        self._directory = directory
        self._region = region
        self._api = AmoCrmApi(settings)

    async def deliver(self, event: OutboxEvent, links: Links) -> None:
        """Carry out one event; PlatformError when amoCRM did not take it."""
        if event.kind not in CALL_EVENTS:
            return
        record = _record(event)
        known = dict(await links.get(event.call_key) or {})
        if "call_id" in known or "unsorted_uid" in known:
            log.debug("crm.amocrm_call_already_added", call=event.call_key, event_kind=event.kind)
            return
        if record.caller is None:
            log.info("crm.amocrm_call_left", call=event.call_key, reason="hidden caller")
            return
        call = self._call(record)
        added = await self._api.add_call(call)
        if added is None:
            await self._unknown_caller(event.call_key, record, call, known, links)
            return
        known.update(call_id=added.id, entity_id=added.entity_id, entity_type=added.entity_type)
        await links.put(event.call_key, known)
        log.info("crm.amocrm_call_added", call=event.call_key, call_id=added.id)

    async def find_owner(self, phone: str) -> str | None:
        """The extension of the manager responsible for the caller's contact, or None.

        The number is looked up as E.164 digits (``79161234501``), whatever form the
        trunk gave it in."""
        digits = re.sub(r"\D", "", normalize_number(phone, self._region) or "")
        if not digits:
            return None
        for contact in await self._api.find_contacts(digits):
            user = contact.get("responsible_user_id")
            if isinstance(user, bool) or not isinstance(user, int):
                raise PlatformError("amoCRM answered a contact without a responsible user")
            manager = self._directory.manager_for_account("amocrm_user", user)
            return None if manager is None else manager.extension
        return None

    async def close(self) -> None:
        await self._api.close()

    async def _unknown_caller(
        self,
        call_key: str,
        record: CallRecord,
        call: dict[str, Any],
        known: dict[str, Any],
        links: Links,
    ) -> None:
        """No card has the caller's phone: a contact, an incoming lead, or nothing."""
        mode = self._settings.unknown_callers
        if mode == "none" or record.spam is not None:
            reason = "spam" if record.spam is not None else "unknown caller"
            log.info("crm.amocrm_call_left", call=call_key, reason=reason)
            return
        if mode == "unsorted":
            lead = await self._api.add_unsorted_call(self._incoming_lead(record, call))
            known.update(unsorted_uid=lead.uid, lead_id=lead.lead_id)
            await links.put(call_key, known)
            log.info("crm.amocrm_incoming_lead_added", call=call_key, lead_id=lead.lead_id)
            return
        if "contact_id" not in known:
            known["contact_id"] = await self._api.add_contact(self._contact(record))
            await links.put(call_key, known)
            log.info("crm.amocrm_contact_added", call=call_key, contact_id=known["contact_id"])
        added = await self._api.add_call(call)
        if added is None:
            raise PlatformError("amoCRM did not attach the call to the contact just made")
        known.update(call_id=added.id, entity_id=added.entity_id, entity_type=added.entity_type)
        await links.put(call_key, known)
        log.info("crm.amocrm_call_added", call=call_key, call_id=added.id)

    def _call(self, record: CallRecord) -> dict[str, Any]:
        """The call as ``POST /api/v4/calls`` takes it."""
        call: dict[str, Any] = {
            "direction": record.direction.value,
            "uniq": call_uniq(record),
            "duration": record.talk_seconds,
            "source": SOURCE,
            "phone": record.caller,
            "call_result": self._result(record),
            "call_status": call_status(record),
            "created_at": int(record.started_at.timestamp()),
        }
        link = self._recording_link(record)
        if link is not None:
            call["link"] = link
        manager = self._manager(record)
        if manager is not None and manager.amocrm_user is not None:
            call["responsible_user_id"] = manager.amocrm_user
        return call

    def _contact(self, record: CallRecord) -> dict[str, Any]:
        number = record.caller or ""
        phone = {"field_code": "PHONE", "values": [{"value": number, "enum_code": "WORK"}]}
        contact: dict[str, Any] = {
            "name": (record.caller_name or "").strip() or display_number(number, self._region),
            "custom_fields_values": [phone],
        }
        manager = self._manager(record)
        if manager is not None and manager.amocrm_user is not None:
            contact["responsible_user_id"] = manager.amocrm_user
        return contact

    def _incoming_lead(self, record: CallRecord, call: dict[str, Any]) -> dict[str, Any]:
        """The call as ``POST /api/v4/leads/unsorted/sip`` takes it: an incoming lead."""
        number = record.caller or ""
        shown = display_number(number, self._region)
        metadata = {
            "from": number,
            "phone": number,
            "called_at": call["created_at"],
            "duration": record.talk_seconds,
            "service_code": SOURCE,
            "uniq": call["uniq"],
            "is_call_event_needed": True,
            **({"link": call["link"]} if "link" in call else {}),
        }
        entry: dict[str, Any] = {
            "source_uid": SOURCE,
            "source_name": record.source or "pbx-tracker",
            "created_at": call["created_at"],
            "metadata": metadata,
            "_embedded": {
                "leads": [{"name": f"Call from {shown}"}],
                "contacts": [self._contact(record)],
            },
        }
        if self._settings.pipeline_id is not None:
            entry["pipeline_id"] = self._settings.pipeline_id
        return entry

    def _result(self, record: CallRecord) -> str:
        """A line for the call's card: who answered, or why missed, and where it came from."""
        if record.status is CallStatus.ANSWERED:
            manager = self._manager(record)
            who = manager.name if manager is not None else record.answered_by or "someone"
            text = f"Answered by {who}"
        else:
            reason = record.missed_reason.value.replace("_", " ") if record.missed_reason else ""
            text = f"Missed: {reason}" if reason else "Missed"
        labels = [label for label in (record.source, record.medium, record.campaign) if label]
        return f"{text}; source: {' / '.join(labels)}" if labels else text

    def _recording_link(self, record: CallRecord) -> str | None:
        template = self._settings.recording_link
        if template is None or not record.recording_path:
            return None
        return template.replace("{linkedid}", record.linkedid)

    def _manager(self, record: CallRecord) -> Manager | None:
        extension = record.answered_by
        return None if extension is None else self._directory.manager_for_extension(extension)


def call_uniq(record: CallRecord) -> str:
    """The call's ``uniq``: a UUID of its node and linkedid, the same on every try."""
    return str(uuid.uuid5(_UNIQ_SPACE, f"{record.node}:{record.linkedid}"))


def call_status(record: CallRecord) -> int:
    """amoCRM's ``call_status`` of the call: talked, line busy, or not reached."""
    if record.status is CallStatus.ANSWERED:
        return TALKED
    return LINE_BUSY if record.missed_reason is MissedReason.BUSY else NOT_REACHED


def _record(event: OutboxEvent) -> CallRecord:
    """The call record the event carries; a malformed one is given up (permanent)."""
    data = event.payload.get("call") if isinstance(event.payload, dict) else None
    if not isinstance(data, dict):
        raise PlatformError("the event carries no call record", permanent=True, down=False)
    try:
        return record_from_json(data)
    except (KeyError, TypeError, ValueError) as error:
        reason = f"the event's call record is malformed ({type(error).__name__})"
        raise PlatformError(reason, permanent=True, down=False) from None
