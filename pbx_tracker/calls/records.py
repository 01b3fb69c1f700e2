"""What the correlator produces: one record per finished call.

``session_id``, ``utm_*`` and ``attribution`` are filled by attribution
(`pbx_tracker.attribution.attribute`) when the call is stored: the website visit
a pool number was shown to, its tags, and why the call got its source.
``spam`` is filled when the call is stored too (`pbx_tracker.spam.classify`):
why the call is left out of leads and callbacks, or None.

`CallRecord` is the contract of DESIGN.md ("Call record"): the database row,
the JSON line of `replay --dry-run` and, later, the HTTP API all carry these
fields.  Times are timezone-aware UTC datetimes; durations are whole seconds.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class CallStatus(enum.StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"


class MissedReason(enum.StrEnum):
    NO_ANSWER = "no_answer"
    ABANDONED = "abandoned"
    BUSY = "busy"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


class SpamReason(enum.StrEnum):
    BLOCKED = "blocked"  # the caller is on spam.block
    HIDDEN = "hidden"  # no caller number, and spam.block_hidden
    REPEAT = "repeat"  # past spam.repeat_limit calls within the window
    MANUAL = "manual"  # a manager marked it


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True)
class RingAttempt:
    """One phone that rang for a call: who, when, and how that leg ended.

    `outcome` is Asterisk's DialStatus of the leg (ANSWER, NOANSWER, BUSY,
    CANCEL, CHANUNAVAIL, ...), lower-cased; ``not_accepted`` for a leg that
    picked up but was never connected with the caller (a mobile's call
    confirmation refused or timed out, its voicemail); ``forwarded`` for a phone
    that sent the call on (SIP 302, the Dial's ``Forward``); the cancelled legs of a
    ring group or queue stay attempts of the one call, never calls of their own.
    `manager` is None for a phone or number no manager declared; `via` says how
    the leg was reached: ``device`` (a manager's phone) or ``number`` (an
    external number through a trunk, in `number`).
    """

    manager: str | None
    channel: str
    rang_at: datetime
    ended_at: datetime | None
    outcome: str | None
    queue: str | None = None
    via: str | None = None
    number: str | None = None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One inbound call (or, with direction=outbound, one call a manager placed).

    ``answered_via`` / ``answered_number``: how the first party who answered was
    reached (``device`` or ``number``) and, for ``number``, the external number;
    for a device nobody declared, ``answered_number`` names the device
    (``PJSIP/104``).  ``transfer_wait_seconds``: time after the first answer
    when the caller was connected to nobody before being connected again
    (waiting for a transfer target, back in a queue); it is not in
    ``talk_seconds``.  ``recovered_from``: ``cel`` when the call was rebuilt from
    Asterisk's own event log (it happened while pbx-tracker was not listening).
    """

    linkedid: str
    node: str
    direction: Direction
    did: str | None
    caller: str | None
    caller_name: str | None
    status: CallStatus
    missed_reason: MissedReason | None
    answered_by: str | None
    transferred_to: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    ring_seconds: int
    talk_seconds: int
    recording_path: str | None
    queue: str | None = None
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    first_time_caller: bool | None = None
    is_target: bool | None = None
    complete: bool = True
    session_id: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    attribution: dict[str, Any] | None = None
    spam: SpamReason | None = None
    variables: dict[str, str] = field(default_factory=dict)
    attempts: tuple[RingAttempt, ...] = ()
    answered_via: str | None = None
    answered_number: str | None = None
    transfer_wait_seconds: int = 0
    recovered_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form printed by `replay --dry-run` (ISO 8601 UTC times)."""
        data = dataclasses.asdict(self)
        return {key: _jsonable(value) for key, value in data.items()}

    def replace(self, **changes: Any) -> CallRecord:
        return dataclasses.replace(self, **changes)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a `Z` suffix."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def record_from_json(data: dict[str, Any]) -> CallRecord:
    """The inverse of CallRecord.to_json() (ISO 8601 times back to aware UTC)."""
    missed, spam = data.get("missed_reason"), data.get("spam")
    fields = {
        **data,
        "direction": Direction(data["direction"]),
        "status": CallStatus(data["status"]),
        "missed_reason": MissedReason(missed) if missed else None,
        "spam": SpamReason(spam) if spam else None,  # lines spilled before 0008 have none
        "variables": dict(data.get("variables") or {}),
        "attempts": tuple(_attempt_from_json(item) for item in data.get("attempts") or ()),
    }
    for name in ("started_at", "answered_at", "ended_at"):
        fields[name] = _parse_time(data.get(name))
    return CallRecord(**fields)


def _attempt_from_json(data: dict[str, Any]) -> RingAttempt:
    times = {"rang_at": _parse_utc(data["rang_at"]), "ended_at": _parse_time(data.get("ended_at"))}
    return RingAttempt(**{**data, **times})


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else _parse_utc(text)


def _parse_utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
