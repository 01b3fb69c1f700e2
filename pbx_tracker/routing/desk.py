"""What the board knows about one manager: phones, live legs, queue membership, reservation.

`Desk` keeps the raw facts; `ManagerBoard` (availability.py) turns them into
one `ManagerStatus`.  Statuses are declared from least to most restrictive, so
comparing their `rank` picks the one that wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum


class ManagerStatus(StrEnum):
    """Can this manager take a call now?  Declared from least to most restrictive."""

    FREE = "free"
    WRAPUP = "wrapup"
    RESERVED = "reserved"
    RINGING = "ringing"
    BUSY = "busy"
    ON_CALL = "on_call"
    PAUSED = "paused"
    OFF_HOURS = "off_hours"
    UNAVAILABLE = "unavailable"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {status: index for index, status in enumerate(ManagerStatus)}

# DeviceStateChange State -> status (UNKNOWN counts as available, as in app_queue)
DEVICE_STATUS = {
    "NOT_INUSE": ManagerStatus.FREE,
    "UNKNOWN": ManagerStatus.FREE,
    "INUSE": ManagerStatus.ON_CALL,
    "ONHOLD": ManagerStatus.ON_CALL,
    "RINGINUSE": ManagerStatus.ON_CALL,
    "BUSY": ManagerStatus.BUSY,
    "RINGING": ManagerStatus.RINGING,
    "UNAVAILABLE": ManagerStatus.UNAVAILABLE,
    "INVALID": ManagerStatus.UNAVAILABLE,
}
# QueueMemberStatus / QueueMember `Status`: the device state as a number
MEMBER_DEVICE_STATES = (
    "UNKNOWN",
    "NOT_INUSE",
    "INUSE",
    "BUSY",
    "INVALID",
    "UNAVAILABLE",
    "RINGING",
    "RINGINUSE",
    "ONHOLD",
)


def hint_status(code: int) -> ManagerStatus:
    """ExtensionStatus `Status` (bits: 1 in use, 2 busy, 4 unavailable, 8 ringing, 16 hold)."""
    if code & 4:
        return ManagerStatus.UNAVAILABLE
    if code & 2:
        return ManagerStatus.BUSY
    if code & (1 | 16):
        return ManagerStatus.ON_CALL
    if code & 8:
        return ManagerStatus.RINGING
    return ManagerStatus.FREE


@dataclass(slots=True)
class Leg:
    """A live non-Local channel of a manager's phone."""

    extension: str
    ringing: bool = False
    answered: bool = False

    @property
    def status(self) -> ManagerStatus:
        if self.answered:
            return ManagerStatus.ON_CALL
        return ManagerStatus.RINGING if self.ringing else ManagerStatus.ON_CALL


@dataclass(frozen=True, slots=True)
class Reservation:
    """The router offered this manager a call; nobody else gets them until `until`."""

    call_id: str
    until: float


@dataclass(slots=True)
class Desk:
    """One manager's facts, as the AMI events told them."""

    extension: str
    devices: dict[str, ManagerStatus] = field(default_factory=dict)
    hint: ManagerStatus | None = None
    paused_in: set[str] = field(default_factory=set)
    in_queue_call: set[str] = field(default_factory=set)
    legs: dict[str, Leg] = field(default_factory=dict)
    reservation: Reservation | None = None
    last_call_end: float | None = None
    calls_day: date | None = None
    calls_today: int = 0
    since: tuple[ManagerStatus, float] | None = None
    # (board version, group, status, valid until): see ManagerBoard._status_of
    cached: tuple[int, str | None, ManagerStatus, float] | None = None

    def unavailable(self) -> bool:
        """The hint says so, or every phone with a known state is unavailable."""
        if self.hint is ManagerStatus.UNAVAILABLE:
            return True
        if not self.devices:
            return False
        return all(s is ManagerStatus.UNAVAILABLE for s in self.devices.values())

    def engaged(self) -> ManagerStatus:
        """The most restrictive of phones, hint, own legs and queue calls (FREE if none)."""
        worst = ManagerStatus.ON_CALL if self.in_queue_call else ManagerStatus.FREE
        if self.hint is not None and _RANK[self.hint] > _RANK[worst]:
            worst = self.hint
        for status in self.devices.values():
            if status is not ManagerStatus.UNAVAILABLE and _RANK[status] > _RANK[worst]:
                worst = status
        for leg in self.legs.values():
            if _RANK[leg.status] > _RANK[worst]:
                worst = leg.status
        return worst

    def call_ended(self, moment: float, day: date) -> None:
        """An answered call of this manager ended at ``moment`` (local ``day``)."""
        self.last_call_end = max(moment, self.last_call_end or moment)
        if self.calls_day != day:
            self.calls_day, self.calls_today = day, 0
        self.calls_today += 1

    def calls_on(self, day: date) -> int:
        return self.calls_today if self.calls_day == day else 0

    def observe(self, status: ManagerStatus, moment: float) -> None:
        """Remember when the status last changed."""
        if self.since is None or self.since[0] is not status:
            self.since = (status, moment)
