"""A clock for captured AMI text that carries no times of its own.

Raw AMI text (manager.conf `timestampevents = no`) never says when a message
happened, but many messages say how long ago something else did.
`estimate_times` turns those statements into a time (epoch seconds) for every
message of a capture, using only what the messages say.

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

How it combines them
--------------------
Every fact is a difference constraint `t[b] - t[a] >= w`, and messages arrive
in order, `t[i + 1] >= t[i]`.  Three steps, each a bounded number of sweeps
(order carried at C speed by `itertools.accumulate`, links visited one by one):

1. the least solution, every message as early as the facts allow.  Where a
   message ends up past its upper anchor, or values still climb after `SWEEPS`
   sweeps, facts contradict: the chain of constraints that raised it is
   rebuilt from the values and one link on it is dropped (the least trusted
   kind: guess < Cdr < whole seconds < ms; of those, the one that pushed
   furthest forward), at most `ROUNDS` rounds;
2. the greatest solution of the same facts, the last message kept where step 1
   put it: how late each message could be;
3. bursts.  Asterisk sends a call's messages in bursts, each started by
   something outside it: a new call, a called phone ringing or answering after
   its dial was announced, a caller's or talking phone's first hang-up, a key,
   a dial or queue timer running out, a dialplan application or AGI command
   that plays or listens, a queue ringing again, a Cdr sent before what ended
   its record.  Any other message belongs to the burst of the message of its
   call (Linkedid) before it, so each message is pulled up to the next one of
   its call, never past its greatest time, and step 1's sweeps run again to
   keep every link (`GLUE_ROUNDS` times).
A last pass makes times non-decreasing, whatever the input.

Known error
-----------
On the 16 capture pairs of tests/data/asterisk-traces (raw text against the
JSON Lines receive times; each event's time from its call's first
`Newchannel`) the median error is 15 ms.  The answering `BridgeEnter`, every
`DialEnd` and the caller's `Hangup` are within 60 ms wherever an answered
Dial's or a queue's figures, a Dial timeout or a Cdr in the same second cover
them.  What only whole seconds measure comes out early by up to a second: a
caller hanging up during voicemail (0.46 s on the capture), a queue ringing a
member again (0.36 s).  A moment nothing measures is placed right after the
burst before it: the customer answering an originated callback (3 s early on
the capture: its ANSWEREDTIME_MS counts from the manager's answer).  Absolute
times are early by up to about a second: Uniqueids give whole seconds.  A
duration too long for the capture is caught only if a later message dates
itself.  On a busy day built from the captures (benchmarks/raw_clock.py) the
median is 11 ms, the 95th percentile 33 ms.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pbx_tracker.calls.state import uniqueid_epoch

SLACK = 0.010
"""Seconds either side of an exact ms figure: messages are sent a little after the moment."""
LATE = 0.25
"""Seconds a message may arrive after the moment it dates (upper anchors only)."""
SWEEPS = 12
"""Most forward+backward sweeps per solution (the captures settle in five to seven)."""
ROUNDS = 10
"""Most rounds of dropping contradicting links."""
GLUE_ROUNDS = 2
"""Most rounds of gluing bursts and keeping the links after it."""
QUARTER_HOUR = 900.0
_NEVER = -math.inf
_ALWAYS = math.inf
_TINY = 1e-6

EXACT, SECONDS, CDR, LIKELY = 3, 2, 1, 0
"""How far a link is trusted: the least trusted link of a contradiction goes first."""

_WAITING_APPS = frozenset(
    app.lower()
    for app in (
        "Wait", "WaitExten", "WaitForSilence", "WaitForNoise", "WaitUntil", "Playback",
        "Background", "BackGround", "Read", "ReadExten", "SayDigits", "SayNumber", "SayAlpha",
        "SayPhonetic", "SayUnixTime", "Record", "VoiceMail", "VoiceMailMain", "MusicOnHold",
        "WaitMusicOnHold", "Echo", "Milliwatt", "Directory", "Authenticate", "ControlPlayback",
        "Festival", "ConfBridge", "MeetMe", "Page", "Park", "ParkedCall", "DISA", "Pickup",
        "SendDTMF", "Transfer", "Originate", "System", "TrySystem",
    )
)  # fmt: skip
_WAITING_AGI_COMMANDS = (
    "STREAM FILE", "CONTROL STREAM FILE", "GET DATA", "GET OPTION", "WAIT FOR DIGIT",
    "RECORD FILE", "SAY ", "SPEECH RECOGNIZE", "RECEIVE ",
)  # fmt: skip
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


def estimate_times(
    messages: Sequence[Mapping[str, str]], known: Sequence[float | None] | None = None
) -> list[float]:
    """Epoch seconds for each message, in arrival order; `known` times are kept as they are."""
    facts = read_facts(messages)
    for index, moment in enumerate(known or ()):
        if moment is not None and math.isfinite(moment):
            facts.bound(index, moment, moment)
    return solve(facts)


# -- reading the facts -----------------------------------------------------------------


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
            stamp = _number(fields["Timestamp"])
            if stamp is not None:
                self.facts.bound(index, stamp, stamp)
        if "EventTV" in fields:
            told = _event_tv(fields["EventTV"])
            if told is not None:
                self.facts.bound(index, told, told + LATE)
        if "LastCall" in fields:  # queue members: moments already past
            for key in ("LastCall", "LastPause", "LoginTime"):
                past = _number(fields.get(key))
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
        if _may_wait(application, data):
            self.waiting.add(uniqueid)
        else:
            self.waiting.discard(uniqueid)
        timeout = _dial_timeout(data) if application == "Dial" else None
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
            return _may_wait(application, data)
        return command.startswith(_WAITING_AGI_COMMANDS)

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
        milliseconds = _number(fields.get("Value"))
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
        milliseconds = _number(fields.get("RingTime"))
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
        seconds = _number(value)
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
        duration = _number(fields.get("Duration"))
        if duration is not None:
            self.facts.link(self.created.get(uniqueid), index, duration - SLACK, _ALWAYS, CDR)
        self._learn_zone(uniqueid, _local_seconds(fields.get("StartTime")))
        ended = _local_seconds(fields.get("EndTime"))
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


def _may_wait(application: str, data: str) -> bool:
    """Whether a dialplan application may take a while (ExecIf: the app it runs)."""
    name = application.lower()
    if name in ("execif", "exec", "execiftime"):
        inner = data.partition("?")[2] if "?" in data else data
        name = inner.partition("(")[0].strip().lower()
    return name in _WAITING_APPS


def _dial_timeout(data: str) -> float | None:
    """Dial's second argument, the seconds it rings before giving up (None: none given)."""
    arguments = data.split(",")
    return _number(arguments[1].strip()) if len(arguments) > 1 else None


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


def _number(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _event_tv(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return None


def _local_seconds(value: str | None) -> float | None:
    """A Cdr time (`2026-12-07 03:37:16`, the PBX's zone) read as if it were UTC."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


# -- solving ---------------------------------------------------------------------------


def solve(facts: Facts) -> list[float]:
    """Times for every message from its facts (steps 1-3 of the module doc)."""
    if not facts.low:
        return []
    graph = _Graph(facts)
    times = graph.settle_least()
    if not math.isfinite(times[-1]):
        return _non_decreasing(times)  # nothing in the capture dates anything
    highest = graph.greatest(times)
    for _ in range(GLUE_ROUNDS):
        glued = _glued(times, highest, facts)
        if glued == times:
            break
        times, _ = graph.least(glued)
    return _non_decreasing(times)


def _glued(times: Sequence[float], highest: Sequence[float], facts: Facts) -> list[float]:
    """Each message pulled up to the next message of its call unless that one may
    start a burst, never past its greatest time (one backward pass).

    Bursts are a call's: another call's messages in between (a busy PBX
    interleaves them) neither cut nor join them.
    """
    glued = list(times)
    following, pause_before = facts.next_of_call, facts.pause_before
    for index in range(len(glued) - 1, -1, -1):
        after = following[index]
        if after >= 0 and not pause_before[after]:
            pulled = min(glued[after], highest[index])
            if pulled > glued[index]:
                glued[index] = pulled
    return glued


class _Graph:
    """The facts' constraints, indexed for sweeps, with the links that still count.

    Order is carried by `itertools.accumulate` over the stretches between link
    ends; only the links are visited one by one.
    """

    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.count = len(facts.low)
        self.active = [True] * len(facts.links)
        self.ending_at: dict[int, list[int]] = {}
        self.starting_at: dict[int, list[int]] = {}
        for number, link in enumerate(facts.links):
            if 0 <= link.earlier < link.later < self.count:
                self.ending_at.setdefault(link.later, []).append(number)
                self.starting_at.setdefault(link.earlier, []).append(number)
        self.ends = sorted(self.ending_at)
        self.starts = sorted(self.starting_at, reverse=True)

    # -- step 1 ----------------------------------------------------------------------

    def settle_least(self) -> list[float]:
        """The least solution, dropping links that contradict (at most `ROUNDS` times)."""
        times, climbing = self.least(self.facts.low)
        for _ in range(ROUNDS):
            blamed = self._blame(times, climbing)
            if not blamed:
                break
            for number in blamed:
                self.active[number] = False
            times, climbing = self.least(self.facts.low)
        return times

    def least(self, start: Sequence[float]) -> tuple[list[float], list[int]]:
        """Sweeps from `start` up to the least solution above it, at most `SWEEPS`;
        also the messages the last sweep still raised (none: settled)."""
        times = list(start)
        climbing: list[int] = []
        for _ in range(SWEEPS):
            self._forward(times)
            climbing = self._backward(times)
            if not climbing:
                break
        else:
            self._forward(times)
        return times, climbing

    def _forward(self, times: list[float]) -> None:
        """Order, and the lower side of every link (`later >= earlier + low`)."""
        links, active = self.facts.links, self.active
        running, start = _NEVER, 0
        for later in self.ends:
            running = _carry_max(times, start, later, running)
            value = max(times[later], running)
            for number in self.ending_at[later]:
                link = links[number]
                if active[number]:
                    value = max(value, times[link.earlier] + link.low)
            times[later] = running = value
            start = later + 1
        _carry_max(times, start, self.count, running)

    def _backward(self, times: list[float]) -> list[int]:
        """The upper side of every link (`earlier >= later - high`); what it raised."""
        links, active = self.facts.links, self.active
        raised: list[int] = []
        for earlier in self.starts:
            value = times[earlier]
            for number in self.starting_at[earlier]:
                link = links[number]
                if active[number]:
                    value = max(value, times[link.later] - link.high)
            if value > times[earlier] + _TINY:
                times[earlier] = value
                raised.append(earlier)
        return raised

    def _blame(self, times: list[float], climbing: list[int]) -> set[int]:
        """Links to drop: one on each chain of raises that took a message past its upper
        anchor, or that kept raising it (a contradiction's cycle)."""
        high = self.facts.high
        late = [i for i, (t, h) in enumerate(zip(times, high, strict=True)) if t > h + _TINY]
        late = [i for i in late if i == 0 or times[i - 1] <= high[i - 1] + _TINY] + climbing
        blamed = (self._culprit(times, index) for index in late)
        return {number for number in blamed if number is not None}

    def _culprit(self, times: list[float], index: int) -> int | None:
        """The link to drop on the chain of raises that ends at `index`.

        Which link of a contradiction is wrong the capture cannot say: the least
        trusted kind goes first, and of those the one that pushed a message furthest
        forward (a misread duration is more often too long than a reference wrong).
        """
        links = self.facts.links
        chain: list[tuple[int, float]] = []
        for _ in range(64):  # a chain, or a contradiction's cycle, walked a bounded way
            step = self._raised_by(times, index)
            if step is None:
                break
            number, index = step
            if number is not None:
                link = links[number]
                chain.append((number, link.low if index == link.earlier else _NEVER))
        if not chain:
            return None
        least = min(links[number].trust for number, _ in chain)
        candidates = [
            (push, -place, number)
            for place, (number, push) in enumerate(chain)
            if links[number].trust == least
        ]
        return max(candidates)[2]

    def _raised_by(self, times: list[float], index: int) -> tuple[int | None, int] | None:
        """What set `times[index]`: (a link or None for the order, where from); None:
        its own anchor."""
        value = times[index] - _TINY
        if self.facts.low[index] >= value:
            return None
        links, active = self.facts.links, self.active
        for number in self.ending_at.get(index, ()):
            link = links[number]
            if active[number] and times[link.earlier] + link.low >= value:
                return number, link.earlier
        for number in self.starting_at.get(index, ()):
            link = links[number]
            if active[number] and times[link.later] - link.high >= value:
                return number, link.later
        if index > 0 and times[index - 1] >= value:
            return None, bisect.bisect_left(times, value, 0, index)
        return None

    # -- step 2 ----------------------------------------------------------------------

    def greatest(self, lowest: Sequence[float]) -> list[float]:
        """Every message as late as the facts allow, the last one where `lowest` has it."""
        times = list(self.facts.high)
        times[-1] = min(times[-1], lowest[-1])
        for _ in range(SWEEPS):
            self._backward_greatest(times)
            if not self._forward_greatest(times):
                break
        return times

    def _backward_greatest(self, times: list[float]) -> None:
        """Order from the end, and `earlier <= later - low`."""
        links, active = self.facts.links, self.active
        running, stop = _ALWAYS, self.count
        for earlier in self.starts:
            running = _carry_min(times, earlier + 1, stop, running)
            value = min(times[earlier], running)
            for number in self.starting_at[earlier]:
                link = links[number]
                if active[number]:
                    value = min(value, times[link.later] - link.low)
            times[earlier] = running = value
            stop = earlier
        _carry_min(times, 0, stop, running)

    def _forward_greatest(self, times: list[float]) -> bool:
        """`later <= earlier + high`; whether anything came down."""
        links, active = self.facts.links, self.active
        lowered = False
        for later in self.ends:
            value = times[later]
            for number in self.ending_at[later]:
                link = links[number]
                if active[number]:
                    value = min(value, times[link.earlier] + link.high)
            if value < times[later] - _TINY:
                times[later] = value
                lowered = True
        return lowered


def _carry_max(times: list[float], start: int, stop: int, running: float) -> float:
    """`times[start:stop]` raised to their running maximum from `running`; the last one."""
    if start >= stop:
        return running
    if times[start] < running:
        times[start] = running
    times[start:stop] = itertools.accumulate(times[start:stop], max)
    return times[stop - 1]


def _carry_min(times: list[float], start: int, stop: int, running: float) -> float:
    """`times[start:stop]` lowered to the running minimum from the end; the first one."""
    if start >= stop:
        return running
    if times[stop - 1] > running:
        times[stop - 1] = running
    carried = list(itertools.accumulate(reversed(times[start:stop]), min))
    carried.reverse()
    times[start:stop] = carried
    return carried[0]


def _non_decreasing(times: Iterable[float]) -> list[float]:
    """Finite, non-decreasing times: unknown ones take the next known one (else 0)."""
    values = list(times)
    following = 0.0
    for index in range(len(values) - 1, -1, -1):
        if math.isfinite(values[index]):
            following = values[index]
        else:
            values[index] = following
    latest = _NEVER
    for index, value in enumerate(values):
        latest = max(latest, value)
        values[index] = latest
    return values
