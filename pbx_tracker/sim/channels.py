"""Asterisk's channel table as the simulator keeps it: one snapshot per live channel,
followed from the events played and listed by `CoreShowChannels`."""

from __future__ import annotations

import time
from collections.abc import Mapping

from pbx_tracker.sim.wire import Fields

SNAPSHOT_KEYS = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)


class ChannelTable:
    """The live channels by Uniqueid (`live`), each with when it was created."""

    def __init__(self) -> None:
        self.live: dict[str, dict[str, str]] = {}
        self._created: dict[str, float] = {}

    def track(self, message: Mapping[str, str]) -> None:
        """Follow one message as Asterisk's channel table would."""
        uniqueid = message.get("Uniqueid", "")
        event = message.get("Event", "")
        if not uniqueid:
            return
        if event == "Newchannel":
            snapshot = {key: message.get(key, "") for key in SNAPSHOT_KEYS}
            snapshot.update(Application="", ApplicationData="", BridgeId="")
            self.live[uniqueid] = snapshot
            self._created[uniqueid] = time.monotonic()
        elif event == "Hangup":
            self.live.pop(uniqueid, None)
            self._created.pop(uniqueid, None)
        elif uniqueid in self.live:
            _update_snapshot(self.live[uniqueid], event, message)

    def clear(self) -> None:
        """No channel left (Asterisk restarted)."""
        self.live.clear()
        self._created.clear()

    def listing(self) -> list[Fields]:
        """One `CoreShowChannel` item per live channel, its duration counted until now."""
        now = time.monotonic()
        return [
            _core_show_channel(snapshot, _duration(now - self._created.get(uniqueid, now)))
            for uniqueid, snapshot in self.live.items()
        ]


def _core_show_channel(snapshot: Mapping[str, str], duration: str) -> Fields:
    fields: Fields = [("Event", "CoreShowChannel")]
    fields.extend((key, snapshot.get(key, "")) for key in SNAPSHOT_KEYS)
    fields.append(("Application", snapshot.get("Application", "")))
    fields.append(("ApplicationData", snapshot.get("ApplicationData", "")))
    fields.append(("Duration", duration))
    fields.append(("BridgeId", snapshot.get("BridgeId", "")))
    return fields


def _update_snapshot(snapshot: dict[str, str], event: str, message: Mapping[str, str]) -> None:
    for key in SNAPSHOT_KEYS:
        if key in message:
            snapshot[key] = message[key]
    if event == "Newexten":
        snapshot["Application"] = message.get("Application", "")
        snapshot["ApplicationData"] = message.get("AppData", "")
    elif event == "BridgeEnter":
        snapshot["BridgeId"] = message.get("BridgeUniqueid", "")
    elif event == "BridgeLeave":
        snapshot["BridgeId"] = ""


def _duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
