"""The correlator's memory of channels and calls in progress."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pbx_tracker.calls.offers import Offer, latest
from pbx_tracker.calls.records import Direction
from pbx_tracker.calls.topology import (
    Reach,
    default_manager_for_channel,
    device_of,
    is_local_channel,
    is_pseudo_channel,
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
    """One Asterisk channel as far as the correlator cares.

    ``dialed_by`` is the channel whose Dial (or queue) created it, with the
    ``dial_string`` it used; ``queue`` the queue that rang it; ``reach`` who it
    reaches, decided once when it is first needed.
    """

    uniqueid: str
    name: str
    linkedid: str
    manager: str | None = None
    bridge: str | None = None
    local_peer: str | None = None
    dialed_by: str | None = None
    dial_string: str | None = None
    queue: str | None = None
    reach: Reach | None = None

    @property
    def is_local(self) -> bool:
        return is_local_channel(self.name)

    @property
    def is_person(self) -> bool:
        """A channel a human may be on: not a Local half, announcer, recorder or snoop."""
        return not is_pseudo_channel(self.name)


@dataclass(slots=True)
class Leg:
    """A phone or number that was rung for a call: a ring attempt."""

    uniqueid: str
    channel: str
    manager: str | None
    rang_at: float
    ended_at: float | None = None
    outcome: str | None = None
    queue: str | None = None
    dialed: str | None = None
    via: str | None = None
    number: str | None = None
    connected: bool = False
    caller_dest: str | None = None  # what the caller's Dial rang to reach it (a Local ;1, or it)

    def end(self, time: float, outcome: str | None) -> None:
        """The first terminal status of a leg wins (queues repeat NOANSWER as CANCEL)."""
        if self.ended_at is None:
            self.ended_at = time
        if self.outcome is None and outcome:
            self.outcome = outcome.lower()


@dataclass(slots=True)
class Call:
    """An inbound (or manager-placed) call being correlated, keyed by its Linkedid.

    ``offers`` is what the caller went through while waiting (each Dial of
    their channel, each queue stint); ``connected_to`` the channel of the party
    the caller is talking to now, ``answered_*`` the first one.
    """

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
    offers: list[Offer] = field(default_factory=list)
    answered_by: str | None = None
    answered_at: float | None = None
    answered_via: str | None = None
    answered_number: str | None = None
    transferred_to: str | None = None
    connected_to: str | None = None
    connected_party: tuple[str | None, str | None] | None = None
    connected_since: float | None = None
    disconnected_at: float | None = None
    talk: float = 0.0
    transfer_wait: float = 0.0
    caller_hangup_at: float | None = None
    pbx_hangup: bool = False
    hangup_cause: str | None = None
    queue: str | None = None
    voicemail_at: float | None = None
    complete: bool = True
    customer: str | None = None
    placed_by: str | None = None

    def manager_legs(self) -> list[Leg]:
        return [leg for leg in self.legs.values() if leg.manager is not None]

    def customer_legs(self) -> list[Leg]:
        return [leg for leg in self.legs.values() if leg.manager is None]

    def last_offer(self, kind: str | None = None) -> Offer | None:
        """The latest offer (of that kind)."""
        return latest(self.offers, kind)


def uniqueid_epoch(uniqueid: str) -> float | None:
    """Asterisk Uniqueids start with the channel's creation time in epoch seconds."""
    match = _UNIQUEID_EPOCH.search(uniqueid)
    return float(match.group(1)) if match else None
