"""`Bitrix24Platform`: the calls shown, logged and filled in Bitrix24's telephony, as its
external-call scenario describes (``telephony.externalcall.*`` through a webhook).

Per call (``call_key``), from the outbox's events:

- ``call.ringing``: the first ringing manager with a ``bitrix24_user`` registers the
  call (``register``: TYPE 2, the caller, the tracked number as the line, a lead
  made for an unknown caller when ``create_leads``, the card shown when
  ``show_card``); the managers rung later get the card (``show``), each Bitrix24
  user once.  Managers without a ``bitrix24_user`` are passed over; while none of
  a call's managers has one, the call waits for its end.
- ``call.answered``: the card is hidden (``hide``) from everyone shown but the one
  who answered.
- ``call.finished`` / ``call.updated``: a call never registered (short, recovered
  from CEL) is registered now, without a card, for the manager who answered,
  else the first manager rung, else the first manager of the directory with a
  ``bitrix24_user``; then ``finish`` for the manager who talked last (the
  transfer's target, else who answered; a missed call: whom it was registered
  for) with the talk seconds and the outcome's code (200 answered, 304 missed or
  abandoned, 486 busy, 480 unavailable, 503 failed); then the source fields
  (``fields``) written to the lead or deal the call created, else to the entity
  it was linked to; then the recording attached (wav or mp3 in
  ``recordings_dir``).  An outbound call Bitrix24 started (click-to-call: the
  variable ``CALLBACK_CRM_CALL_ID`` or ``BITRIX24_CALL_ID``) is finished on that
  CALL_ID, never registered; a click whose manager did not pick up places no call, so
  its ``click.unanswered`` (written by the daemon from the Originate's answer) finishes
  Bitrix24's call with 0 s and the phone's outcome (304, 486 busy, 603 rejected).

What a call got is kept in the Links at once after each step (``call_id``,
``finished``, ``fields_written``, ``record_attached``...), so an event tried again
repeats nothing done: a ``call.updated`` of a finished call writes the fields
again only when they changed.  A recording not (yet) on disk is logged and left;
fields or a recording Bitrix24 refuses are logged and left, the call stays logged.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks.ringme import RingMeResult
from pbx_tracker.calls.records import (
    CallRecord,
    CallStatus,
    Direction,
    MissedReason,
    record_from_json,
)
from pbx_tracker.crm.bitrix24_api import Bitrix24Api
from pbx_tracker.crm.outbox import enqueue_event
from pbx_tracker.crm.platform import Links, OutboxEvent, PlatformError
from pbx_tracker.crm.settings import Bitrix24Settings
from pbx_tracker.phones import normalize_number
from pbx_tracker.staff import Directory

__all__ = [
    "CLICK_TO_CALL_VARIABLES",
    "CLICK_UNANSWERED",
    "Bitrix24Platform",
    "status_code",
    "unanswered_click",
]

log = structlog.get_logger(__name__)

# where a call Bitrix24 started (OnExternalCallStart) keeps Bitrix24's CALL_ID: the
# RingMe Originate's variable, or one the dialplan sets itself
CLICK_TO_CALL_VARIABLES = ("CALLBACK_CRM_CALL_ID", "BITRIX24_CALL_ID")
CLICK_TO_CALL_USER = "BITRIX24_USER_ID"  # who clicked, when the dialplan keeps it
INBOUND, OUTBOUND = 2, 1  # register's TYPE
UPDATE_METHODS = {
    "LEAD": "crm.lead.update",
    "DEAL": "crm.deal.update",
    "CONTACT": "crm.contact.update",
}
RECORDING_TYPES = frozenset({".wav", ".mp3"})  # what attachRecord takes
CLICK_UNANSWERED = "click.unanswered"  # a click-to-call whose manager did not pick up
# finish's STATUS_CODE for a ring-me outcome of the manager's phone
_CLICK_CODES = {"no_answer": "304", "busy": "486", "rejected": "603", "failed": "503"}
_MISSED_CODES = {
    MissedReason.NO_ANSWER: "304",
    MissedReason.ABANDONED: "304",
    MissedReason.BUSY: "486",
    MissedReason.UNAVAILABLE: "480",
    MissedReason.FAILED: "503",
}


async def unanswered_click(engine: AsyncEngine, result: RingMeResult) -> bool:
    """Write the ``click.unanswered`` event of a click-to-call whose manager did not pick
    up (no call record will follow to finish Bitrix24's call); False when written before."""
    assert result.crm_call_id is not None
    call_key = f"crm:{result.crm_call_id}"
    payload = {
        "call_id": result.crm_call_id,
        "manager": result.manager,
        "outcome": result.outcome,
    }
    async with engine.begin() as conn:
        return await enqueue_event(
            conn,
            target="bitrix24",
            call_key=call_key,
            kind=CLICK_UNANSWERED,
            key=f"bitrix24:{call_key}:unanswered:{result.attempt}",
            payload=payload,
            now=datetime.now(UTC),
        )


def status_code(record: CallRecord) -> str:
    """Bitrix24's STATUS_CODE of the call's outcome."""
    if record.status is CallStatus.ANSWERED:
        return "200"
    return _MISSED_CODES.get(record.missed_reason, "304") if record.missed_reason else "304"


@dataclass
class CallLink:
    """What Bitrix24 gave and got for one call (the Links' JSON)."""

    call_id: str | None = None
    registered_user: int | None = None
    entity_type: str | None = None
    entity_id: int | None = None
    created: list[list[Any]] = field(default_factory=list)  # [["LEAD", 7], ...]
    shown: list[int] = field(default_factory=list)
    hidden: list[int] = field(default_factory=list)
    finished: bool = False
    fields_written: dict[str, str] | None = None
    record_attached: bool = False
    record_refused: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> CallLink:
        link = cls()
        for name, value in (data or {}).items():
            if name in cls.__dataclass_fields__:
                setattr(link, name, value)
        return link

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def target(self) -> tuple[str, int] | None:
        """Where the source fields go: a deal or lead made for the call, else its entity."""
        made = {str(kind).upper(): number for kind, number in self.created}
        for kind in ("DEAL", "LEAD"):
            if kind in made:
                return kind, made[kind]
        if self.entity_type and self.entity_id:
            return self.entity_type.upper(), self.entity_id
        return None


@dataclass(frozen=True, slots=True)
class _Call:
    """What registering needs of a call, from its live form or its record."""

    key: str
    caller: str | None
    did: str | None
    started_at: datetime
    kind: int


class Bitrix24Platform:
    """The ``bitrix24`` target of the outbox (see the module doc)."""

    name = "bitrix24"

    def __init__(
        self,
        settings: Bitrix24Settings,
        directory: Directory,
        *,
        recordings_dir: Path,
        region: str,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._recordings_dir = recordings_dir
        self._region = region
        self._api = Bitrix24Api(
            settings.webhook_url,
            timeout=settings.timeout,
            secrets=settings.secret_values(),
            session=session,
        )

    async def close(self) -> None:
        await self._api.close()

    async def deliver(self, event: OutboxEvent, links: Links) -> None:
        if event.kind == "call.ringing":
            await self._ringing(event, links)
        elif event.kind == "call.answered":
            await self._answered(event, links)
        elif event.kind in ("call.finished", "call.updated"):
            await self._finished(event, links)
        elif event.kind == CLICK_UNANSWERED:
            await self._click_unanswered(event, links)
        else:
            log.info("crm.bitrix24_event_ignored", call_event=event.kind, call=event.call_key)

    async def find_owner(self, phone: str) -> str | None:
        """The extension of the manager responsible for ``phone`` in the CRM, or None."""
        number = normalize_number(phone, self._region) or phone
        found = await self._api.call(
            "telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": number}
        )
        if not isinstance(found, list):
            raise PlatformError("bitrix24 searchCrmEntities: the result is not a list")
        if not found:
            return None
        user = _owner_id(found[0])
        if user is None:
            raise PlatformError("bitrix24 searchCrmEntities: an entity without ASSIGNED_BY")
        manager = self._directory.manager_for_account("bitrix24_user", user)
        return manager.extension if manager is not None else None

    # -- ringing and answering ----------------------------------------------------

    async def _ringing(self, event: OutboxEvent, links: Links) -> None:
        call = _live_call(event)
        managers = event.payload.get("managers")
        if not isinstance(managers, list):
            raise _bad(event, "managers is not a list")
        users = _unique(self._user(ext) for ext in managers if isinstance(ext, str))
        link = CallLink.from_json(await links.get(event.call_key))
        if not users or link.finished:
            return
        if link.call_id is None:
            if call.caller is None:
                log.info("crm.bitrix24_hidden_caller", call=event.call_key)
                return
            show = self._settings.show_card
            await self._register(link, links, call, users[0], show=show)
        if self._settings.show_card:
            await self._show(link, links, event.call_key, users)

    async def _show(self, link: CallLink, links: Links, key: str, users: list[int]) -> None:
        new = [user for user in users if user not in link.shown]
        if not new:
            return
        shown = await self._api.call(
            "telephony.externalcall.show", {"CALL_ID": link.call_id, "USER_ID": new}
        )
        if shown is not True:
            log.warning("crm.bitrix24_card_not_shown", call=key, call_id=link.call_id)
        link.shown += new
        await links.put(key, link.to_json())

    async def _answered(self, event: OutboxEvent, links: Links) -> None:
        manager = event.payload.get("manager")
        if not isinstance(manager, str):
            raise _bad(event, "manager is not an extension")
        link = CallLink.from_json(await links.get(event.call_key))
        if link.call_id is None or link.finished:
            return
        answered = self._user(manager)
        hide = [u for u in link.shown if u != answered and u not in link.hidden]
        if not hide:
            return
        await self._api.call(
            "telephony.externalcall.hide", {"CALL_ID": link.call_id, "USER_ID": hide}
        )
        link.hidden += hide
        await links.put(event.call_key, link.to_json())

    # -- the end of a call ---------------------------------------------------------

    async def _finished(self, event: OutboxEvent, links: Links) -> None:
        record = _record(event)
        link = CallLink.from_json(await links.get(event.call_key))
        if not link.finished:
            if link.call_id is None:
                link.call_id = _clicked_call_id(record)
            if link.call_id is None:
                call = _record_call(event.call_key, record, self._region)
                if call.caller is None:
                    log.info("crm.bitrix24_hidden_caller", call=event.call_key)
                    return
                await self._register(link, links, call, self._first_user(record), show=False)
            await self._finish(link, links, event.call_key, record)
        await self._write_fields(link, links, event.call_key, record)
        await self._attach_recording(link, links, event.call_key, record)

    async def _register(
        self, link: CallLink, links: Links, call: _Call, user: int, *, show: bool
    ) -> None:
        manager = self._directory.manager_for_account("bitrix24_user", user)
        params: dict[str, Any] = {
            "USER_ID": user,
            "PHONE_NUMBER": call.caller,
            "TYPE": call.kind,
            "CALL_START_DATE": call.started_at.astimezone(UTC).isoformat(timespec="seconds"),
            "CRM_CREATE": int(self._settings.create_leads),
            "SHOW": int(show),
            "EXTERNAL_CALL_ID": call.key,  # one registration per call, even when tried again
        }
        if manager is not None:
            params["USER_PHONE_INNER"] = manager.extension
        if call.did:
            params["LINE_NUMBER"] = call.did
        answer = await self._api.call("telephony.externalcall.register", params)
        _take_registration(link, answer)
        link.registered_user = user
        link.shown = [user] if show else []
        await links.put(call.key, link.to_json())
        log.info("crm.bitrix24_registered", call=call.key, call_id=link.call_id, user=user)

    async def _finish(self, link: CallLink, links: Links, key: str, record: CallRecord) -> None:
        user = self._last_user(record) or link.registered_user or self._first_user(record)
        params: dict[str, Any] = {
            "CALL_ID": link.call_id,
            "USER_ID": user,
            "DURATION": record.talk_seconds,
            "STATUS_CODE": status_code(record),
            "ADD_TO_CHAT": 1,
        }
        if record.missed_reason is not None:
            params["FAILED_REASON"] = record.missed_reason.value
        answer = await self._api.call("telephony.externalcall.finish", params)
        if not isinstance(answer, dict):
            raise PlatformError("bitrix24 telephony.externalcall.finish: the result is no object")
        if link.target() is None:  # click-to-call: the entity is known from here on
            link.entity_type = _text(answer.get("CRM_ENTITY_TYPE"))
            link.entity_id = _number(answer.get("CRM_ENTITY_ID"))
        link.finished = True
        await links.put(key, link.to_json())
        log.info("crm.bitrix24_finished", call=key, call_id=link.call_id, user=user)

    async def _write_fields(
        self, link: CallLink, links: Links, key: str, record: CallRecord
    ) -> None:
        values = self._field_values(record)
        target = link.target()
        if not values or target is None or values == link.fields_written:
            return
        kind, number = target
        method = UPDATE_METHODS.get(kind)
        if method is None:
            log.info("crm.bitrix24_fields_skipped", call=key, entity=kind)
            return
        try:
            done = await self._api.call(method, {"id": number, "fields": values})
        except PlatformError as error:
            if not error.permanent:
                raise
            log.warning("crm.bitrix24_fields_refused", call=key, entity=kind, reason=error.reason)
            done = True
        if done is not True:
            raise PlatformError(f"bitrix24 {method}: the result is not true")
        link.fields_written = values
        await links.put(key, link.to_json())

    def _field_values(self, record: CallRecord) -> dict[str, str]:
        values = {}
        for bitrix_field, record_field in self._settings.fields.items():
            value = getattr(record, record_field, None)
            if value is not None and str(value).strip():
                values[bitrix_field] = str(value)
        return values

    async def _attach_recording(
        self, link: CallLink, links: Links, key: str, record: CallRecord
    ) -> None:
        if link.record_attached or link.record_refused or not record.recording_path:
            return
        path, why = await asyncio.to_thread(_recording, self._recordings_dir, record.recording_path)
        if path is None:
            log.warning("crm.bitrix24_recording_skipped", call=key, reason=why)
            link.record_refused = why != "missing"
            if link.record_refused:
                await links.put(key, link.to_json())
            return
        content = base64.b64encode(await asyncio.to_thread(path.read_bytes)).decode("ascii")
        params = {"CALL_ID": link.call_id, "FILENAME": path.name, "FILE_CONTENT": content}
        try:
            answer = await self._api.call("telephony.externalCall.attachRecord", params)
        except PlatformError as error:
            if not error.permanent:
                raise
            log.warning("crm.bitrix24_recording_refused", call=key, reason=error.reason)
            link.record_refused = True
        else:
            if not isinstance(answer, dict) or _number(answer.get("FILE_ID")) is None:
                raise PlatformError("bitrix24 attachRecord: the result has no FILE_ID")
            link.record_attached = True
        await links.put(key, link.to_json())

    # -- who is who ------------------------------------------------------------------

    async def _click_unanswered(self, event: OutboxEvent, links: Links) -> None:
        """A click-to-call whose manager did not pick up: Bitrix24's call finished, 0 s."""
        call_id, manager = event.payload.get("call_id"), event.payload.get("manager")
        outcome = event.payload.get("outcome")
        if not isinstance(call_id, str) or not call_id:
            raise _bad(event, "call_id is not a call id")
        link = CallLink.from_json(await links.get(event.call_key))
        if link.finished:
            return
        user = self._user(manager if isinstance(manager, str) else None)
        params: dict[str, Any] = {
            "CALL_ID": call_id,
            "USER_ID": user or self._any_user(),
            "DURATION": 0,
            "STATUS_CODE": _CLICK_CODES.get(str(outcome), "304"),
            "FAILED_REASON": f"the manager's phone: {outcome}",
        }
        await self._api.call("telephony.externalcall.finish", params)
        link.call_id, link.finished = call_id, True
        await links.put(event.call_key, link.to_json())
        log.info("crm.bitrix24_click_unanswered", call_id=call_id, outcome=outcome)

    def _any_user(self) -> int:
        """The first manager's Bitrix24 user, when a call names none of its own."""
        for manager in self._directory.managers:
            if manager.bitrix24_user is not None:
                return manager.bitrix24_user
        raise PlatformError("bitrix24: no manager has a bitrix24_user", permanent=True, down=False)

    def _user(self, extension: str | None) -> int | None:
        manager = self._directory.manager_for_extension(extension) if extension else None
        return manager.bitrix24_user if manager is not None else None

    def _last_user(self, record: CallRecord) -> int | None:
        """The Bitrix24 user who talked last: the transfer's target, else who answered."""
        return self._user(record.transferred_to) or self._user(record.answered_by)

    def _first_user(self, record: CallRecord) -> int:
        """Whom a call is registered for at its end (see the module doc)."""
        extensions = [record.answered_by, record.transferred_to]
        extensions += [attempt.manager for attempt in record.attempts]
        for extension in extensions:
            user = self._user(extension)
            if user is not None:
                return user
        clicked = _number(record.variables.get(CLICK_TO_CALL_USER))
        return clicked if clicked is not None else self._any_user()


def _take_registration(link: CallLink, answer: Any) -> None:
    """CALL_ID and the CRM entities of register's answer, checked."""
    call_id = answer.get("CALL_ID") if isinstance(answer, dict) else None
    if not isinstance(call_id, str | int) or isinstance(call_id, bool) or not str(call_id):
        raise PlatformError("bitrix24 telephony.externalcall.register: no CALL_ID in the result")
    link.call_id = str(call_id)
    link.entity_type = _text(answer.get("CRM_ENTITY_TYPE"))
    link.entity_id = _number(answer.get("CRM_ENTITY_ID"))
    created = answer.get("CRM_CREATED_ENTITIES")
    for item in created if isinstance(created, list) else []:
        kind = _text(item.get("ENTITY_TYPE")) if isinstance(item, dict) else None
        number = _number(item.get("ENTITY_ID")) if isinstance(item, dict) else None
        if kind and number is not None:
            link.created.append([kind.upper(), number])
    lead = _number(answer.get("CRM_CREATED_LEAD"))
    if lead is not None and ["LEAD", lead] not in link.created:
        link.created.append(["LEAD", lead])


def _clicked_call_id(record: CallRecord) -> str | None:
    """Bitrix24's CALL_ID of an outbound call it started (click-to-call), else None."""
    if record.direction is not Direction.OUTBOUND:
        return None
    found = (record.variables.get(name) for name in CLICK_TO_CALL_VARIABLES)
    return next((value for value in found if value), None)


def _recording(folder: Path, stored: str) -> tuple[Path | None, str]:
    """(the recording's file, "") or (None, why not: outside, type, missing)."""
    path = Path(stored)
    base = folder.resolve()
    real = (path if path.is_absolute() else base / path).resolve()
    if ".." in path.parts or not real.is_relative_to(base) or real == base:
        return None, "outside"
    if real.suffix.lower() not in RECORDING_TYPES:
        return None, "type"
    return (real, "") if real.is_file() else (None, "missing")


def _live_call(event: OutboxEvent) -> _Call:
    live = event.payload.get("call")
    if not isinstance(live, dict):
        raise _bad(event, "call is not an object")
    started = _time(live.get("started_at"))
    if started is None:
        raise _bad(event, "started_at is not a time")
    caller, did = live.get("caller"), live.get("did")
    return _Call(
        event.call_key,
        caller if isinstance(caller, str) and caller else None,
        did if isinstance(did, str) and did else None,
        started,
        INBOUND,
    )


def _record(event: OutboxEvent) -> CallRecord:
    data = event.payload.get("call")
    try:
        if not isinstance(data, dict):
            raise TypeError("not an object")
        return record_from_json(data)
    except (KeyError, TypeError, ValueError) as error:
        raise _bad(event, f"not a call record ({type(error).__name__})") from None


def _record_call(key: str, record: CallRecord, region: str) -> _Call:
    kind = OUTBOUND if record.direction is Direction.OUTBOUND else INBOUND
    caller = normalize_number(record.caller, region) if record.caller else None
    return _Call(key, caller, record.did, record.started_at, kind)


def _owner_id(entity: Any) -> int | None:
    if not isinstance(entity, dict):
        return None
    assigned = entity.get("ASSIGNED_BY")
    found = _number(assigned.get("ID")) if isinstance(assigned, dict) else None
    return found if found is not None else _number(entity.get("ASSIGNED_BY_ID"))


def _bad(event: OutboxEvent, what: str) -> PlatformError:
    reason = f"bitrix24: {event.kind} of {event.call_key}: {what}"
    return PlatformError(reason, permanent=True, down=False)


def _unique(users: Any) -> list[int]:
    found: list[int] = []
    for user in users:
        if user is not None and user not in found:
            found.append(user)
    return found


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> int | None:
    """A positive id, sent as a number or as digits; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    return None
