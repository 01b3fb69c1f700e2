"""Which managers can take a call now: the board fed with every AMI event.

`ManagerBoard.feed` follows, per manager (by extension):

- phone states: ``DeviceStateChange`` (``Device``, ``State``) and the queue's
  view of them (``QueueMemberStatus`` ``Status``), hints (``ExtensionStatus``);
- queue membership: pauses and ``InCall`` of ``QueueMember*`` events
  (these two read by `phone_states.PhoneStates`);
- its own count of live non-Local channels (``Newchannel`` .. ``Hangup``,
  ringing on ``DialBegin``/ChannelState 5, answered on ChannelState 6 or
  ``BridgeEnter``), which works for phones that report their state badly; the
  hang-up of an answered leg is the manager's last call end (longest idle,
  wrap-up, calls today);
- the router's reservations: a manager offered a call stays reserved until the
  ring time is over, the call's ``DialEnd`` to them, or the call's hang-up.

At start, `routing.restore.restore_last_calls` gives back each manager's last
call end from the call store (the latest end of an answered call they talked on), so longest idle
and wrap-up decide as they would have without the restart; a later end from AMI
wins.

`status` combines them, the most restrictive winning: UNAVAILABLE > OFF_HOURS
> PAUSED > ON_CALL > BUSY > RINGING > RESERVED > WRAPUP > FREE.  A manager is
UNAVAILABLE when the hint says so or every phone with a known state is
unavailable (one phone of two switched off still leaves the other); busy
states of any phone count.  A manager paused in any queue is PAUSED.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.routing.desk import Desk, Leg, ManagerStatus, Reservation
from pbx_tracker.routing.phone_states import (
    PhoneStates,
    forget_devices,
    forget_hint,
    forget_queues,
)
from pbx_tracker.routing.plan import RoutingPlan
from pbx_tracker.routing.settings import RoutingSettings
from pbx_tracker.staff import Directory

__all__ = ["ManagerBoard", "ManagerStatus", "ManagerView"]

Fields = Mapping[str, str]
_RINGING_STATES = frozenset({"0", "5"})  # Down (being set up), Ringing
_UP = "6"
_QUEUE_MEMBER_EVENTS = (
    "QueueMemberStatus",
    "QueueMember",
    "QueueMemberAdded",
    "QueueMemberPause",
    "QueueMemberPaused",
)


@dataclass(frozen=True, slots=True)
class ManagerView:
    """One manager's line on a wallboard."""

    extension: str
    name: str
    group: str | None
    status: ManagerStatus
    since: float | None
    calls_today: int
    last_call_end: float | None
    reserved_for: str | None


class ManagerBoard:
    """Live availability of the configured managers."""

    def __init__(
        self,
        routing: RoutingSettings,
        directory: Directory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.plan = RoutingPlan(routing, directory)
        self._clock = clock
        self._desks = {m.extension: Desk(m.extension) for m in directory.managers}
        self._phones = PhoneStates(self._desks, directory)
        self._leg_owner: dict[str, str] = {}  # Uniqueid -> extension
        self._reserved: dict[str, set[str]] = {}  # call id -> extensions
        self._wrapup = routing.wrapup_seconds
        self._version = 0  # bumped by every change, so cached statuses know they are stale
        self.on_reserve: Callable[[], None] | None = None  # the router offered or freed someone
        self._handlers: dict[str, Callable[[Fields, float], str | None]] = {
            "Newchannel": self._on_channel_state,
            "Newstate": self._on_channel_state,
            "BridgeEnter": self._on_bridge_enter,
            "Hangup": self._on_hangup,
            "DialBegin": self._on_dial_begin,
            "DialEnd": self._on_dial_end,
            "DeviceStateChange": self._phones.device_state,
            "ExtensionStatus": self._phones.hint,
            "QueueMemberRemoved": self._phones.member_removed,
            **{name: self._phones.queue_member for name in _QUEUE_MEMBER_EVENTS},
        }

    # --- events ----------------------------------------------------------------

    def feed(self, event: AmiEvent) -> None:
        """Take one AMI event; events that say nothing about managers are ignored."""
        handler = self._handlers.get(event.fields.get("Event", ""))
        if handler is None:
            return
        self._version += 1
        extension = handler(event.fields, event.time)
        if extension is not None:
            self.status(extension, event.time)

    def resync(
        self,
        *,
        channels: Iterable[Fields] | None = None,
        devices: Iterable[Fields] | None = None,
        extensions: Iterable[Fields] | None = None,
        queue_members: Iterable[Fields] | None = None,
        time: float,
    ) -> None:
        """Replace parts of the view with full lists read after an AMI (re)connect.

        ``channels``: ``CoreShowChannel`` fields; ``devices``: ``DeviceStateChange``
        of ``DeviceStateList``; ``extensions``: ``ExtensionStatus`` of
        ``ExtensionStateList``; ``queue_members``: ``QueueMember`` of
        ``QueueStatus``.  A list left out (None) keeps that part as it is.
        """
        self._version += 1
        if channels is not None:
            self._resync_channels(list(channels), time)
        if devices is not None:
            self._replace(devices, time, forget_devices, self._phones.device_state)
        if extensions is not None:
            self._replace(extensions, time, forget_hint, self._phones.hint)
        if queue_members is not None:
            self._replace(queue_members, time, forget_queues, self._phones.queue_member)
        for extension in self._desks:
            self.status(extension, time)

    def _replace(
        self,
        items: Iterable[Fields],
        moment: float,
        forget: Callable[[Desk], None],
        handler: Callable[[Fields, float], str | None],
    ) -> None:
        for desk in self._desks.values():
            forget(desk)
        for fields in items:
            handler(fields, moment)

    def _resync_channels(self, channels: list[Fields], moment: float) -> None:
        """Legs gone during the gap ended now; reservations of calls gone are released."""
        live = {f.get("Uniqueid", "") for f in channels}
        calls = live | {f.get("Linkedid", "") for f in channels}
        for uniqueid in [u for u in self._leg_owner if u not in live]:
            self._end_leg(uniqueid, moment)
        for call_id in [c for c in self._reserved if c not in calls]:
            self.release(call_id)
        for fields in channels:
            if self._on_channel_state(fields, moment) and fields.get("BridgeId"):
                self._on_bridge_enter(fields, moment)

    # --- channels --------------------------------------------------------------

    def _leg(self, channel: str, uniqueid: str) -> Leg | None:
        """The live leg ``uniqueid`` when ``channel`` is a manager's phone (made if new)."""
        if not uniqueid:
            return None
        extension = self._leg_owner.get(uniqueid)
        if extension is None:
            manager = self.directory.manager_for_channel(channel)
            if manager is None or manager.extension not in self._desks:
                return None
            extension = self._leg_owner[uniqueid] = manager.extension
        desk = self._desks[extension]
        return desk.legs.setdefault(uniqueid, Leg(extension))

    def _on_channel_state(self, fields: Fields, moment: float) -> str | None:
        leg = self._leg(fields.get("Channel", ""), fields.get("Uniqueid", ""))
        if leg is None:
            return None
        state = fields.get("ChannelState", "")
        leg.answered = leg.answered or state == _UP
        leg.ringing = state in _RINGING_STATES or (leg.ringing and state != _UP)
        return leg.extension

    def _on_bridge_enter(self, fields: Fields, moment: float) -> str | None:
        leg = self._leg(fields.get("Channel", ""), fields.get("Uniqueid", ""))
        if leg is None:
            return None
        leg.answered = True
        return leg.extension

    def _on_dial_begin(self, fields: Fields, moment: float) -> str | None:
        leg = self._leg(fields.get("DestChannel", ""), fields.get("DestUniqueid", ""))
        if leg is None:
            return None
        leg.ringing = not leg.answered
        return leg.extension

    def _on_dial_end(self, fields: Fields, moment: float) -> str | None:
        """The call stops ringing this manager: their reservation for it ends."""
        leg = self._leg(fields.get("DestChannel", ""), fields.get("DestUniqueid", ""))
        if leg is None:
            return None
        if fields.get("DialStatus") == "ANSWER":
            leg.ringing, leg.answered = False, True
        desk = self._desks[leg.extension]
        calls = {fields.get("Uniqueid"), fields.get("Linkedid"), fields.get("DestLinkedid")}
        if desk.reservation is not None and desk.reservation.call_id in calls:
            self._drop_reservation(desk)
        return leg.extension

    def _on_hangup(self, fields: Fields, moment: float) -> str | None:
        uniqueid = fields.get("Uniqueid", "")
        if uniqueid in self._reserved:
            self.release(uniqueid)
        return self._end_leg(uniqueid, moment)

    def _end_leg(self, uniqueid: str, moment: float) -> str | None:
        extension = self._leg_owner.pop(uniqueid, None)
        if extension is None:
            return None
        desk = self._desks[extension]
        leg = desk.legs.pop(uniqueid, None)
        if leg is not None and leg.answered:
            # never later than our own clock: an Asterisk clock ahead of ours
            # must not keep the manager in wrap-up
            ended = min(moment, self._clock())
            desk.call_ended(ended, self.plan.local_time(ended).date())
        return extension

    # --- reservations -------------------------------------------------------------

    def reserve(self, extensions: Iterable[str], call_id: str, until: float) -> None:
        """Offer these managers ``call_id``: nobody else gets them until ``until``."""
        now = self._clock()
        for extension in extensions:
            desk = self._desks.get(extension)
            if desk is None:
                continue
            self._drop_reservation(desk)
            desk.reservation, desk.cached = Reservation(call_id, until), None
            self._reserved.setdefault(call_id, set()).add(extension)
            desk.observe(ManagerStatus.RESERVED, now)
        if self.on_reserve is not None:
            self.on_reserve()

    def release(self, call_id: str) -> None:
        """The call is over: its managers are no longer reserved."""
        for extension in self._reserved.pop(call_id, set()):
            desk = self._desks[extension]
            if desk.reservation is not None and desk.reservation.call_id == call_id:
                desk.reservation, desk.cached = None, None

    def _drop_reservation(self, desk: Desk) -> None:
        if desk.reservation is None:
            return
        call_id, desk.reservation, desk.cached = desk.reservation.call_id, None, None
        others = self._reserved.get(call_id, set())
        others.discard(desk.extension)
        if not others:
            self._reserved.pop(call_id, None)

    # --- answers ------------------------------------------------------------------

    def status(
        self, extension: str, now: float | None = None, group: str | None = None
    ) -> ManagerStatus:
        """The manager's status at ``now`` (default: the clock) under ``group``'s hours.

        Working hours are the manager's own, else ``group``'s, else those of the
        manager's own group.  An extension that is no manager is UNAVAILABLE.
        """
        moment = self._clock() if now is None else now
        desk = self._desks.get(extension)
        if desk is None:
            return ManagerStatus.UNAVAILABLE
        status = self._status_of(desk, moment, group)
        desk.observe(status, moment)
        return status

    def _status_of(self, desk: Desk, now: float, group: str | None) -> ManagerStatus:
        """The status, worked out again only after a change or when it may have expired."""
        cached = desk.cached
        if cached is not None and cached[:2] == (self._version, group) and now < cached[3]:
            return cached[2]
        status, until = self._work_out(desk, now, group)
        desk.cached = (self._version, group, status, until)
        return status

    def _work_out(self, desk: Desk, now: float, group: str | None) -> tuple[ManagerStatus, float]:
        """The status at ``now``, and until when it holds unless something changes."""
        if desk.unavailable():
            return ManagerStatus.UNAVAILABLE, math.inf
        hours = self.plan.hours_for(desk.extension, group)
        until = math.inf if hours is None else (now // 60 + 1) * 60  # hours turn at a minute
        if hours is not None and not self.plan.is_open(hours, now):
            return ManagerStatus.OFF_HOURS, until
        if desk.paused_in:
            return ManagerStatus.PAUSED, until
        engaged = desk.engaged()
        if engaged is not ManagerStatus.FREE:
            return engaged, until
        if desk.reservation is not None:
            if desk.reservation.until > now:
                return ManagerStatus.RESERVED, min(until, desk.reservation.until)
            self._drop_reservation(desk)
        if desk.last_call_end is not None and now < desk.last_call_end + self._wrapup:
            return ManagerStatus.WRAPUP, min(until, desk.last_call_end + self._wrapup)
        return ManagerStatus.FREE, until

    def restore_last_calls(self, ends: Mapping[str, float]) -> None:
        """Last call ends read back from the call store after a restart (epoch seconds);
        a later end the AMI events told stays, none is later than our clock."""
        self._version += 1
        now = self._clock()
        for extension, ended in ends.items():
            desk = self._desks.get(extension)
            if desk is not None:
                desk.last_call_end = max(min(ended, now), desk.last_call_end or 0.0)

    def last_call_end(self, extension: str) -> float | None:
        """When the manager's last answered call ended (epoch seconds), if known."""
        desk = self._desks.get(extension)
        return None if desk is None else desk.last_call_end

    def snapshot(self, now: float | None = None) -> list[ManagerView]:
        """Every manager in config order, for a wallboard."""
        moment = self._clock() if now is None else now
        today = self.plan.local_time(moment).date()
        views = []
        for manager in self.directory.managers:
            desk = self._desks[manager.extension]
            status = self.status(manager.extension, moment)
            home = self.plan.home_group(manager.extension)
            reservation = desk.reservation
            if reservation is not None and reservation.until <= moment:
                reservation = None
            views.append(
                ManagerView(
                    extension=manager.extension,
                    name=manager.name,
                    group=manager.group
                    or (home.name if home and self.plan.routing.groups else None),
                    status=status,
                    since=desk.since[1] if desk.since else None,
                    calls_today=desk.calls_on(today),
                    last_call_end=desk.last_call_end,
                    reserved_for=reservation.call_id if reservation is not None else None,
                )
            )
        return views
