"""What phones, hints and queues say about each manager (`PhoneStates`).

`DeviceStateChange` (``Device``, ``State``) and the queue's view of the same
phones (``QueueMemberStatus`` ``Status``), hints (``ExtensionStatus``), and
queue membership: pauses and ``InCall`` of ``QueueMember*`` events.  Each
handler writes on the manager's `Desk` and returns the manager's extension
(None: the event is about nobody on the board).
"""

from __future__ import annotations

from collections.abc import Mapping

from pbx_tracker.routing.desk import DEVICE_STATUS, MEMBER_DEVICE_STATES, Desk, hint_status
from pbx_tracker.staff import Directory

__all__ = ["PhoneStates", "forget_devices", "forget_hint", "forget_queues"]

Fields = Mapping[str, str]


class PhoneStates:
    """The phone, hint and queue member events of the board's managers, on their desks."""

    def __init__(self, desks: dict[str, Desk], directory: Directory) -> None:
        self.desks = desks
        self.directory = directory

    def manager_of_device(self, device: str) -> str | None:
        """``IAX2/101``, ``IAX2/101/101``, ``hint:101@ctx``, ``Local/101@ctx/n`` -> ``101``."""
        kind, colon, rest = device.partition(":")
        if colon and "/" not in kind:
            number = rest.partition("@")[0] if kind.lower() == "hint" else ""
            return number if number in self.desks else None
        tech, _, name = device.partition("/")
        if tech.lower() == "local":
            number = name.partition("@")[0]
            return number if number in self.desks else None
        manager = self.directory.manager_for_channel(f"{tech}/{name.partition('/')[0]}")
        return manager.extension if manager is not None else None

    def _set_device(self, device: str, state: str) -> str | None:
        extension = self.manager_of_device(device)
        status = DEVICE_STATUS.get(state.upper())
        if extension is None or status is None:
            return None
        self.desks[extension].devices[_device_key(device)] = status
        return extension

    def device_state(self, fields: Fields, moment: float) -> str | None:
        return self._set_device(fields.get("Device", ""), fields.get("State", ""))

    def hint(self, fields: Fields, moment: float) -> str | None:
        extension = fields.get("Exten", "").strip()
        desk = self.desks.get(extension)
        code = _number(fields.get("Status"))
        if desk is None or code is None:
            return None
        desk.hint = None if code < 0 else hint_status(code)
        return extension

    def _member(self, fields: Fields) -> tuple[Desk, str] | None:
        """The manager a queue member event is about, and the queue."""
        interfaces = (fields.get(key, "") for key in ("StateInterface", "Interface", "Location"))
        for interface in filter(None, interfaces):
            extension = self.manager_of_device(interface)
            if extension is not None:
                return self.desks[extension], fields.get("Queue", "")
        return None

    def queue_member(self, fields: Fields, moment: float) -> str | None:
        found = self._member(fields)
        if found is None:
            return None
        desk, queue = found
        if "Paused" in fields:
            _toggle(desk.paused_in, queue, fields.get("Paused") == "1")
        if "InCall" in fields:
            _toggle(desk.in_queue_call, queue, fields.get("InCall") == "1")
        last_call = _number(fields.get("LastCall"))
        if last_call:
            desk.last_call_end = max(float(last_call), desk.last_call_end or 0.0)
        code, device = _number(fields.get("Status")), fields.get("StateInterface", "")
        if code is not None and 0 <= code < len(MEMBER_DEVICE_STATES) and device:
            self._set_device(device, MEMBER_DEVICE_STATES[code])
        return desk.extension

    def member_removed(self, fields: Fields, moment: float) -> str | None:
        found = self._member(fields)
        if found is None:
            return None
        desk, queue = found
        desk.paused_in.discard(queue)
        desk.in_queue_call.discard(queue)
        return desk.extension


def forget_devices(desk: Desk) -> None:
    desk.devices.clear()


def forget_hint(desk: Desk) -> None:
    desk.hint = None


def forget_queues(desk: Desk) -> None:
    desk.paused_in.clear()
    desk.in_queue_call.clear()


def _toggle(items: set[str], item: str, present: bool) -> None:
    if present:
        items.add(item)
    else:
        items.discard(item)


def _number(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _device_key(device: str) -> str:
    tech, sep, name = device.partition("/")
    return f"{tech.lower()}/{name.partition('/')[0]}" if sep else device.lower()
