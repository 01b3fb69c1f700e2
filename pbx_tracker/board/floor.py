"""The floor now: every manager's state and the callers waiting, as plain JSON values.

A manager's line: their status (the router's own), since when, and the call
they are on (the caller, the number's source, since when) or the caller their
phone rings for.  A waiting caller: who, the number they dialled and its
source, the queue, since when they wait, and whose phones ring for them.
Numbers are shown as people read them (`phones.display_number`); times are
epoch seconds, the browser counts the seconds on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pbx_tracker.calls.live import LiveCall
from pbx_tracker.calls.records import Direction
from pbx_tracker.phones import display_number
from pbx_tracker.routing.availability import ManagerBoard, ManagerView
from pbx_tracker.staff import Directory

__all__ = ["STATUS_TEXT", "Floor"]

Json = dict[str, Any]
STATUS_TEXT = {
    "free": "Free",
    "wrapup": "Wrap-up",
    "reserved": "Being offered a call",
    "ringing": "Ringing",
    "busy": "Busy",
    "on_call": "On a call",
    "paused": "Paused",
    "off_hours": "Off shift",
    "unavailable": "Unreachable",
}


class Floor:
    """Reads the managers' board and the calls in progress; changes neither."""

    def __init__(
        self,
        managers: ManagerBoard,
        live_calls: Callable[[], list[LiveCall]],
        directory: Directory,
        region: str,
    ) -> None:
        self.managers = managers
        self.live_calls = live_calls
        self.directory = directory
        self.region = region

    def now(self, moment: float) -> tuple[list[Json], list[Json]]:
        """(the managers' lines in config order, the waiting callers longest waiting first)."""
        calls = self.live_calls()
        talking = {call.talking_to: call for call in calls if call.talking_to}
        ringing = {extension: call for call in calls for extension in call.ringing}
        lines = [
            self._line(view, talking.get(view.extension), ringing.get(view.extension))
            for view in self.managers.snapshot(moment)
        ]
        waiting = sorted(
            (call for call in calls if call.waiting_since is not None),
            key=lambda call: call.waiting_since or 0.0,
        )
        return lines, [self._waiting(call) for call in waiting]

    def _line(self, view: ManagerView, talking: LiveCall | None, ringing: LiveCall | None) -> Json:
        status = view.status.value
        return {
            "extension": view.extension,
            "name": view.name,
            "group": view.group,
            "status": status,
            "status_text": STATUS_TEXT.get(status, status),
            "since": view.since,
            "calls_today": view.calls_today,
            "call": None if talking is None else self._party(talking, talking.talking_since),
            "ringing_for": None if ringing is None else self._party(ringing, None),
        }

    def _party(self, call: LiveCall, since: float | None) -> Json:
        """The other side of a manager's call (the customer, on a call they placed too)."""
        return {
            "caller": self._number(call.caller),
            "caller_name": call.caller_name,
            "source": self._source(call),
            "direction": call.direction.value,
            "since": since,
        }

    def _waiting(self, call: LiveCall) -> Json:
        return {
            "id": call.linkedid,
            "caller": self._number(call.caller),
            "caller_name": call.caller_name,
            "number": self._number(call.did),
            "source": self._source(call),
            "queue": call.queue,
            "since": call.waiting_since,
            "ringing": self._names(call.ringing),
        }

    def _source(self, call: LiveCall) -> str | None:
        if call.direction is Direction.OUTBOUND:
            return None
        labels = self.directory.find_number(call.did)
        return labels.source if labels is not None else call.source

    def _names(self, extensions: Iterable[str]) -> list[str]:
        names = []
        for extension in extensions:
            manager = self.directory.manager_for_extension(extension)
            names.append(manager.name if manager is not None else extension)
        return names

    def _number(self, number: str | None) -> str | None:
        return display_number(number, self.region) if number else None
