"""Asterisk's CEL engine redone over an AMI event stream: the records each message causes.

Asterisk computes Channel Event Logging (`main/cel.c`) from the same channel snapshots
and bridge, dial and transfer messages its AMI events are made of.  `CelRecorder` redoes
that computation over an AMI event stream; each record (`sim.cel_record`) is the line
`cel_custom` writes with the shipped mapping:

- CHAN_START at Newchannel; ANSWER when the channel's state becomes Up (6);
- APP_START / APP_END when the channel's application changes (AMI: Newexten, which
  also shows Dial's ``AppDial`` / Queue's ``AppQueue`` on a dialled leg and
  Originate's ``AppDial2``): APP_END is written with the old snapshot (a run of
  ``Set()``s gives one pair, the first Set's data on APP_START, the last one's on
  APP_END), APP_START with the new one, each only for an application of ``apps``
  (case-insensitive; default the shipped cel.conf list, in which AppDial2 is not).
  When a channel that ran the dialplan hangs up, its last application ends and it
  shows again the one it had before (none, or AppDial2 on an originated channel);
- BRIDGE_ENTER / BRIDGE_EXIT (BridgeEnter / BridgeLeave), extra ``bridge_id`` and
  ``bridge_technology``, the peer column naming the bridge's other channels;
- HANGUP, extra ``hangupcause`` (Hangup's Cause), ``hangupsource`` and ``dialstatus``,
  then CHAN_END, and LINKEDID_END after the last channel of a Linkedid (reference
  counted, following a channel whose Linkedid changes);
- an application that ``ExecIf`` / ``Exec`` runs at the same step (no Newexten of its
  own): read from their arguments, logged under its registered name (``BackGround``);
- BLINDTRANSFER, ATTENDEDTRANSFER, LOCAL_OPTIMIZE_BEGIN / LOCAL_OPTIMIZE (also when the
  optimisation fails), FORWARD and DTMF (one per DTMFEnd, Received or Sent, as the
  Asterisk of the captures logs it).  No capture shows ATTENDEDTRANSFER or FORWARD:
  they follow cel.c and AMI's headers untested.

``hangupsource`` is set as chan_iax2 and the dialplan set it, first value kept: a
channel of a driver (not Local) gets its own name when AMI shows it a HangupRequest
(the far end hung up) while it is in a bridge or was not dialled (a ringing leg that
Dial or Queue hangs up gets none); the Hangup() application sets
``dialplan/builtin``; either is copied to the channel's peer in a two-channel
bridge.  It is the inverse of `pbx_tracker.cel.events`, where the caller's own name
means the caller hung up.  ``dialstatus`` is cel.c's: the first failure a DialEnd
reports for the channel as the dialling one, ANSWER winning over failures, read once
at its hang-up.  Each record takes the time of the AMI message that causes it.

What the AMI stream cannot tell, and the records therefore lack or guess:

- STREAM_BEGIN / STREAM_END (a prompt played): there is no AMI event for them;
- ANI: the first caller number of a channel that Dial or Queue did not create (an
  inbound one, a Local ``;2``, an originated one), empty before it and on dialled legs;
  RDNIS, DNID and userfield are empty, AMA flags ``3``;
- the first application after a transfer or redirect moves a channel: AMI's Newexten
  shows the new place with the old application and nothing for the first step there,
  so a run of Set()s there starts with the second one's data;
- any other application run without a Newexten (one that runs others, but ExecIf's
  and Exec's);
- the peer of a BRIDGE_EXIT when the other channel hangs up at the same moment:
  Asterisk names it only if its CEL thread looks before that channel is gone;
- the order of records Asterisk logs within the same millisecond for different
  channels (each record here follows its AMI event).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace

from pbx_tracker.sim.cel_apps import DEFAULT_APPS, executed
from pbx_tracker.sim.cel_record import CelRecord, Message, Snapshot, snapshot_fields

BUILTIN = "dialplan/builtin"
_UP = "6"
_SET_BY_DIAL = frozenset({"AppDial", "AppDial2", "AppQueue"})  # not the dialplan's
# cel.c is_valid_dialstatus
_DIALSTATUSES = frozenset((
    "CHANUNAVAIL", "CONGESTION", "NOANSWER", "BUSY", "ANSWER", "CANCEL", "DONTCALL",
    "TORTURE", "INVALIDARGS",
))  # fmt: skip
_INTERNAL = ("CBAnn/", "CBRec/", "Announcer/", "Recorder/")  # AST_CHAN_TP_INTERNAL


@dataclass
class _Channel:
    now: Snapshot
    ani_open: bool  # takes its first caller number as ANI (a channel that was not dialled)
    before_dialplan: tuple[str, str] | None = None  # its app before the dialplan ran
    bridge: str | None = None
    dialled: bool = False
    source: str = ""


class CelRecorder:
    """Asterisk's CEL engine fed AMI messages: `feed` returns the records each one causes.

    ``apps``: the applications whose start and end are logged (cel.conf ``apps``);
    ``events``: the event types logged (cel.conf ``events``; None or ``ALL``: every one).
    """

    def __init__(
        self, apps: Collection[str] = DEFAULT_APPS, events: Collection[str] | None = None
    ) -> None:
        self.apps = frozenset(app.strip().lower() for app in apps)
        self.events = None if events is None or "ALL" in events else frozenset(events)
        self.channels: dict[str, _Channel] = {}
        self.bridges: dict[str, list[str]] = {}
        self.linkedids: Counter[str] = Counter()
        self.dialstatus: dict[str, str] = {}
        self._out: list[CelRecord] = []
        self._time = 0.0

    def feed(self, message: Message, time: float) -> list[CelRecord]:
        """The records Asterisk logs for ``message``, which happened at ``time`` (epoch)."""
        self._out, self._time = [], time
        event = message.get("Event", "")
        if event == "Newchannel":
            self._new_channel(message)
            return self._out
        channel = self._channel_of(message)
        if channel is not None and event != "Hangup":
            self._update(channel, message)
        handler = _HANDLERS.get(event)
        if handler is not None:
            handler(self, message, channel)
        return self._out

    def _channel_of(self, message: Message) -> _Channel | None:
        """The channel whose snapshot the message carries (AMI: Uniqueid with ChannelState)."""
        if "ChannelState" not in message:
            return None
        return self.channels.get(message.get("Uniqueid", ""))

    def _report(
        self,
        event: str,
        snapshot: Snapshot,
        *,
        peer: str = "",
        userdeftype: str = "",
        extra: Mapping[str, object] | None = None,
    ) -> None:
        if self.events is not None and event not in self.events:
            return
        if event in ("APP_START", "APP_END") and snapshot.app.lower() not in self.apps:
            return
        self._out.append(CelRecord(event, self._time, snapshot, peer, userdeftype, extra))

    # -- channel snapshots ---------------------------------------------------------

    def _new_channel(self, message: Message) -> None:
        uniqueid = message.get("Uniqueid", "")
        fields = snapshot_fields(message)
        internal = fields.get("name", "").startswith(_INTERNAL)
        if not uniqueid or uniqueid in self.channels or internal:
            return
        fields.setdefault("linkedid", uniqueid)
        snapshot = Snapshot(uniqueid=uniqueid, **fields)
        self.channels[uniqueid] = _Channel(snapshot, ani_open=snapshot.state != "0")
        self.linkedids[snapshot.linkedid] += 1
        self._report("CHAN_START", snapshot)

    def _update(self, channel: _Channel, message: Message) -> None:
        """cel.c's snapshot monitors, in its order: application, state, Linkedid."""
        old = channel.now
        new = channel.now = replace(old, **self._changes(channel, message))
        self._app_change(old, new)
        inner = executed(new.app, new.data) if message.get("Event") == "Newexten" else None
        if inner is not None:  # its own snapshot; the one after it is not published
            channel.now = replace(new, app=inner[0], data=inner[1])
            self._app_change(new, channel.now)
        if old.state != _UP and new.state == _UP:
            self._report("ANSWER", new)
        if old.linkedid != new.linkedid:
            self.linkedids[new.linkedid] += 1
            self._retire(old)

    def _changes(self, channel: _Channel, message: Message) -> dict[str, str]:
        """The snapshot columns the message changes (and what the channel learns from it)."""
        changes = snapshot_fields(message)
        if message.get("Event") == "Newexten":
            app = changes["app"] = message.get("Application", "")
            changes["data"] = message.get("AppData", "")
            if channel.before_dialplan is None and app not in _SET_BY_DIAL:
                channel.before_dialplan = (channel.now.app, channel.now.data)
            channel.ani_open |= app == "AppDial2"  # Originate sets ANI too
        if channel.ani_open and changes.get("cid_num"):
            changes["ani"], channel.ani_open = changes["cid_num"], False
        return changes

    def _app_change(self, old: Snapshot, new: Snapshot) -> None:
        if old.app == new.app:
            return
        if old.app:
            self._report("APP_END", old)
        if new.app:
            self._report("APP_START", new)

    def _retire(self, snapshot: Snapshot) -> None:
        """One channel fewer on the snapshot's Linkedid; LINKEDID_END after the last."""
        self.linkedids[snapshot.linkedid] -= 1
        if self.linkedids[snapshot.linkedid] <= 0:
            del self.linkedids[snapshot.linkedid]
            self._report("LINKEDID_END", snapshot)

    def _hangup(self, message: Message, channel: _Channel | None) -> None:
        """The final snapshot: the dialplan's last application ends, HANGUP, CHAN_END."""
        if channel is None:
            return
        changes = snapshot_fields(message)
        if channel.before_dialplan is not None:
            changes["app"], changes["data"] = channel.before_dialplan
        old, new = channel.now, replace(channel.now, **changes)
        self._app_change(old, new)
        extra = {
            "hangupcause": _number(message.get("Cause")),
            "hangupsource": channel.source,
            "dialstatus": self.dialstatus.pop(new.uniqueid, ""),
        }
        self._report("HANGUP", new, extra=extra)
        self._report("CHAN_END", new)
        self._leave(channel)
        del self.channels[new.uniqueid]
        self._retire(new)

    # -- who hung up -----------------------------------------------------------------

    def _hangup_request(self, message: Message, channel: _Channel | None) -> None:
        """The far end hung up (chan_iax2 names the channel); not a leg its Dial ends."""
        if channel is None or channel.now.name.startswith("Local/"):
            return
        if channel.bridge is not None or not channel.dialled:
            self._set_source(channel, channel.now.name)

    def _newexten(self, message: Message, channel: _Channel | None) -> None:
        if channel is not None and message.get("Application", "").lower() == "hangup":
            self._set_source(channel, BUILTIN)

    def _set_source(self, channel: _Channel, source: str) -> None:
        """ast_set_hangupsource without force: the channel and its bridge peer, if unset."""
        peer = self._bridge_peer(channel)
        for party in (channel, peer):
            if party is not None and not party.source:
                party.source = source

    def _bridge_peer(self, channel: _Channel) -> _Channel | None:
        members = self.bridges.get(channel.bridge or "", [])
        others = [uid for uid in members if uid != channel.now.uniqueid]
        return self.channels.get(others[0]) if len(others) == 1 else None

    # -- dialling ----------------------------------------------------------------------

    def _dial(self, message: Message, channel: _Channel | None) -> None:
        """cel_dial_cb: the dialled leg is marked; FORWARD; the dialler's dial status."""
        dest = self.channels.get(message.get("DestUniqueid", ""))
        if dest is not None:
            dest.dialled = True
        if channel is None:
            return
        if message.get("Forward"):
            self._report("FORWARD", channel.now, extra={"forward": message["Forward"]})
        status = message.get("DialStatus", "").upper()
        if status in _DIALSTATUSES:
            kept = self.dialstatus.get(channel.now.uniqueid)
            if kept is None or (status == "ANSWER" and kept != "ANSWER"):
                self.dialstatus[channel.now.uniqueid] = status

    # -- bridges ---------------------------------------------------------------------

    def _bridge_enter(self, message: Message, channel: _Channel | None) -> None:
        if channel is None:
            return
        bridge = message.get("BridgeUniqueid", "")
        members = self.bridges.setdefault(bridge, [])
        peer = self._names(members)
        members.append(channel.now.uniqueid)
        channel.bridge = bridge
        self._report("BRIDGE_ENTER", channel.now, peer=peer, extra=_bridge_extra(message))

    def _bridge_leave(self, message: Message, channel: _Channel | None) -> None:
        if channel is None:
            return
        self._leave(channel)
        members = self.bridges.get(message.get("BridgeUniqueid", ""), [])
        self._report(
            "BRIDGE_EXIT", channel.now, peer=self._names(members), extra=_bridge_extra(message)
        )

    def _leave(self, channel: _Channel) -> None:
        members = self.bridges.get(channel.bridge or "")
        if members is not None and channel.now.uniqueid in members:
            members.remove(channel.now.uniqueid)
            if not members:
                del self.bridges[channel.bridge or ""]
        channel.bridge = None

    def _names(self, uniqueids: Iterable[str]) -> str:
        return ",".join(self.channels[uid].now.name for uid in uniqueids if uid in self.channels)

    # -- events of their own -------------------------------------------------------------

    def _dtmf(self, message: Message, channel: _Channel | None) -> None:
        if channel is None:
            return
        duration = _number(message.get("DurationMs"))
        extra = {"digit": message.get("Digit", ""), "duration_ms": duration}
        self._report("DTMF", channel.now, userdeftype=message.get("Direction", ""), extra=extra)

    def _blind_transfer(self, message: Message, channel: _Channel | None) -> None:
        transferer = self._seen_as(message, "Transferer")
        if transferer is None or message.get("Result") != "Success":
            return
        extra = {
            "extension": message.get("Extension", ""),
            "context": message.get("Context", ""),
            "bridge_id": message.get("BridgeUniqueid", ""),
            **_party(message, "Transferee", "transferee_channel"),
        }
        self._report("BLINDTRANSFER", transferer, extra=extra)

    def _attended_transfer(self, message: Message, channel: _Channel | None) -> None:
        """channel1 is the transferer on the transferee's side (the other when it has no bridge)."""
        one, two = ("Orig", "Second") if message.get("OrigBridgeUniqueid") else ("Second", "Orig")
        transferer = self._seen_as(message, f"{one}Transferer")
        if transferer is None or message.get("DestType", "") == "Fail":
            return
        extra: dict[str, object] = {
            "bridge1_id": message.get(f"{one}BridgeUniqueid", ""),
            "channel2_name": message.get(f"{two}TransfererChannel", ""),
            "channel2_uniqueid": message.get(f"{two}TransfererUniqueid", ""),
        }
        if message.get("DestType") == "App":
            extra["app"] = message.get("DestApp", "")
        else:
            extra["bridge2_id"] = message.get(f"{two}BridgeUniqueid", "")
        extra.update(_party(message, "Transferee", "transferee_channel"))
        extra.update(_party(message, "TransferTarget", "transfer_target_channel"))
        self._report("ATTENDEDTRANSFER", transferer, extra=extra)

    def _local_optimization(self, message: Message, channel: _Channel | None) -> None:
        """Logged at the begin and at the end, whether or not the optimisation succeeded."""
        one = self._seen_as(message, "LocalOne")
        if one is None:
            return
        begin = message.get("Event") == "LocalOptimizationBegin"
        extra = {
            "local_two": message.get("LocalTwoChannel", ""),
            "local_two_uniqueid": message.get("LocalTwoUniqueid", ""),
        }
        self._report("LOCAL_OPTIMIZE_BEGIN" if begin else "LOCAL_OPTIMIZE", one, extra=extra)

    def _seen_as(self, message: Message, prefix: str) -> Snapshot | None:
        """The snapshot a message shows under ``prefix`` (with the channel's application)."""
        channel = self.channels.get(message.get(f"{prefix}Uniqueid", ""))
        if channel is None:
            return None
        return replace(channel.now, **snapshot_fields(message, prefix))


_Handler = Callable[[CelRecorder, Message, "_Channel | None"], None]
_HANDLERS: dict[str, _Handler] = {
    "Hangup": CelRecorder._hangup,
    "HangupRequest": CelRecorder._hangup_request,
    "Newexten": CelRecorder._newexten,
    "DialBegin": CelRecorder._dial,
    "DialState": CelRecorder._dial,
    "DialEnd": CelRecorder._dial,
    "AgentCalled": CelRecorder._dial,
    "BridgeEnter": CelRecorder._bridge_enter,
    "BridgeLeave": CelRecorder._bridge_leave,
    "DTMFEnd": CelRecorder._dtmf,
    "BlindTransfer": CelRecorder._blind_transfer,
    "AttendedTransfer": CelRecorder._attended_transfer,
    "LocalOptimizationBegin": CelRecorder._local_optimization,
    "LocalOptimizationEnd": CelRecorder._local_optimization,
}


def _bridge_extra(message: Message) -> dict[str, object]:
    return {
        "bridge_id": message.get("BridgeUniqueid", ""),
        "bridge_technology": message.get("BridgeTechnology", ""),
    }


def _party(message: Message, prefix: str, key: str) -> dict[str, object]:
    """``<key>_name`` / ``<key>_uniqueid`` of the channel under ``prefix``, N/A without one."""
    return {
        f"{key}_name": message.get(f"{prefix}Channel") or "N/A",
        f"{key}_uniqueid": message.get(f"{prefix}Uniqueid") or "N/A",
    }


def _number(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
