"""The correlator: AMI events in, finished call records out.

Pure code: no I/O, no clock, no database.  Time comes with each event.  A call
is rooted at the channel that started it (the carrier's channel in an inbound
context, or the first channel of an originated call) and grouped by Linkedid;
a `Uniqueid → call` map keeps legs attached even when Asterisk rewrites a
channel's Linkedid in a transfer.

"Answered" means a manager's phone was connected to the caller (bridged, via
Local channel pairs if need be, or `AgentConnect` in a queue) — never the
caller's channel going Up, which an IVR, a queue or voicemail also do.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pbx_tracker.calls.events import AmiEvent, channel_variables
from pbx_tracker.calls.outcome import build_record
from pbx_tracker.calls.records import CallRecord, Direction
from pbx_tracker.calls.state import (
    Call,
    Channel,
    Leg,
    device_of,
    is_local_channel,
    uniqueid_epoch,
)
from pbx_tracker.calls.topology import Topology

__all__ = ["Correlator", "FailedEvent", "Topology"]

KEPT_VARIABLE_PREFIXES = ("TRACK_", "CALLBACK_", "ROUTE_")
_FINISHED_MEMORY = 10_000
_UNTIMED_CLOSING_EVENTS = 500
_FAILURES_KEPT = 1_000


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """An event the correlator could not apply: what it was, which call, what went wrong."""

    event: AmiEvent
    error: str
    linkedid: str | None


class Correlator:
    """Feed AMI events in arrival order; get each call's record when it ends."""

    def __init__(self, topology: Topology | None = None) -> None:
        self.topology = topology or Topology()
        self._channels: dict[str, Channel] = {}
        self._calls: dict[str, Call] = {}
        self._bridges: dict[str, set[str]] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._closing: OrderedDict[str, tuple[Call, float, int]] = OrderedDict()
        self.events_seen = 0
        self.events_failed = 0
        self.failures: deque[FailedEvent] = deque(maxlen=_FAILURES_KEPT)

    @property
    def calls_in_progress(self) -> int:
        return len(self._calls)

    def feed(self, event: AmiEvent) -> list[CallRecord]:
        """Apply one event; return the records of the calls it finished."""
        self.events_seen += 1
        records = self._close_overdue() if self._closing else []
        handler = _HANDLERS.get(event.name)
        if handler is None:
            return records
        try:
            return records + (handler(self, event) or [])
        except Exception as error:  # one bad event must not lose the others
            self.events_failed += 1
            linkedid = event.get("Linkedid") or self._linkedid_of(event.get("Uniqueid")) or None
            self.failures.append(FailedEvent(event, type(error).__name__, linkedid))
            return records

    def take_failures(self) -> list[FailedEvent]:
        """The events that could not be applied since the last call (at most the last 1000)."""
        failed = list(self.failures)
        self.failures.clear()
        return failed

    def flush(self) -> list[CallRecord]:
        """At the end of a capture: finish calls that hung up but were waiting for their Cdr."""
        return self._close_overdue(until=float("inf"))

    def _close_overdue(self, until: float | None = None) -> list[CallRecord]:
        records: list[CallRecord] = []
        limit = self.events_seen if until is None else until
        while self._closing:
            call, time, deadline = next(iter(self._closing.values()))
            if deadline > limit:
                break
            self._closing.popitem(last=False)
            records.extend(self._record(call, time))
        return records

    def feed_all(self, events: Iterable[AmiEvent]) -> list[CallRecord]:
        records: list[CallRecord] = []
        for event in events:
            records.extend(self.feed(event))
        return records

    # -- channels ---------------------------------------------------------

    def _on_newchannel(self, event: AmiEvent) -> None:
        self._call_of(event, late=False)

    def _register(self, uniqueid: str, name: str, linkedid: str) -> Channel:
        manager = None if is_local_channel(name) else self.topology.manager_for_channel(name)
        channel = Channel(uniqueid=uniqueid, name=name, linkedid=linkedid, manager=manager)
        self._channels[uniqueid] = channel
        return channel

    def _start_call(self, channel: Channel, event: AmiEvent, *, late: bool = False) -> None:
        if channel.is_local and not late:
            direction = Direction.OUTBOUND
        elif event.get("Context") in self.topology.inbound_contexts:
            direction = Direction.INBOUND
        elif channel.manager is not None or channel.is_local:
            direction = Direction.OUTBOUND
        elif late:
            direction = Direction.INBOUND
        else:
            return
        started = event.time
        if late:
            started = min(uniqueid_epoch(channel.uniqueid) or started, started)
        call = Call(
            linkedid=channel.linkedid,
            root=channel.uniqueid,
            root_channel=channel.name,
            direction=direction,
            started_at=started,
            complete=not late,
            estimated=event.estimated,
        )
        call.channels.add(channel.uniqueid)
        call.placed_by = channel.manager
        if direction is Direction.INBOUND:
            call.did = event.get("Exten") or None
            call.caller = _known(event.get("CallerIDNum"))
            call.caller_name = _known(event.get("CallerIDName"))
        self._calls[call.linkedid] = call

    def _call_of(self, event: AmiEvent, prefix: str = "", *, late: bool = True) -> Call | None:
        """The call a channel event belongs to, adopting channels met for the first time.

        A root channel (Uniqueid == Linkedid) first met on any event but its
        Newchannel belongs to a call that began before we were listening (`late`).
        """
        uniqueid = event.get(prefix + "Uniqueid")
        if not uniqueid:
            return None
        channel = self._channels.get(uniqueid)
        if channel is None:
            linkedid = event.get(prefix + "Linkedid") or uniqueid
            channel = self._register(uniqueid, event.get(prefix + "Channel"), linkedid)
            call = self._calls.get(linkedid)
            if call is not None:
                call.channels.add(uniqueid)
            elif uniqueid == linkedid and linkedid not in self._finished and not prefix:
                self._start_call(channel, event, late=late)
        call = self._calls.get(channel.linkedid)
        if call is not None and event.estimated:
            call.estimated = True
        return call

    # -- variables --------------------------------------------------------

    def _on_varset(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        if call is not None:
            name = event.get("Variable").lstrip("_")
            self._apply_variable(call, event.get("Uniqueid"), name, event.get("Value"))

    def _apply_variables(self, call: Call, event: AmiEvent) -> None:
        for name, value in channel_variables(event.fields).items():
            self._apply_variable(call, event.get("Uniqueid"), name.lstrip("_"), value)

    def _apply_variable(self, call: Call, uniqueid: str, name: str, value: str) -> None:
        on_root = uniqueid == call.root
        is_did = name == self.topology.did_variable and call.direction is Direction.INBOUND
        if is_did and value and (on_root or not call.did_from_variable):
            call.did, call.did_from_variable = value, True
        if name == "MIXMONITOR_FILENAME" and value and (on_root or call.recording is None):
            call.recording = value
        if name.startswith(KEPT_VARIABLE_PREFIXES) and value:
            call.variables[name] = value
        if not on_root or not value:
            return
        if name == "DIALSTATUS":
            call.dial_status = value.upper()
        elif name == "QUEUESTATUS":
            call.queue_status = value.upper()
        elif name == "ANSWEREDTIME_MS":
            call.answered_ms = _number(value)
        elif name == "DIALEDTIME_MS":
            call.dialed_ms = _number(value)

    def _on_newexten(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        on_root = call is not None and event.get("Uniqueid") == call.root
        if call is not None and on_root and event.get("Application").lower() == "voicemail":
            call.voicemail = True

    def _on_snapshot(self, event: AmiEvent) -> None:
        """Any other channel event: adopt unknown channels, read `ChanVariable`s."""
        call = self._call_of(event)
        if call is not None and "ChanVariable" in event.fields:
            self._apply_variables(call, event)

    # -- dialing ----------------------------------------------------------

    def _on_dial_begin(self, event: AmiEvent) -> None:
        call = self._call_of(event, "Dest") or self._call_of(event)
        dest = event.get("DestUniqueid")
        if call is None or not dest:
            return
        channel = self._channels[dest]
        call.channels.add(dest)
        if channel.is_local or dest in call.legs or dest == call.root:
            return
        dialed = _dialed_number(event)
        call.legs[dest] = Leg(dest, channel.name, channel.manager, event.time, dialed=dialed)
        if call.direction is Direction.OUTBOUND:
            if channel.manager is None and call.customer is None:
                call.customer, call.did = dialed, _known(event.get("CallerIDNum"))
            call.placed_by = call.placed_by or channel.manager

    def _on_dial_end(self, event: AmiEvent) -> None:
        call = self._call_of(event, "Dest") or self._call_of(event)
        if call is None:
            return
        status = event.get("DialStatus").upper()
        leg = call.legs.get(event.get("DestUniqueid"))
        if leg is not None:
            leg.end(event.time, status)
        inbound = call.direction is Direction.INBOUND
        if status == "ANSWER" and inbound and leg is not None and leg.manager is not None:
            self._connect(call, leg.manager, event.time)

    def _on_agent_called(self, event: AmiEvent) -> None:
        self._on_dial_begin(event)
        call = self._call_of(event)
        leg = call.legs.get(event.get("DestUniqueid")) if call else None
        if leg is not None:
            leg.queue = event.get("Queue") or None
            if leg.manager is None:
                leg.manager = self._queue_member(event)

    def _queue_member(self, event: AmiEvent) -> str | None:
        interface = event.get("Interface") or event.get("DestChannel")
        return self.topology.manager_for_channel(interface) or _known(event.get("MemberName"))

    def _on_agent_ring_no_answer(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        leg = call.legs.get(event.get("DestUniqueid")) if call else None
        if leg is not None:
            leg.end(event.time, "NOANSWER")

    def _on_agent_connect(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        if call is None:
            return
        leg = call.legs.get(event.get("DestUniqueid"))
        manager = leg.manager if leg and leg.manager else self._queue_member(event)
        if leg is not None:
            leg.end(event.time, "ANSWER")
        if manager is not None:
            self._connect(call, manager, event.time)

    # -- queues -----------------------------------------------------------

    def _on_queue_join(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        if call is not None:
            call.queue = call.queue or event.get("Queue") or None

    def _on_queue_leave(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        if call is not None:
            call.queue_left_at = event.time

    def _on_queue_abandon(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        if call is not None:
            call.queue_abandoned = True
            call.queue_left_at = event.time

    # -- bridges ----------------------------------------------------------

    def _on_local_bridge(self, event: AmiEvent) -> None:
        one, two = event.get("LocalOneUniqueid"), event.get("LocalTwoUniqueid")
        self._call_of(event, "LocalOne")
        self._call_of(event, "LocalTwo")
        if one in self._channels and two in self._channels:
            self._channels[one].local_peer = two
            self._channels[two].local_peer = one

    def _on_bridge_enter(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        uniqueid, bridge = event.get("Uniqueid"), event.get("BridgeUniqueid")
        channel = self._channels.get(uniqueid)
        if channel is None or not bridge:
            return
        self._leave_bridge(channel)
        channel.bridge = bridge
        self._bridges.setdefault(bridge, set()).add(uniqueid)
        for member in self._bridges[bridge]:
            other = self._calls.get(self._channels[member].linkedid)
            if other is not None and other is not call:
                self._reconsider(other, event.time)
        if call is not None:
            self._reconsider(call, event.time)

    def _on_bridge_leave(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        channel = self._channels.get(event.get("Uniqueid"))
        if channel is None:
            return
        self._leave_bridge(channel)
        if call is not None:
            self._reconsider(call, event.time)

    def _leave_bridge(self, channel: Channel) -> None:
        if channel.bridge is None:
            return
        members = self._bridges.get(channel.bridge)
        if members is not None:
            members.discard(channel.uniqueid)
            if not members:
                del self._bridges[channel.bridge]
        channel.bridge = None

    def _reconsider(self, call: Call, time: float) -> None:
        """Who is the caller talking to now that a bridge changed?"""
        peer = self._connected_party(call)
        if call.direction is Direction.OUTBOUND:
            self._connect_outbound(call, peer, time)
        elif peer is None:
            self._disconnect(call, time)
        else:
            self._connect(call, peer, time)

    def _connected_party(self, call: Call) -> str | None:
        """The manager (inbound) or customer leg (outbound) bridged with the call's root."""
        seen: set[str] = set()
        todo = [call.root]
        while todo:
            uniqueid = todo.pop()
            if uniqueid in seen or uniqueid not in self._channels:
                continue
            seen.add(uniqueid)
            channel = self._channels[uniqueid]
            if uniqueid != call.root and self._is_party(call, channel):
                return channel.manager if call.direction is Direction.INBOUND else uniqueid
            if channel.bridge is not None:
                todo.extend(self._bridges.get(channel.bridge, ()))
            if channel.local_peer is not None:
                todo.append(channel.local_peer)
            elif channel.is_local:
                todo.extend(self._local_twins(channel))
        return None

    def _is_party(self, call: Call, channel: Channel) -> bool:
        if channel.is_local:
            return False
        if call.direction is Direction.INBOUND:
            return channel.manager is not None
        return channel.manager is None

    def _local_twins(self, channel: Channel) -> list[str]:
        """The other half of a Local pair, by name, when no LocalBridge event was seen."""
        base = device_of(channel.name)
        return [
            other.uniqueid
            for other in self._channels.values()
            if other.is_local
            and other.uniqueid != channel.uniqueid
            and device_of(other.name) == base
            and other.name[:-2] == channel.name[:-2]
        ]

    def _connect(self, call: Call, manager: str, time: float) -> None:
        if call.answered_by is None:
            call.answered_by, call.answered_at = manager, time
        if call.connected_to != manager:
            self._disconnect(call, time)
            call.connected_to, call.connected_since = manager, time
            if manager != call.answered_by or call.transferred_to is not None:
                call.transferred_to = manager

    def _disconnect(self, call: Call, time: float) -> None:
        if call.connected_since is not None:
            call.talk += max(0.0, time - call.connected_since)
        call.connected_to, call.connected_since = None, None

    def _connect_outbound(self, call: Call, customer_leg: str | None, time: float) -> None:
        if customer_leg is None:
            self._disconnect(call, time)
            return
        if call.answered_at is None:
            call.answered_at = time
            leg = call.legs.get(customer_leg)
            if leg is not None:
                leg.end(time, "ANSWER")
        call.answered_by = call.answered_by or call.placed_by
        if call.connected_since is None:
            call.connected_to, call.connected_since = customer_leg, time

    # -- hangups ----------------------------------------------------------

    def _on_hangup_request(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        if call is None or event.get("Uniqueid") != call.root:
            return
        if call.caller_hangup_at is None and not call.pbx_hangup:
            call.caller_hangup_at = event.time

    def _on_soft_hangup_request(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        if call is not None and event.get("Uniqueid") == call.root:
            call.pbx_hangup = True

    def _on_hangup(self, event: AmiEvent) -> list[CallRecord] | None:
        uniqueid = event.get("Uniqueid")
        call = self._call_of(event)
        channel = self._channels.pop(uniqueid, None)
        if channel is not None:
            self._leave_bridge(channel)
        if call is None:
            return None
        leg = call.legs.get(uniqueid)
        if leg is not None:
            leg.end(event.time, _cause_outcome(event.get("Cause")))
        if uniqueid != call.root:
            call.channels.discard(uniqueid)
            self._reconsider(call, event.time)
            return None
        return self._finish(call, event.time)

    def _finish(self, call: Call, time: float) -> list[CallRecord]:
        self._disconnect(call, time)
        del self._calls[call.linkedid]
        self._finished[call.linkedid] = None
        while len(self._finished) > _FINISHED_MEMORY:
            self._finished.popitem(last=False)
        if call.estimated and call.cdr_duration is None:
            # No clock in this capture: wait a little for the Cdr, which states the durations.
            deadline = self.events_seen + _UNTIMED_CLOSING_EVENTS
            self._closing[call.root] = (call, time, deadline)
            return []
        return self._record(call, time)

    def _record(self, call: Call, time: float) -> list[CallRecord]:
        record = build_record(call, time, self.topology.node)
        return [record] if record is not None else []

    def _on_cdr(self, event: AmiEvent) -> list[CallRecord] | None:
        uniqueid = event.get("UniqueID")
        closing = self._closing.get(uniqueid)
        call = closing[0] if closing else self._calls.get(self._linkedid_of(uniqueid))
        if call is None or uniqueid != call.root:
            return None
        call.cdr_duration = max(call.cdr_duration or 0.0, _number(event.get("Duration")))
        call.cdr_billable = max(call.cdr_billable or 0.0, _number(event.get("BillableSeconds")))
        if closing is None:
            return None
        del self._closing[uniqueid]
        return self._record(call, closing[1])

    def _linkedid_of(self, uniqueid: str) -> str:
        channel = self._channels.get(uniqueid)
        return channel.linkedid if channel else uniqueid

    # -- resynchronisation --------------------------------------------------

    def resync(self, channels: Iterable[Mapping[str, str]], time: float) -> list[CallRecord]:
        """After a (re)connect: `CoreShowChannel` entries are what exists now.

        Calls whose channels all vanished while we were away ended in the gap:
        they are finished now and marked incomplete rather than guessed.
        Channels we never saw (calls that started before we connected) are
        adopted so their calls are recorded when they end.
        """
        live = {entry.get("Uniqueid", ""): entry for entry in channels}
        records: list[CallRecord] = []
        for call in list(self._calls.values()):
            if call.root not in live:
                call.complete = False
                records.extend(self._finish(call, time))
        for uniqueid in [u for u in self._channels if u not in live]:
            self._leave_bridge(self._channels.pop(uniqueid))
        for entry in live.values():
            self._adopt(entry, time)
        return records

    def _adopt(self, entry: Mapping[str, str], time: float) -> None:
        uniqueid = entry.get("Uniqueid", "")
        if not uniqueid or uniqueid in self._channels:
            return
        event = AmiEvent(dict(entry), time)
        call = self._call_of(event)
        bridge = entry.get("BridgeId") or entry.get("BridgeUniqueid")
        if bridge:
            self._on_bridge_enter(AmiEvent({**entry, "BridgeUniqueid": bridge}, time))
        elif call is not None and entry.get("Application", "").lower() == "voicemail":
            call.voicemail = True


def _known(value: str) -> str | None:
    value = value.strip()
    return None if not value or value.lower() in {"<unknown>", "unknown"} else value


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def _dialed_number(event: AmiEvent) -> str | None:
    exten = event.get("DestExten")
    if exten and exten != "s":
        return exten
    dial_string = event.get("DialString")
    return dial_string.rsplit("/", 1)[-1] or None if dial_string else None


def _cause_outcome(cause: str) -> str | None:
    return {"17": "BUSY", "21": "BUSY", "18": "NOANSWER", "19": "NOANSWER", "26": "CANCEL"}.get(
        cause
    )


_Handler = Callable[[Correlator, AmiEvent], "list[CallRecord] | None"]
_HANDLERS: dict[str, _Handler] = {
    "Newchannel": Correlator._on_newchannel,
    "VarSet": Correlator._on_varset,
    "Newexten": Correlator._on_newexten,
    "DialBegin": Correlator._on_dial_begin,
    "DialEnd": Correlator._on_dial_end,
    "AgentCalled": Correlator._on_agent_called,
    "AgentRingNoAnswer": Correlator._on_agent_ring_no_answer,
    "AgentConnect": Correlator._on_agent_connect,
    "QueueCallerJoin": Correlator._on_queue_join,
    "QueueCallerLeave": Correlator._on_queue_leave,
    "QueueCallerAbandon": Correlator._on_queue_abandon,
    "LocalBridge": Correlator._on_local_bridge,
    "BridgeEnter": Correlator._on_bridge_enter,
    "BridgeLeave": Correlator._on_bridge_leave,
    "HangupRequest": Correlator._on_hangup_request,
    "SoftHangupRequest": Correlator._on_soft_hangup_request,
    "Hangup": Correlator._on_hangup,
    "Cdr": Correlator._on_cdr,
    "Newstate": Correlator._on_snapshot,
    "NewCallerid": Correlator._on_snapshot,
    "MixMonitorStart": Correlator._on_snapshot,
    "DialState": Correlator._on_snapshot,
}
