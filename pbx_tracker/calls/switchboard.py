"""The channels and bridges as Asterisk has them now: who is linked to whom.

Two channels are linked when they are in the same bridge, or when they are
the two halves (``;1`` and ``;2``) of one Local channel.  The caller talks to
whoever is reachable from their channel over such links, however many Local
halves deep, and whether or not Asterisk optimised some halves away (it then
moves the real channels between bridges, which the bridge events show).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from pbx_tracker.calls.state import Channel

__all__ = ["Switchboard"]


class Switchboard:
    """Channels by Uniqueid, bridges by id, and the Local pairs between them."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self._bridges: dict[str, set[str]] = {}
        self._by_name: dict[str, str] = {}  # Local channels only: name → Uniqueid

    def get(self, uniqueid: str) -> Channel | None:
        return self.channels.get(uniqueid)

    def add(self, channel: Channel) -> None:
        self.channels[channel.uniqueid] = channel
        if channel.is_local:
            self._by_name[channel.name] = channel.uniqueid

    def remove(self, uniqueid: str) -> Channel | None:
        """Forget a channel that hung up (it leaves its bridge)."""
        channel = self.channels.pop(uniqueid, None)
        if channel is not None:
            self.leave(channel)
            if self._by_name.get(channel.name) == uniqueid:
                del self._by_name[channel.name]
        return channel

    def keep_only(self, live: Iterable[str]) -> None:
        """After a resync: forget every channel Asterisk no longer has."""
        alive = set(live)
        for uniqueid in [u for u in self.channels if u not in alive]:
            self.remove(uniqueid)

    # -- links ------------------------------------------------------------

    def enter(self, channel: Channel, bridge: str) -> list[Channel]:
        """``channel`` joins ``bridge``; the channels now in it."""
        self.leave(channel)
        channel.bridge = bridge
        members = self._bridges.setdefault(bridge, set())
        members.add(channel.uniqueid)
        return [self.channels[m] for m in members if m in self.channels]

    def leave(self, channel: Channel) -> None:
        if channel.bridge is None:
            return
        members = self._bridges.get(channel.bridge)
        if members is not None:
            members.discard(channel.uniqueid)
            if not members:
                del self._bridges[channel.bridge]
        channel.bridge = None

    def pair(self, one: str, two: str) -> None:
        """The two halves of one Local channel (LocalBridge)."""
        if one in self.channels and two in self.channels:
            self.channels[one].local_peer = two
            self.channels[two].local_peer = one

    def other_half(self, channel: Channel) -> Channel | None:
        """The other half of a Local channel, by LocalBridge or else by name."""
        if not channel.is_local:
            return None
        if channel.local_peer is not None:
            return self.channels.get(channel.local_peer)
        base, half = channel.name[:-2], channel.name[-2:]
        twin = {";1": ";2", ";2": ";1"}.get(half)
        if twin is None:
            return None
        return self.channels.get(self._by_name.get(base + twin, ""))

    # -- walks --------------------------------------------------------------

    def reachable(self, start: str) -> list[Channel]:
        """Channels linked to ``start`` over bridges and Local pairs, nearest first.

        Only channels a person may be on are returned (no Local halves,
        announcers or snoops), never ``start`` itself.
        """
        seen = {start}
        todo = deque([start])
        found: list[Channel] = []
        while todo:
            channel = self.channels.get(todo.popleft())
            if channel is None:
                continue
            if channel.uniqueid != start and channel.is_person:
                found.append(channel)
            for neighbour in self._neighbours(channel):
                if neighbour not in seen:
                    seen.add(neighbour)
                    todo.append(neighbour)
        return found

    def _neighbours(self, channel: Channel) -> Iterator[str]:
        if channel.bridge is not None:
            yield from sorted(self._bridges.get(channel.bridge, ()))
        other = self.other_half(channel)
        if other is not None:
            yield other.uniqueid

    def dialling_locals(self, channel: Channel) -> Iterator[Channel]:
        """The Local channels that led to ``channel``, nearest first (the ``;1`` halves).

        ``Local/103@from-internal;2`` dialled the phone; its ``;1`` half was
        dialled by whatever rang it, which may be another Local, and so on up
        to the caller.
        """
        seen: set[str] = set()
        dialer = self.channels.get(channel.dialed_by or "")
        while dialer is not None and dialer.is_local and dialer.uniqueid not in seen:
            seen.add(dialer.uniqueid)
            dialled = dialer if dialer.name.endswith(";1") else self.other_half(dialer) or dialer
            yield dialled
            dialer = self.channels.get(dialled.dialed_by or "")
