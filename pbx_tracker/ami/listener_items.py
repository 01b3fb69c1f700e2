"""What the AMI listener queues, in arrival order: each `AmiEvent`, a `Resync` after
every login and one `StateList` per list of states (see `pbx_tracker.ami.connection`)."""

from __future__ import annotations

from dataclasses import dataclass

from pbx_tracker.calls.events import AmiEvent

__all__ = ["STATE_LISTS", "ListenerItem", "Resync", "StateList"]


@dataclass(frozen=True)
class Resync:
    """The channels Asterisk reported (`CoreShowChannel` events) right after a (re)login."""

    channels: list[AmiEvent]
    time: float


@dataclass(frozen=True)
class StateList:
    """One full list of states Asterisk reported right after a (re)login.

    `kind` is "devices" (`DeviceStateChange` events of `DeviceStateList`),
    "extensions" (`ExtensionStatus` of `ExtensionStateList`) or "queue_members"
    (`QueueMember` of `QueueStatus`).
    """

    kind: str
    items: list[AmiEvent]
    time: float


ListenerItem = AmiEvent | Resync | StateList

# action, the event that carries one item, the kind of the StateList
STATE_LISTS = (
    ("DeviceStateList", "DeviceStateChange", "devices"),
    ("ExtensionStateList", "ExtensionStatus", "extensions"),
    ("QueueStatus", "QueueMember", "queue_members"),
)
