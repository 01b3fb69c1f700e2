"""A call's CEL records told as the AMI events the correlator judges.

CEL says when channels start, answer, enter and leave bridges and hang up,
and which application each runs (``apps`` in cel.conf), but not who dialled
whom nor how each leg ended.  Those are read from what CEL does say, per call
(all records of one Linkedid, in time order):

- a channel created while another channel of the call runs ``Dial`` whose
  targets name it (``IAX2/101/101`` → ``IAX2/101-…``, ``Local/101@ctx/n`` →
  ``Local/101@ctx-…;1``) was dialled by that channel, with that dial string;
  while the caller's channel runs ``Queue``, by the caller (a queue member);
  a ``;2`` half is never dialled (it is its ``;1``'s other half);
- a dialled leg's end: ``ANSWER``; else its hang-up cause (17/21 busy, 18/19
  no answer, 26 answered elsewhere, 20/27/1/3 unavailable, 34/38/41/42
  congestion); else what ended its Dial: another leg answered (cancel), the
  dialling channel hung up with ``dialstatus`` CANCEL or the caller left
  (cancel), else the Dial ran out (no answer);
- the caller's Dial and queue results: ``DIALSTATUS`` at each Dial's end, a
  queue that returned without a member (``QUEUESTATUS`` TIMEOUT, or
  JOINEMPTY when none was ever rung), a caller who hung up in it
  (``QueueCallerAbandon``);
- ``MixMonitor``'s data is the recording (relative names are under
  ``monitor_dir``), ``Set`` the first variable of a run of Sets, ``VoiceMail``
  the caller reaching voicemail; the ``hangupsource`` of the caller's HANGUP
  says who hung up.

With ``apps = all`` in cel.conf Asterisk logs no application at all: then
every leg is taken as dialled by the caller (or the Local half before it) and
the recording and variables are unknown.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from posixpath import join as join_path

from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.topology import device_of, is_local_channel, local_target
from pbx_tracker.cel.log import CelRow

__all__ = ["DEFAULT_MONITOR_DIR", "ami_events"]

DEFAULT_MONITOR_DIR = "/var/spool/asterisk/monitor"
_MOMENT = 0.05  # seconds: events Asterisk logs "at once" (an app ending with its hang-up)
# ROUTE_* set in the dialplan are the fallback before the router's answer, which CEL
# never shows (AGI): keeping them would name the wrong choice.
_BEFORE_THE_ROUTER = ("ROUTE_",)
_CAUSES = {
    "17": "BUSY",
    "21": "BUSY",
    "18": "NOANSWER",
    "19": "NOANSWER",
    "26": "CANCEL",
    "20": "CHANUNAVAIL",
    "27": "CHANUNAVAIL",
    "1": "CHANUNAVAIL",
    "3": "CHANUNAVAIL",
    "34": "CONGESTION",
    "38": "CONGESTION",
    "41": "CONGESTION",
    "42": "CONGESTION",
}


def ami_events(rows: Iterable[CelRow], monitor_dir: str = DEFAULT_MONITOR_DIR) -> list[AmiEvent]:
    """The AMI events of every call in ``rows``, in time order."""
    calls: dict[str, list[CelRow]] = defaultdict(list)
    for row in rows:
        calls[row.linkedid].append(row)
    events = [
        event
        for call in calls.values()
        for event in CallStory(sorted(call, key=lambda r: r.time), monitor_dir).tell()
    ]
    return sorted(events, key=lambda event: event.time)


@dataclass
class Dialling:
    """One Dial (or Queue) of one channel: its targets and the legs it rang."""

    dialer: str
    app: str
    targets: list[str]
    started: float
    ended: float | None = None
    legs: list[str] = field(default_factory=list)
    answered: bool = False
    queue: str | None = None


@dataclass
class Leg:
    """A dialled channel until its Dial hears how it ended."""

    uniqueid: str
    dialling: Dialling
    dial_string: str
    ended: bool = False


class CallStory:
    """Tells one call's CEL records (one Linkedid, sorted by time) as AMI events."""

    def __init__(self, rows: Sequence[CelRow], monitor_dir: str) -> None:
        self.rows = rows
        self.monitor_dir = monitor_dir
        self.root = rows[0].uniqueid if rows else ""
        self.names: dict[str, str] = {}
        self.snapshots: dict[str, dict[str, str]] = {}
        self.open: dict[str, Dialling] = {}  # dialling channel → its running Dial/Queue
        self.legs: dict[str, Leg] = {}
        self.hangups = {r.uniqueid: r for r in rows if r.event == "HANGUP"}
        self.caller_left = self._caller_left()
        self.apps_logged = any(r.event == "APP_START" for r in rows)
        self.events: list[AmiEvent] = []

    def _caller_left(self) -> float | None:
        """When the caller hung up, if it was the caller (hangupsource is their channel)."""
        hangup = self.hangups.get(self.root)
        if hangup is not None and hangup.extra.get("hangupsource") == hangup.channel:
            return hangup.time
        return None

    def tell(self) -> list[AmiEvent]:
        for row in self.rows:
            snapshot = self.snapshots.get(row.uniqueid)
            if snapshot is not None:  # a record shows the channel's caller ID of that moment
                snapshot.update(CallerIDNum=row.caller_number, CallerIDName=row.caller_name)
            handler = _HANDLERS.get(row.event)
            if handler is not None:
                handler(self, row)
        return self.events

    # -- emitting -------------------------------------------------------------

    def emit(self, row: CelRow, event: str, uniqueid: str | None = None, **fields: str) -> None:
        snapshot = self.snapshots.get(uniqueid or row.uniqueid, {})
        self.events.append(AmiEvent({"Event": event, **snapshot, **fields}, row.time))

    def emit_dial(self, row: CelRow, event: str, leg: Leg, **fields: str) -> None:
        dest = {f"Dest{k}": v for k, v in self.snapshots.get(leg.uniqueid, {}).items()}
        self.emit(row, event, leg.dialling.dialer, **dest, **fields)

    # -- channels -------------------------------------------------------------

    def on_chan_start(self, row: CelRow) -> None:
        self.names[row.uniqueid] = row.channel
        self.snapshots[row.uniqueid] = {
            "Channel": row.channel,
            "Uniqueid": row.uniqueid,
            "Linkedid": row.linkedid,
            "Context": row.context,
            "Exten": row.exten,
            "CallerIDNum": row.caller_number,
            "CallerIDName": row.caller_name,
        }
        self.emit(row, "Newchannel")
        if row.uniqueid != self.root and not row.channel.endswith(";2"):
            self._dialled(row)

    def _dialled(self, row: CelRow) -> None:
        found = self._dialling_of(row.channel)
        if found is None:
            return
        dialling, dial_string = found
        leg = Leg(row.uniqueid, dialling, dial_string)
        self.legs[row.uniqueid] = leg
        dialling.legs.append(row.uniqueid)
        if dialling.app == "Queue":
            interface = dial_string or device_of(row.channel)
            self.emit_dial(row, "AgentCalled", leg, Queue=dialling.queue or "", Interface=interface)
        self.emit_dial(row, "DialBegin", leg, DialString=dial_string)

    def _dialling_of(self, channel: str) -> tuple[Dialling, str] | None:
        """The running Dial whose targets name ``channel`` (its dial string), or the Queue."""
        for dialling in reversed(self.open.values()):
            for target in dialling.targets:
                if _names(target, channel):
                    return dialling, target.partition("/")[2]
        queue = next((d for d in self.open.values() if d.app == "Queue"), None)
        if queue is not None:
            return queue, ""
        if self.apps_logged and self.open:
            return list(self.open.values())[-1], ""  # a target we could not read: the latest
        return self._guessed_dialling(channel), ""

    def _guessed_dialling(self, channel: str) -> Dialling:
        """Without applications in the log: the caller dials, or the last Local half."""
        dialer = self.root
        if not is_local_channel(channel):
            halves = [u for u, name in self.names.items() if name.endswith(";2")]
            dialer = halves[-1] if halves else self.root
        if dialer not in self.open:
            self.open[dialer] = Dialling(dialer, "Dial", [], 0.0)
        return self.open[dialer]

    def on_answer(self, row: CelRow) -> None:
        self.emit(row, "Newstate", ChannelStateDesc="Up", ChannelState="6")
        leg = self.legs.get(row.uniqueid)
        if leg is not None and not leg.ended:
            leg.ended = True
            leg.dialling.answered = True
            self.emit_dial(row, "DialEnd", leg, DialStatus="ANSWER")

    def on_hangup(self, row: CelRow) -> None:
        leg = self.legs.get(row.uniqueid)
        if leg is not None and not leg.ended:
            self._leg_ends(row, leg, _CAUSES.get(str(row.extra.get("hangupcause", ""))))
        dialling = self.open.get(row.uniqueid)
        if dialling is not None:
            self._dialling_ends(row, dialling)
        cause = str(row.extra.get("hangupcause", ""))
        self.names.pop(row.uniqueid, None)
        if row.uniqueid == self.root:
            by_caller = self.caller_left is not None
            self.emit(row, "HangupRequest" if by_caller else "SoftHangupRequest", Cause=cause)
        self.emit(row, "Hangup", Cause=cause)

    def _leg_ends(self, row: CelRow, leg: Leg, status: str | None) -> None:
        leg.ended = True
        self.emit_dial(row, "DialEnd", leg, DialStatus=status or self._unanswered(leg, row.time))

    def _unanswered(self, leg: Leg, time: float) -> str:
        """How a leg that hung up without a cause of its own was ended by its Dial."""
        dialling = leg.dialling
        if dialling.answered:
            return "CANCEL"
        dialer_hangup = self.hangups.get(dialling.dialer)
        cancelled = dialer_hangup is not None and dialer_hangup.extra.get("dialstatus") == "CANCEL"
        if cancelled and dialer_hangup is not None and dialer_hangup.time <= time + _MOMENT:
            return "CANCEL"
        if self.caller_left is not None and self.caller_left <= time + _MOMENT:
            return "CANCEL"
        return "NOANSWER"

    # -- applications ------------------------------------------------------------

    def on_app_start(self, row: CelRow) -> None:
        app = row.app.lower()
        if app in ("dial", "queue"):
            self._dialling_starts(row)
        elif app == "mixmonitor" and row.app_data:
            path = row.app_data.split(",", 1)[0]
            filename = path if path.startswith("/") else join_path(self.monitor_dir, path)
            self.emit(row, "VarSet", Variable="MIXMONITOR_FILENAME", Value=filename)
        elif app == "set" and "=" in row.app_data:
            name, _, value = row.app_data.partition("=")
            if not name.strip().lstrip("_").startswith(_BEFORE_THE_ROUTER):
                self.emit(row, "VarSet", Variable=name.strip(), Value=value)
        elif app == "voicemail":
            self.emit(row, "Newexten", Application="VoiceMail", AppData=row.app_data)

    def _dialling_starts(self, row: CelRow) -> None:
        first = row.app_data.split(",", 1)[0]
        queue = row.app == "Queue"
        targets = [] if queue else [t.strip() for t in first.split("&") if t.strip()]
        dialling = Dialling(row.uniqueid, "Queue" if queue else "Dial", targets, row.time)
        self.open[row.uniqueid] = dialling
        if queue:
            dialling.queue = first
            self.emit(row, "QueueCallerJoin", Queue=first, Position="1")
        elif row.uniqueid == self.root:
            self.emit(row, "VarSet", Variable="DIALSTATUS", Value="")

    def on_app_end(self, row: CelRow) -> None:
        dialling = self.open.get(row.uniqueid)
        if dialling is not None and row.app.lower() in ("dial", "queue"):
            self._dialling_ends(row, dialling)

    def _dialling_ends(self, row: CelRow, dialling: Dialling) -> None:
        del self.open[dialling.dialer]
        dialling.ended = row.time
        for uniqueid in dialling.legs:
            leg = self.legs[uniqueid]
            if not leg.ended:
                self._leg_ends(row, leg, None)
        if dialling.dialer != self.root:
            return
        if dialling.app == "Queue":
            self._queue_ends(row, dialling)
        else:
            self.emit(row, "VarSet", Variable="DIALSTATUS", Value=self._result(row, dialling))

    def _result(self, row: CelRow, dialling: Dialling) -> str:
        """The caller's Dial result, as DIALSTATUS would say it."""
        hangup = self.hangups.get(self.root)
        last = hangup is not None and hangup.time <= row.time + _MOMENT
        if last and hangup is not None and hangup.extra.get("dialstatus"):
            return str(hangup.extra["dialstatus"])
        if dialling.answered:
            return "ANSWER"
        if self.caller_left is not None and self.caller_left <= row.time + _MOMENT:
            return "CANCEL"
        if not dialling.legs:
            return "CHANUNAVAIL"
        causes = {str(self.hangups[u].extra.get("hangupcause", "")) for u in dialling.legs}
        return "BUSY" if {_CAUSES.get(c) for c in causes} == {"BUSY"} else "NOANSWER"

    def _queue_ends(self, row: CelRow, queue: Dialling) -> None:
        name = queue.queue or ""
        if queue.answered:
            return
        if self.caller_left is not None and self.caller_left <= row.time + _MOMENT:
            hold = str(int(row.time - queue.started))
            self.emit(row, "QueueCallerAbandon", Queue=name, HoldTime=hold)
            self.emit(row, "QueueCallerLeave", Queue=name)
            return
        self.emit(row, "QueueCallerLeave", Queue=name)
        status = "TIMEOUT" if queue.legs else "JOINEMPTY"
        self.emit(row, "VarSet", Variable="QUEUESTATUS", Value=status)

    # -- bridges ------------------------------------------------------------------

    def on_bridge(self, row: CelRow) -> None:
        bridge = str(row.extra.get("bridge_id", ""))
        if bridge:
            event = "BridgeEnter" if row.event == "BRIDGE_ENTER" else "BridgeLeave"
            self.emit(row, event, BridgeUniqueid=bridge)
        if row.event == "BRIDGE_ENTER":
            self._queue_answered(row)

    def _queue_answered(self, row: CelRow) -> None:
        queue = self.open.get(self.root)
        if row.uniqueid == self.root and queue is not None and queue.app == "Queue":
            queue.answered = True
            self.emit(row, "QueueCallerLeave", self.root, Queue=queue.queue or "")


def _names(target: str, channel: str) -> bool:
    """A Dial target (``IAX2/101/101``, ``Local/101@ctx/n``) names this channel."""
    if is_local_channel(target):
        return is_local_channel(channel) and local_target(target) == local_target(channel)
    tech, _, rest = target.partition("/")
    resource = rest.split("/", 1)[0].split("@", 1)[0]
    return device_of(channel).lower() == f"{tech}/{resource}".lower()


_HANDLERS = {
    "CHAN_START": CallStory.on_chan_start,
    "ANSWER": CallStory.on_answer,
    "HANGUP": CallStory.on_hangup,
    "APP_START": CallStory.on_app_start,
    "APP_END": CallStory.on_app_end,
    "BRIDGE_ENTER": CallStory.on_bridge,
    "BRIDGE_EXIT": CallStory.on_bridge,
}
