"""What a gap in the AMI stream (a reconnect) costs the calls in progress.

Calls whose root channel vanished ended in the gap (`ended_in_gap`); the others
lost what happened in it unless Asterisk's CEL log told it, and that account
adds only what was missed (`HeardEvents.news`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.state import Call

__all__ = ["HeardEvents", "ended_in_gap"]

_GAP_OVERLAP = 1.0  # seconds before the last event heard that CEL's account is compared
_HAPPENING_FIELDS = (
    "Uniqueid",
    "DestUniqueid",
    "DialStatus",
    "ChannelState",
    "BridgeUniqueid",
    "Variable",
    "Value",
)


class HeardEvents:
    """The events heard of each call in progress (by Linkedid)."""

    def __init__(self) -> None:
        self._heard: dict[str, list[AmiEvent]] = {}

    def remember(self, linkedid: str, event: AmiEvent) -> None:
        self._heard.setdefault(linkedid, []).append(event)

    def forget(self, linkedid: str) -> None:
        """The call is over: nothing more will be compared with its history."""
        self._heard.pop(linkedid, None)

    def news(self, linkedid: str, events: Iterable[AmiEvent]) -> list[AmiEvent]:
        """Of a call in progress's whole history (told from CEL after a gap), the events
        not heard: from about the last one heard on (a second before it: AMI's and CEL's
        clocks of one moment differ by microseconds), and none heard already."""
        heard = self._heard.get(linkedid, [])
        since = max((event.time for event in heard), default=0.0) - _GAP_OVERLAP
        known = {_what_happened(event) for event in heard if event.time > since}
        return [
            event for event in events if event.time > since and _what_happened(event) not in known
        ]


def ended_in_gap(
    calls: Sequence[Call], live: Collection[str], filled: Collection[str]
) -> list[Call]:
    """The calls whose root channel is no longer live (Uniqueids in ``live``): they ended
    in the gap.  Every call the gap hid part of is marked incomplete: those, and the
    calls still going whose Linkedid is not in ``filled`` (told from CEL)."""
    ended = []
    for call in calls:
        if call.root not in live:
            call.complete = False
            ended.append(call)
        elif call.linkedid not in filled:
            call.complete = False
    return ended


def _what_happened(event: AmiEvent) -> tuple[str, ...]:
    """An event's happening, the same whether AMI or CEL told it."""
    return (event.name, *(event.get(name) for name in _HAPPENING_FIELDS))
