"""What the messages of a raw AMI capture say about their times (`read_facts`).

The capture clock (`pbx_tracker.ami.clock`) solves these facts into a time for
every message (`pbx_tracker.ami.clock_solving`).

What it uses
------------
Anchors, on one message's time:

- `Timestamp:` (when some messages carry it): exact;
- `EventTV` of security events (`SuccessfulAuth`, milliseconds): the message
  comes at most `LATE` seconds after it;
- a `Newchannel`'s Uniqueid starts with the channel's creation epoch in whole
  seconds (`1796614636.48`, `host-1796614636.48`): within [E, E + 1 + LATE];
- moments already past, lower bounds only: a `Cdr`'s `EndTime` (the PBX's local
  time; its UTC offset is learned, in quarter hours, from a record whose
  `StartTime` is its channel's Uniqueid second), a `QueueMemberStatus`'s
  `LastCall`, `LastPause`, `LoginTime`.

Links, the time between two messages, as Asterisk measured it:

- `VarSet DIALEDTIME_MS` on channel U: ms since U's `Newchannel`;
  `ANSWEREDTIME_MS`: ms since U's first message showing it Up, or, for a
  queue's caller, since its latest `AgentConnect` (app_queue counts from the
  connection: the FreePBX queue capture shows it); `RINGTIME_MS` and
  `PROGRESSTIME_MS`: ms since U's latest `DialBegin`; empty values are resets;
- `Dial(…, T)` (the `Newexten`'s AppData): a leg still ringing T s after the
  dial's last `DialBegin` ends with `DialEnd NOANSWER` (not one whose phone
  hung up first: that one comes early);
- `AgentRingNoAnswer RingTime`: ms since that member's `AgentCalled`;
  `AgentConnect RingTime`: truncated seconds since it, [R, R + 1);
- `AgentConnect HoldTime` and `QueueCallerAbandon HoldTime` since the caller's
  `QueueCallerJoin`, `AgentComplete TalkTime` since `AgentConnect`: app_queue
  subtracts two `time(NULL)`s, so the delta is within (H - 1, H + 1), most
  likely near H: [H, H + 1) is added as a guess that goes first in a conflict;
- `Cdr Duration` D of channel U's record: the `Cdr` comes at least D s after
  U's `Newchannel` (lower side only: records of earlier dial attempts are sent
  late, with the last one).

Each millisecond figure gets `SLACK` either side: messages leave Asterisk a
few ms after the moments it measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pbx_tracker.ami.clock_values import (
    WAITING_AGI_COMMANDS,
    cdr_local_seconds,
    dial_timeout,
    event_tv_epoch,
    may_wait,
    number_of,
)
from pbx_tracker.calls.state import uniqueid_epoch

SLACK = 0.010
"""Seconds either side of an exact ms figure: messages are sent a little after the moment."""
LATE = 0.25
"""Seconds a message may arrive after the moment it dates (upper anchors only)."""
QUARTER_HOUR = 900.0
_NEVER = -math.inf
_ALWAYS = math.inf

EXACT, SECONDS, CDR, LIKELY = 3, 2, 1, 0
"""How far a link is trusted: the least trusted link of a contradiction goes first."""

_ANSWER_STATES = frozenset({"Ringing", "Up", "Busy"})
_OWN_ENDINGS = frozenset({"ANSWER", "CANCEL", ""})


@dataclass(frozen=True, slots=True)
class Link:
    """`t[later] - t[earlier]` lies within [low, high]; `earlier < later`."""

    earlier: int
    later: int
    low: float
    high: float
    trust: int


@dataclass(slots=True)
class Facts:
    """Everything the messages of one capture say about their times."""

    low: list[float]
    high: list[float]
    pause_before: list[bool]
    next_of_call: list[int]
    """The next message of the same call (same Linkedid), -1 for none."""
    links: list[Link] = field(default_factory=list)

    @classmethod
    def empty(cls, count: int) -> Facts:
        return cls([_NEVER] * count, [_ALWAYS] * count, [False] * count, [-1] * count)

    def bound(self, index: int, low: float = _NEVER, high: float = _ALWAYS) -> None:
        self.low[index] = max(self.low[index], low)
        self.high[index] = min(self.high[index], high)

    def link(self, earlier: int | None, later: int, low: float, high: float, trust: int) -> None:
        if earlier is not None and earlier < later and low <= high:
            self.links.append(Link(earlier, later, low, high, trust))


def read_facts(messages: Sequence[Mapping[str, str]]) -> Facts:
    """The anchors, links and possible pauses the messages state (see the module doc)."""
    reader = _Reader(len(messages))
    for index, fields in enumerate(messages):
        reader.read(index, fields)
    return reader.facts


class _Reader:
    """One pass over a capture, remembering where each channel's reference moments are.

    A handler returns whether its message may start a burst (None: no opinion).
    """

    def __init__(self, count: int) -> None:
        self.facts = Facts.empty(count)
        self.created: dict[str, int] = {}
        self.answered: dict[str, int] = {}
        self.connected: dict[str, int] = {}
        self.dialing: dict[str, int] = {}
        self.dial_timeout: dict[str, float] = {}
        self.joined: dict[str, int] = {}
        self.called: dict[tuple[str, str, str], int] = {}
        self.dialed: set[str] = set()
        self.call_of: dict[str, str] = {}
        self.last_of_call: dict[str, int] = {}
        self.queued: set[str] = set()
        self.waiting: set[str] = set()
        self.hanging_up: set[str] = set()
        self.ending: set[str] = set()
        self.zone: float | None = None

    def read(self, index: int, fields: Mapping[str, str]) -> None:
        event = fields.get("Event")
        self._anchor(index, fields)
        self._note_answer(index, fields)
        handler = _HANDLERS.get(event or "")
        starts = handler(self, index, fields) if handler is not None else None
        if starts is None:  # a response (None) comes whenever the client asked
            starts = event is None or event in _ALWAYS_START
        self.facts.pause_before[index] = starts
        self._follow_call(index, fields)

    def _follow_call(self, index: int, fields: Mapping[str, str]) -> None:
        linkedid = fields.get("Linkedid") or self.call_of.get(fields.get("UniqueID", ""))
        if not linkedid:
            return
        if fields.get("Event") == "Newchannel":
            self.call_of[fields.get("Uniqueid", "")] = linkedid
        last = self.last_of_call.get(linkedid)
        if last is not None:
            self.facts.next_of_call[last] = index
        self.last_of_call[linkedid] = index

    def _anchor(self, index: int, fields: Mapping[str, str]) -> None:
        if "Timestamp" in fields:
            stamp = number_of(fields["Timestamp"])
            if stamp is not None:
                self.facts.bound(index, stamp, stamp)
        if "EventTV" in fields:
            told = event_tv_epoch(fields["EventTV"])
            if told is not None:
                self.facts.bound(index, told, told + LATE)
        if "LastCall" in fields:  # queue members: moments already past
            for key in ("LastCall", "LastPause", "LoginTime"):
                past = number_of(fields.get(key))
                if past:
                    self.facts.bound(index, low=past)

    def _note_answer(self, index: int, fields: Mapping[str, str]) -> None:
        for prefix in ("", "Dest"):
            if fields.get(prefix + "ChannelStateDesc") == "Up":
                self.answered.setdefault(fields.get(prefix + "Uniqueid", ""), index)

    # -- channels --------------------------------------------------------------------

    def newchannel(self, index: int, fields: Mapping[str, str]) -> bool:
        """A new call starts a burst, and so may a queue ringing its members again;
        a channel a dial creates does not."""
        uniqueid = fields.get("Uniqueid", "")
        self.created[uniqueid] = index
        epoch = uniqueid_epoch(uniqueid)
        if epoch is not None:
            self.facts.bound(index, epoch, epoch + 1 + LATE)
        linkedid = fields.get("Linkedid", "")
        return uniqueid == linkedid or linkedid in self.queued

    def newstate(self, index: int, fields: Mapping[str, str]) -> bool:
        """A phone or trunk rings, answers or is busy after its dial was announced
        (a state Asterisk sends before the `DialBegin` came with the call itself)."""
        return (
            fields.get("Uniqueid", "") in self.dialed
            and fields.get("ChannelStateDesc") in _ANSWER_STATES
            and not fields.get("Channel", "").startswith("Local/")
        )

    def newexten(self, index: int, fields: Mapping[str, str]) -> bool:
        """The application before this one on the channel may have waited."""
        uniqueid = fields.get("Uniqueid", "")
        application, data = fields.get("Application", ""), fields.get("AppData", "")
        waited = uniqueid in self.waiting
        if may_wait(application, data):
            self.waiting.add(uniqueid)
        else:
            self.waiting.discard(uniqueid)
        timeout = dial_timeout(data) if application == "Dial" else None
        if timeout:
            self.dial_timeout[uniqueid] = timeout
        else:
            self.dial_timeout.pop(uniqueid, None)  # the dial before, if any, is over
        return waited

    def agi_exec_end(self, index: int, fields: Mapping[str, str]) -> bool:
        """An AGI command that plays or listens (an AGI's own work takes milliseconds)."""
        command = fields.get("Command", "").strip().upper()
        if command.startswith("EXEC "):
            application, _, data = command[5:].strip().partition(" ")
            return may_wait(application, data)
        return command.startswith(WAITING_AGI_COMMANDS)

    def hangup_request(self, index: int, fields: Mapping[str, str]) -> bool:
        """The first hang-up request of a caller, or of a phone that was talking.

        Asterisk's own requests follow in the same burst: to a ringing leg when the
        caller left, to a leg answered elsewhere (cause 26), to Local channels.
        """
        uniqueid = fields.get("Uniqueid", "")
        first = uniqueid not in self.hanging_up
        self.hanging_up.add(uniqueid)
        self.ending.add(fields.get("Channel", ""))
        return (
            first
            and not fields.get("Channel", "").startswith("Local/")
            and fields.get("Cause") != "26"
            and (fields.get("ChannelStateDesc") == "Up" or uniqueid == fields.get("Linkedid"))
        )

    def soft_hangup_request(self, index: int, fields: Mapping[str, str]) -> bool:
        self.hanging_up.add(fields.get("Uniqueid", ""))
        self.ending.add(fields.get("Channel", ""))
        return False

    def varset(self, index: int, fields: Mapping[str, str]) -> None:
        variable = fields.get("Variable", "")
        reference = _VARSET_REFERENCES.get(variable)
        milliseconds = number_of(fields.get("Value"))
        if reference is None or milliseconds is None:
            return  # not a duration, or an empty value (a reset)
        earlier = reference(self, fields.get("Uniqueid", ""))
        seconds = milliseconds / 1000
        self.facts.link(earlier, index, seconds - SLACK, seconds + SLACK, EXACT)

    def answered_at(self, uniqueid: str) -> int | None:
        connected = self.connected.get(uniqueid)
        return connected if connected is not None else self.answered.get(uniqueid)

    # -- dials -----------------------------------------------------------------------

    def dial_begin(self, index: int, fields: Mapping[str, str]) -> None:
        uniqueid = fields.get("Uniqueid")
        if uniqueid:
            self.dialing[uniqueid] = index
        self.dialed.add(fields.get("DestUniqueid", ""))

    def dial_end(self, index: int, fields: Mapping[str, str]) -> bool:
        """A dial given up: its timeout ran out, or a phone said busy or unavailable.

        Dial(…, T) ends every leg still ringing T seconds after it called them, with
        NOANSWER; a leg that hung up by itself first ends with NOANSWER too, early.
        """
        uniqueid = fields.get("Uniqueid", "")
        status = fields.get("DialStatus", "")
        if status in _OWN_ENDINGS:  # answered or cancelled: the dial is over
            self.dial_timeout.pop(uniqueid, None)
            return False
        if status != "NOANSWER":
            return True
        if fields.get("DestChannel", "") in self.ending or uniqueid not in self.dial_timeout:
            return False
        timeout = self.dial_timeout.pop(uniqueid)
        began = self.dialing.get(uniqueid)
        self.facts.link(began, index, timeout - SLACK, timeout + SLACK, SECONDS)
        return True

    def hangup(self, index: int, fields: Mapping[str, str]) -> None:
        self.ending.add(fields.get("Channel", ""))

    # -- queues ----------------------------------------------------------------------

    def queue_join(self, index: int, fields: Mapping[str, str]) -> None:
        self.joined[fields.get("Uniqueid", "")] = index
        self.queued.add(fields.get("Linkedid", ""))

    def queue_leave(self, index: int, fields: Mapping[str, str]) -> None:
        self.queued.discard(fields.get("Linkedid", ""))

    def agent_called(self, index: int, fields: Mapping[str, str]) -> None:
        self.called[_member_key(fields)] = index

    def agent_ring_no_answer(self, index: int, fields: Mapping[str, str]) -> bool:
        milliseconds = number_of(fields.get("RingTime"))
        if milliseconds is not None:
            seconds = milliseconds / 1000
            called = self.called.get(_member_key(fields))
            self.facts.link(called, index, seconds - SLACK, seconds + SLACK, EXACT)
        return True

    def agent_connect(self, index: int, fields: Mapping[str, str]) -> None:
        uniqueid = fields.get("Uniqueid", "")
        self._seconds_since(self.joined.get(uniqueid), index, fields.get("HoldTime"), floors=True)
        self._seconds_since(self.called.get(_member_key(fields)), index, fields.get("RingTime"))
        self.connected[uniqueid] = index

    def agent_complete(self, index: int, fields: Mapping[str, str]) -> None:
        connected = self.connected.get(fields.get("Uniqueid", ""))
        self._seconds_since(connected, index, fields.get("TalkTime"), floors=True)

    def queue_abandon(self, index: int, fields: Mapping[str, str]) -> None:
        self.queue_leave(index, fields)
        joined = self.joined.get(fields.get("Uniqueid", ""))
        self._seconds_since(joined, index, fields.get("HoldTime"), floors=True)

    def _seconds_since(
        self, earlier: int | None, later: int, value: str | None, *, floors: bool = False
    ) -> None:
        """A whole-seconds delta: truncated ms ([s, s+1)), or two `time(NULL)`s
        ((s-1, s+1), most likely near s: [s, s+1) is added as a guess dropped first)."""
        seconds = number_of(value)
        if seconds is None:
            return
        high = seconds + 1 + SLACK
        if floors:
            self.facts.link(earlier, later, seconds - 1 - SLACK, high, SECONDS)
            self.facts.link(earlier, later, seconds - SLACK, high, LIKELY)
        else:
            self.facts.link(earlier, later, seconds - SLACK, high, SECONDS)

    # -- call detail records -----------------------------------------------------------

    def cdr(self, index: int, fields: Mapping[str, str]) -> bool:
        """A record's end: sent after a hang-up of one of its two channels, else maybe
        before what ended it (Asterisk's CDR engine runs on its own)."""
        uniqueid = fields.get("UniqueID", "")
        duration = number_of(fields.get("Duration"))
        if duration is not None:
            self.facts.link(self.created.get(uniqueid), index, duration - SLACK, _ALWAYS, CDR)
        self._learn_zone(uniqueid, cdr_local_seconds(fields.get("StartTime")))
        ended = cdr_local_seconds(fields.get("EndTime"))
        if ended is not None and self.zone is not None:
            self.facts.bound(index, low=ended - self.zone)
        ends = (fields.get("Channel", ""), fields.get("DestinationChannel", ""))
        return not any(channel in self.ending for channel in ends)

    def _learn_zone(self, uniqueid: str, started: float | None) -> None:
        """The PBX's UTC offset, from a record that began in its channel's first second."""
        epoch = uniqueid_epoch(uniqueid)
        if started is None or epoch is None:
            return
        zone = round((started - epoch) / QUARTER_HOUR) * QUARTER_HOUR
        if abs(started - zone - epoch) <= 1:
            self.zone = zone


def _member_key(fields: Mapping[str, str]) -> tuple[str, str, str]:
    return fields.get("Uniqueid", ""), fields.get("Queue", ""), fields.get("Interface", "")


_HANDLERS: dict[str, Callable[[_Reader, int, Mapping[str, str]], bool | None]] = {
    "Newchannel": _Reader.newchannel,
    "Newstate": _Reader.newstate,
    "Newexten": _Reader.newexten,
    "HangupRequest": _Reader.hangup_request,
    "AGIExecEnd": _Reader.agi_exec_end,
    "SoftHangupRequest": _Reader.soft_hangup_request,
    "VarSet": _Reader.varset,
    "DialBegin": _Reader.dial_begin,
    "DialEnd": _Reader.dial_end,
    "Hangup": _Reader.hangup,
    "QueueCallerJoin": _Reader.queue_join,
    "QueueCallerLeave": _Reader.queue_leave,
    "AgentCalled": _Reader.agent_called,
    "AgentRingNoAnswer": _Reader.agent_ring_no_answer,
    "AgentConnect": _Reader.agent_connect,
    "AgentComplete": _Reader.agent_complete,
    "QueueCallerAbandon": _Reader.queue_abandon,
    "Cdr": _Reader.cdr,
}
_VARSET_REFERENCES: dict[str, Callable[[_Reader, str], int | None]] = {
    "DIALEDTIME_MS": lambda reader, uniqueid: reader.created.get(uniqueid),
    "ANSWEREDTIME_MS": _Reader.answered_at,
    "RINGTIME_MS": lambda reader, uniqueid: reader.dialing.get(uniqueid),
    "PROGRESSTIME_MS": lambda reader, uniqueid: reader.dialing.get(uniqueid),
}
_ALWAYS_START = frozenset(
    {
        "DTMFBegin", "DTMFEnd", "Hold", "Unhold", "BlindTransfer", "AttendedTransfer",
        "OriginateResponse", "FullyBooted", "Reload", "PeerStatus",
        "ContactStatus", "Registry", "SuccessfulAuth", "ChallengeSent", "InvalidPassword",
        "InvalidAccountID", "ChallengeResponseFailed", "RTCPSent", "RTCPReceived", "Shutdown",
    }
)  # fmt: skip
