"""The correlator: AMI events in, finished call records out.

Pure code: no I/O, no clock, no database.  Time comes with each event.  A call
is rooted at the channel that started it (the carrier's channel in an inbound
context, or the first channel of an originated call) and grouped by Linkedid;
a `Uniqueid → call` map keeps legs attached even when Asterisk rewrites a
channel's Linkedid in a transfer.

"Answered" means the caller's channel was bridged with a person's leg —
directly or through any chain of Local channel halves (`Switchboard`) — never
the caller's channel going Up, a `DialEnd ANSWER` or an `AgentConnect`, which
an IVR, a queue, voicemail or a mobile's unconfirmed pick-up also produce.
Who that person is comes from `Topology` (a manager's device, a manager's
external number, a Local channel that rings a manager).  Why a missed call was
missed comes from the caller's side first (`offers`).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter

from pbx_tracker.calls.call_start import known_caller_id, start_call
from pbx_tracker.calls.conversation import connect, connect_outbound, disconnect
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.gap import HeardEvents, ended_in_gap
from pbx_tracker.calls.legs import new_leg, reach_of
from pbx_tracker.calls.live import LiveCall, live_call
from pbx_tracker.calls.offers import QUEUE, Offer, caller_dial, queue_abandoned
from pbx_tracker.calls.outcome import build_record
from pbx_tracker.calls.records import CallRecord, Direction
from pbx_tracker.calls.state import Call, Channel
from pbx_tracker.calls.switchboard import Switchboard
from pbx_tracker.calls.topology import Reach, Topology, is_pseudo_channel
from pbx_tracker.calls.variables import apply_variable, apply_variables

__all__ = ["Correlator", "FailedEvent", "Topology"]

FORWARDED = "FORWARDED"  # the phone sent the call on (SIP 302): its DialEnd names where
_FINISHED_MEMORY = 10_000
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
        self._board = Switchboard()
        self._calls: dict[str, Call] = {}
        self._inbound_roots: set[str] = set()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self.events_seen = 0
        self.events_failed = 0
        self._heard = HeardEvents()  # of the calls in progress, for `news` after a gap
        self.failures: deque[FailedEvent] = deque(maxlen=_FAILURES_KEPT)

    @property
    def calls_in_progress(self) -> int:
        return len(self._calls)

    def live_calls(self) -> list[LiveCall]:
        """The calls in progress, oldest first, as a board shows them."""
        calls = (live_call(call) for call in self._calls.values())
        return sorted(calls, key=attrgetter("started_at"))

    def knows(self, linkedid: str) -> bool:
        """A call of this Linkedid is in progress here (or just finished)."""
        return linkedid in self._calls or linkedid in self._finished

    def follows(self, linkedid: str) -> bool:
        """A call of this Linkedid is in progress here."""
        return linkedid in self._calls

    def news(self, linkedid: str, events: Iterable[AmiEvent]) -> list[AmiEvent]:
        """Of a call in progress's whole history (told from CEL after a gap), the events
        not heard (`HeardEvents.news`)."""
        return self._heard.news(linkedid, events)

    def feed(self, event: AmiEvent) -> list[CallRecord]:
        """Apply one event; return the records of the calls it finished."""
        self.events_seen += 1
        handler = _HANDLERS.get(event.name)
        if handler is None:
            return []
        try:
            records = handler(self, event) or []
        except Exception as error:  # one bad event must not lose the others
            self.events_failed += 1
            linkedid = event.get("Linkedid") or self._linkedid_of(event.get("Uniqueid")) or None
            self.failures.append(FailedEvent(event, type(error).__name__, linkedid))
            return []
        self._remember(event)
        return records

    def _remember(self, event: AmiEvent) -> None:
        """What a call in progress heard, for `news` after a gap."""
        call_id = event.get("Linkedid")
        if call_id in self._calls:
            self._heard.remember(call_id, event)

    def take_failures(self) -> list[FailedEvent]:
        """The events that could not be applied since the last call (at most the last 1000)."""
        failed = list(self.failures)
        self.failures.clear()
        return failed

    def feed_all(self, events: Iterable[AmiEvent]) -> list[CallRecord]:
        records: list[CallRecord] = []
        for event in events:
            records.extend(self.feed(event))
        return records

    # -- channels ---------------------------------------------------------

    def _on_newchannel(self, event: AmiEvent) -> None:
        self._call_of(event, late=False)

    def _register(self, uniqueid: str, name: str, linkedid: str) -> Channel:
        manager = None if is_pseudo_channel(name) else self.topology.manager_for_channel(name)
        channel = Channel(uniqueid=uniqueid, name=name, linkedid=linkedid, manager=manager)
        self._board.add(channel)
        return channel

    def _start_call(self, channel: Channel, event: AmiEvent, *, late: bool = False) -> None:
        call = start_call(channel, event, self.topology, late=late)
        if call is None:
            return
        if call.direction is Direction.INBOUND:
            self._inbound_roots.add(channel.uniqueid)
        self._calls[call.linkedid] = call

    def _call_of(self, event: AmiEvent, prefix: str = "", *, late: bool = True) -> Call | None:
        """The call a channel event belongs to, adopting channels met for the first time.

        A root channel (Uniqueid == Linkedid) first met on any event but its
        Newchannel belongs to a call that began before we were listening (`late`).
        """
        uniqueid = event.get(prefix + "Uniqueid")
        if not uniqueid:
            return None
        channel = self._board.get(uniqueid)
        if channel is None:
            linkedid = event.get(prefix + "Linkedid") or uniqueid
            channel = self._register(uniqueid, event.get(prefix + "Channel"), linkedid)
            call = self._calls.get(linkedid)
            if call is not None:
                call.channels.add(uniqueid)
            elif uniqueid == linkedid and linkedid not in self._finished and not prefix:
                self._start_call(channel, event, late=late)
        return self._calls.get(channel.linkedid)

    # -- variables --------------------------------------------------------

    def _on_varset(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        if call is not None:
            name = event.get("Variable").lstrip("_")
            apply_variable(call, event, name, event.get("Value"), self.topology.did_variable)

    def _on_newexten(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        on_root = call is not None and event.get("Uniqueid") == call.root
        if call is not None and on_root and event.get("Application").lower() == "voicemail":
            call.voicemail_at = call.voicemail_at or event.time

    def _on_snapshot(self, event: AmiEvent) -> None:
        """Any other channel event: adopt unknown channels, read `ChanVariable`s."""
        call = self._call_of(event)
        if call is not None and "ChanVariable" in event.fields:
            apply_variables(call, event, self.topology.did_variable)

    # -- what the caller went through: Dial and queue offers --------------

    def _on_queue_join(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        if call is not None:
            queue = event.get("Queue") or None
            call.queue = call.queue or queue
            call.offers.append(Offer(QUEUE, event.time, queue=queue))

    def _on_queue_leave(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        stint = call.last_offer(QUEUE) if call else None
        if stint is not None and stint.ended_at is None:
            stint.ended_at = event.time

    def _on_queue_abandon(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        if call is None:
            return
        queue = event.get("Queue") or None
        call.queue = call.queue or queue
        queue_abandoned(call.offers, event.time, queue)

    # -- dialing ----------------------------------------------------------

    def _dialling_call(self, event: AmiEvent) -> Call | None:
        """The call of the channel that dials (the destination's when it is not known);
        both channels are adopted if they are met for the first time."""
        source = self._call_of(event)
        dest = self._call_of(event, "Dest")
        return source or dest

    def _on_dial_begin(self, event: AmiEvent) -> None:
        call = self._dialling_call(event)
        dest_id = event.get("DestUniqueid")
        if call is None or not dest_id:
            return
        dest = self._board.get(dest_id)
        if dest is None:
            return
        call.channels.add(dest_id)
        source = event.get("Uniqueid")
        if dest.dialed_by is None and source and source != dest_id:
            dest.dialed_by = source
        dest.dial_string = dest.dial_string or event.get("DialString") or None
        if source == call.root and call.direction is Direction.INBOUND:
            caller_dial(call.offers, event.time).dest_begins(dest_id)
        if dest.is_local or dest_id in call.legs or dest_id == call.root:
            return
        leg = new_leg(dest, event, self.topology, self._board)
        call.legs[dest_id] = leg
        if call.direction is Direction.OUTBOUND:
            if leg.manager is None and call.customer is None:
                call.customer, call.did = leg.dialed, known_caller_id(event.get("CallerIDNum"))
            call.placed_by = call.placed_by or leg.manager

    def _reach(self, channel: Channel) -> Reach:
        return reach_of(channel, self.topology, self._board)

    def _on_dial_end(self, event: AmiEvent) -> None:
        call = self._dialling_call(event)
        if call is None:
            return
        dest, status = event.get("DestUniqueid"), event.get("DialStatus").upper()
        leg = call.legs.get(dest)
        if leg is not None:
            leg.end(event.time, FORWARDED if event.get("Forward") else status)
        if event.get("Uniqueid") == call.root and status:
            offer = next((o for o in reversed(call.offers) if dest in o.ringing), None)
            if offer is not None:
                offer.dest_ends(dest, status, event.time)

    def _on_agent_called(self, event: AmiEvent) -> None:
        call = self._dialling_call(event)
        dest = self._board.get(event.get("DestUniqueid"))
        if call is None or dest is None:
            return
        dest.queue = event.get("Queue") or None
        self._on_dial_begin(event)
        leg = call.legs.get(dest.uniqueid)
        if leg is not None:
            leg.queue = leg.queue or dest.queue

    def _on_agent_ring_no_answer(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        leg = call.legs.get(event.get("DestUniqueid")) if call else None
        if leg is not None:
            leg.end(event.time, "NOANSWER")

    # -- bridges: who is the caller talking to? -----------------------------

    def _on_local_bridge(self, event: AmiEvent) -> None:
        self._call_of(event, "LocalOne")
        self._call_of(event, "LocalTwo")
        self._board.pair(event.get("LocalOneUniqueid"), event.get("LocalTwoUniqueid"))

    def _on_bridge_enter(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        channel, bridge = self._board.get(event.get("Uniqueid")), event.get("BridgeUniqueid")
        if channel is None or not bridge:
            return
        swap = bool(event.get("SwapUniqueid"))  # it takes another channel's place
        for member in self._board.enter(channel, bridge):
            other = self._calls.get(member.linkedid)
            if other is not None and other is not call:
                self._reconsider(other, event.time, swap=swap)
        if call is not None:
            self._reconsider(call, event.time, swap=swap)

    def _on_bridge_leave(self, event: AmiEvent) -> None:
        call = self._call_of(event)
        channel = self._board.get(event.get("Uniqueid"))
        if channel is None:
            return
        self._board.leave(channel)
        if call is not None:
            self._reconsider(call, event.time)

    def _reconsider(self, call: Call, time: float, *, swap: bool = False) -> None:
        """Who is the caller talking to now that a bridge changed?

        ``swap``: a channel took another's place in a bridge (Local channels optimised
        away): a moment without a person just before it is no pause in the talk.
        """
        reachable = self._board.reachable(call.root)
        if call.direction is Direction.OUTBOUND:
            customer = next((c.uniqueid for c in reachable if c.manager is None), None)
            connect_outbound(call, customer, time)
            return
        parties = [c for c in reachable if c.uniqueid not in self._inbound_roots]
        if any(c.uniqueid == call.connected_to for c in parties):
            return
        if not parties:
            disconnect(call, time)
            return
        declared = [c for c in parties if self._reach(c).manager is not None]
        party = (declared or parties)[0]
        connect(call, party, self._reach(party), time, swap=swap)

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
        self._board.remove(uniqueid)
        if call is None:
            return None
        leg = call.legs.get(uniqueid)
        if leg is not None:
            leg.end(event.time, _cause_outcome(event.get("Cause")))
        if uniqueid != call.root:
            call.channels.discard(uniqueid)
            self._reconsider(call, event.time)
            return None
        call.hangup_cause = event.get("Cause") or None
        if call.caller_hangup_at is None and not call.pbx_hangup:
            call.caller_hangup_at = event.time  # no (Soft)HangupRequest said who: the caller
        return self._finish(call, event.time)

    def _finish(self, call: Call, time: float) -> list[CallRecord]:
        disconnect(call, time)
        del self._calls[call.linkedid]
        self._heard.forget(call.linkedid)
        self._inbound_roots.discard(call.root)
        self._finished[call.linkedid] = None
        while len(self._finished) > _FINISHED_MEMORY:
            self._finished.popitem(last=False)
        return self._record(call, time)

    def _record(self, call: Call, time: float) -> list[CallRecord]:
        record = build_record(call, time, self.topology.node)
        return [record] if record is not None else []

    def _linkedid_of(self, uniqueid: str) -> str:
        channel = self._board.get(uniqueid)
        return channel.linkedid if channel else uniqueid

    # -- resynchronisation --------------------------------------------------

    def resync(
        self,
        channels: Iterable[Mapping[str, str]],
        time: float,
        filled: Collection[str] = (),
    ) -> list[CallRecord]:
        """After a (re)connect: `CoreShowChannel` entries are what exists now.

        Calls whose channels all vanished while we were away ended in the gap:
        they are finished now and marked incomplete rather than guessed.  A call
        still going lost what happened in the gap (an answer, a transfer) unless
        its Linkedid is in ``filled`` (told from Asterisk's CEL log): it is
        marked incomplete too.  Channels we never saw (calls that started before
        we connected) are adopted so their calls are recorded when they end.
        """
        live = {entry.get("Uniqueid", ""): entry for entry in channels}
        records: list[CallRecord] = []
        for call in ended_in_gap(list(self._calls.values()), live, filled):
            records.extend(self._finish(call, time))
        self._board.keep_only(live)
        for entry in live.values():
            self._adopt(entry, time)
        return records

    def _adopt(self, entry: Mapping[str, str], time: float) -> None:
        uniqueid = entry.get("Uniqueid", "")
        if not uniqueid or self._board.get(uniqueid) is not None:
            return
        event = AmiEvent(dict(entry), time)
        call = self._call_of(event)
        bridge = entry.get("BridgeId") or entry.get("BridgeUniqueid")
        if bridge:
            self._on_bridge_enter(AmiEvent({**entry, "BridgeUniqueid": bridge}, time))
        elif call is not None and entry.get("Application", "").lower() == "voicemail":
            call.voicemail_at = call.voicemail_at or time


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
    "QueueCallerJoin": Correlator._on_queue_join,
    "QueueCallerLeave": Correlator._on_queue_leave,
    "QueueCallerAbandon": Correlator._on_queue_abandon,
    "LocalBridge": Correlator._on_local_bridge,
    "BridgeEnter": Correlator._on_bridge_enter,
    "BridgeLeave": Correlator._on_bridge_leave,
    "HangupRequest": Correlator._on_hangup_request,
    "SoftHangupRequest": Correlator._on_soft_hangup_request,
    "Hangup": Correlator._on_hangup,
    "Newstate": Correlator._on_snapshot,
    "NewCallerid": Correlator._on_snapshot,
    "MixMonitorStart": Correlator._on_snapshot,
    "DialState": Correlator._on_snapshot,
    "AgentConnect": Correlator._on_snapshot,
}
