"""The correlator's memory of channels and calls in progress."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pbx_tracker.calls.records import Direction
from pbx_tracker.calls.topology import (
    default_manager_for_channel,
    device_of,
    is_local_channel,
)

__all__ = [
    "Call",
    "Channel",
    "Leg",
    "default_manager_for_channel",
    "device_of",
    "is_local_channel",
    "uniqueid_epoch",
]

_UNIQUEID_EPOCH = re.compile(r"(?:^|-)(\d{9,11})\.\d+$")


@dataclass(slots=True)
class Channel:
    """One Asterisk channel (a leg) as far as the correlator cares."""

    uniqueid: str
    name: str
    linkedid: str
    manager: str | None = None
    bridge: str | None = None
    local_peer: str | None = None

    @property
    def is_local(self) -> bool:
        return is_local_channel(self.name)


@dataclass(slots=True)
class Leg:
    """A phone that was rung for a call: a ring attempt."""

    uniqueid: str
    channel: str
    manager: str | None
    rang_at: float
    ended_at: float | None = None
    outcome: str | None = None
    queue: str | None = None
    dialed: str | None = None

    def end(self, time: float, outcome: str | None) -> None:
        """The first terminal status of a leg wins (queues repeat NOANSWER as CANCEL)."""
        if self.ended_at is None:
            self.ended_at = time
        if self.outcome is None and outcome:
            self.outcome = outcome.lower()


@dataclass(slots=True)
class Call:
    """An inbound (or manager-placed) call being correlated, keyed by its Linkedid."""

    linkedid: str
    root: str
    root_channel: str
    direction: Direction
    started_at: float
    did: str | None = None
    did_from_variable: bool = False
    caller: str | None = None
    caller_name: str | None = None
    legs: dict[str, Leg] = field(default_factory=dict)
    channels: set[str] = field(default_factory=set)
    recording: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    answered_by: str | None = None
    answered_at: float | None = None
    transferred_to: str | None = None
    connected_to: str | None = None
    connected_since: float | None = None
    talk: float = 0.0
    caller_hangup_at: float | None = None
    pbx_hangup: bool = False
    queue: str | None = None
    queue_left_at: float | None = None
    queue_abandoned: bool = False
    queue_status: str | None = None
    dial_status: str | None = None
    voicemail: bool = False
    complete: bool = True
    estimated: bool = False
    answered_ms: float | None = None
    dialed_ms: float | None = None
    customer: str | None = None
    placed_by: str | None = None
    cdr_duration: float | None = None
    cdr_billable: float | None = None

    def manager_legs(self) -> list[Leg]:
        return [leg for leg in self.legs.values() if leg.manager is not None]

    def customer_legs(self) -> list[Leg]:
        return [leg for leg in self.legs.values() if leg.manager is None]


def uniqueid_epoch(uniqueid: str) -> float | None:
    """Asterisk Uniqueids start with the channel's creation time in epoch seconds."""
    match = _UNIQUEID_EPOCH.search(uniqueid)
    return float(match.group(1)) if match else None
