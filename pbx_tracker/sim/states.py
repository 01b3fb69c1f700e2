"""Device, hint and queue member states of the simulated Asterisk.

`PbxStates` keeps what Asterisk's device state core and app_queue would know
and builds the messages Asterisk sends about them: the `DeviceStateChange`,
`ExtensionStatus` and `QueueMemberStatus` events of a change, and the items of
the `DeviceStateList`, `ExtensionStateList` and `QueueStatus` answers.  Field
names, order and codes are those of Asterisk 16-22.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Fields = list[tuple[str, str]]

# device state name -> (ExtensionStatus code, its StatusText), as ast_devstate_to_extenstate()
EXTENSION_STATUS = {
    "NOT_INUSE": ("0", "Idle"),
    "UNKNOWN": ("0", "Idle"),
    "INUSE": ("1", "InUse"),
    "BUSY": ("2", "Busy"),
    "INVALID": ("4", "Unavailable"),
    "UNAVAILABLE": ("4", "Unavailable"),
    "RINGING": ("8", "Ringing"),
    "RINGINUSE": ("9", "InUse&Ringing"),
    "ONHOLD": ("16", "Hold"),
}
# device state name -> the numeric Status of QueueMemberStatus / QueueMember
MEMBER_STATUS = {
    "UNKNOWN": "0",
    "NOT_INUSE": "1",
    "INUSE": "2",
    "BUSY": "3",
    "INVALID": "4",
    "UNAVAILABLE": "5",
    "RINGING": "6",
    "RINGINUSE": "7",
    "ONHOLD": "8",
}


@dataclass
class QueueMember:
    queue: str
    interface: str
    name: str
    paused: bool = False
    reason: str = ""


class PbxStates:
    """States by device (``IAX2/101``), hints by extension, members by queue."""

    def __init__(self) -> None:
        self.devices: dict[str, str] = {}
        self.hints: dict[str, tuple[str, str]] = {}  # exten -> (context, device)
        self.members: list[QueueMember] = []

    def add_hint(self, exten: str, device: str, context: str = "default") -> None:
        self.hints[exten] = (context, device)

    def add_member(self, queue: str, interface: str, name: str | None = None) -> None:
        self.members.append(QueueMember(queue, interface, name or interface))

    def state_of(self, device: str) -> str:
        return self.devices.get(device, "UNKNOWN")

    def change_device(self, device: str, state: str) -> list[Fields]:
        """Record a device's new state; the events Asterisk sends for it."""
        state = state.upper()
        if state not in MEMBER_STATUS:
            raise ValueError(f"unknown device state {state!r}")
        self.devices[device] = state
        events = [[("Event", "DeviceStateChange"), ("Device", device), ("State", state)]]
        for exten, (_, hinted) in self.hints.items():
            if hinted == device:
                events.append([("Event", "ExtensionStatus"), *self._hint_fields(exten)])
        for member in self.members:
            if member.interface == device:
                events.append([("Event", "QueueMemberStatus"), *self._member_fields(member)])
        return events

    def pause(self, interface: str, paused: bool, reason: str = "") -> list[Fields]:
        """Pause or unpause an interface in every queue; the events Asterisk sends."""
        events = []
        for member in self.members:
            if member.interface == interface:
                member.paused, member.reason = paused, reason if paused else ""
                events.append([("Event", "QueueMemberPause"), *self._member_fields(member)])
        return events

    def observe(self, message: Mapping[str, str]) -> None:
        """Follow the states in played traffic, so the lists answer what was played."""
        if message.get("Event") == "DeviceStateChange" and message.get("Device"):
            state = message.get("State", "UNKNOWN").upper()
            if state in MEMBER_STATUS:
                self.devices[message["Device"]] = state

    def device_list(self) -> list[Fields]:
        """`DeviceStateChange` items of a `DeviceStateList` answer."""
        return [
            [("Event", "DeviceStateChange"), ("Device", device), ("State", state)]
            for device, state in self.devices.items()
        ]

    def extension_list(self) -> list[Fields]:
        """`ExtensionStatus` items of an `ExtensionStateList` answer."""
        return [[("Event", "ExtensionStatus"), *self._hint_fields(exten)] for exten in self.hints]

    def member_list(self) -> list[Fields]:
        """`QueueMember` items of a `QueueStatus` answer."""
        return [
            [("Event", "QueueMember"), *self._member_fields(m, listing=True)] for m in self.members
        ]

    def _hint_fields(self, exten: str) -> Fields:
        context, device = self.hints[exten]
        code, text = EXTENSION_STATUS[self.state_of(device)]
        return [
            ("Exten", exten),
            ("Context", context),
            ("Hint", device),
            ("Status", code),
            ("StatusText", text),
        ]

    def _member_fields(self, member: QueueMember, *, listing: bool = False) -> Fields:
        """A member's fields; a `QueueStatus` item says Name/Location for MemberName/Interface."""
        state = self.state_of(member.interface)
        return [
            ("Queue", member.queue),
            ("Name" if listing else "MemberName", member.name),
            ("Location" if listing else "Interface", member.interface),
            ("StateInterface", member.interface),
            ("Membership", "static"),
            ("Penalty", "0"),
            ("CallsTaken", "0"),
            ("LastCall", "0"),
            ("LastPause", "0"),
            ("InCall", "1" if state in ("INUSE", "BUSY", "RINGINUSE", "ONHOLD") else "0"),
            ("Status", MEMBER_STATUS[state]),
            ("Paused", "1" if member.paused else "0"),
            ("PausedReason", member.reason),
            ("Ringinuse", "0"),
            ("Wrapuptime", "0"),
        ]
