"""AMI traffic of calls on dialplans we have no capture of, built the way Asterisk emits it.

Event names, header names and the order of events follow the real captures in
`tests/data/asterisk-traces/freepbx/` (a FreePBX-style dialplan): a Local
channel is two `Newchannel`s (`;1` Down, `;2` Ring) and a `LocalBridge`; a Dial
is `DialBegin` … `DialEnd`; an answered leg is `Newstate Up`, `DialEnd ANSWER`,
then each pair of channels enters its own basic bridge, the caller last; a
hang-up is `HangupRequest` (the far end) or `SoftHangupRequest` (Asterisk)
then `Hangup`.  A `Pbx` holds one Asterisk's channel numbering and clock; it
can build several calls one after another.

`Pbx.messages()` gives the messages with `_ts` (for `FakeAsterisk.play` and
JSON Lines files), `Pbx.ami_events()` the `AmiEvent`s a correlator takes.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.topology import Topology

EPOCH = 1_796_700_000.0
CALLER_CONTEXT = "from-trunk"


@dataclass
class Chan:
    """One channel of the simulated PBX."""

    name: str
    uniqueid: str
    linkedid: str
    context: str = "default"
    exten: str = "s"
    caller: str = "<unknown>"
    state: str = "Down"
    peer: Chan | None = None  # the other half of a Local channel
    bridge: str | None = None


@dataclass
class Pbx:
    """One simulated Asterisk: its clock, channel numbering and the messages sent so far."""

    epoch: float = EPOCH
    now: float = 0.0
    messages_sent: list[dict[str, str]] = field(default_factory=list)
    _sequence: itertools.count[int] = field(default_factory=itertools.count)
    _local_number: itertools.count[int] = field(default_factory=lambda: itertools.count(0x20))
    _bridge_number: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- output -------------------------------------------------------------

    def messages(self) -> list[dict[str, str]]:
        return [dict(message) for message in self.messages_sent]

    def ami_events(self) -> list[AmiEvent]:
        return [
            AmiEvent({k: v for k, v in m.items() if k != "_ts"}, self.epoch + float(m["_ts"]))
            for m in self.messages_sent
        ]

    def write_jsonl(self, path: Path) -> Path:
        lines = (json.dumps(m, ensure_ascii=False) for m in self.messages_sent)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    # -- primitives ---------------------------------------------------------

    def wait(self, seconds: float) -> None:
        self.now += seconds

    def send(self, event: str, chan: Chan | None = None, **fields: str) -> None:
        message = {"_ts": f"{self.now:.6f}", "Event": event, "Privilege": "call,all"}
        if chan is not None:
            message.update(snapshot(chan))
        message.update(fields)
        self.messages_sent.append(message)

    def _uniqueid(self) -> str:
        return f"{int(self.epoch + self.now)}.{next(self._sequence)}"

    def new_channel(self, name: str, linkedid: str | None = None, **attrs: str) -> Chan:
        uniqueid = self._uniqueid()
        chan = Chan(name, uniqueid, linkedid or uniqueid, **attrs)
        self.send("Newchannel", chan)
        return chan

    def caller(
        self,
        did: str = "74951110001",
        number: str = "79161230001",
        *,
        trunk: str = "PJSIP/carrier",
        context: str = CALLER_CONTEXT,
    ) -> Chan:
        """The carrier's channel of a new inbound call on ``did``."""
        name = f"{trunk}-{next(self._sequence):08x}"
        return self.new_channel(name, context=context, exten=did, caller=number, state="Ring")

    def phone(self, device: str, root: Chan) -> Chan:
        """A device channel (`PJSIP/101`, `IAX2/carrier-out`) created by a Dial."""
        return self.new_channel(f"{device}-{next(self._sequence):08x}", root.linkedid)

    def local(self, target: str, root: Chan, *, optimize: bool = False) -> tuple[Chan, Chan]:
        """Both halves of `Local/<target>` (``exten@context``) and their LocalBridge."""
        exten, _, context = target.partition("@")
        base = f"Local/{target}-{next(self._local_number):08x}"
        one = self.new_channel(f"{base};1", root.linkedid, context=context, exten=exten)
        two = self.new_channel(
            f"{base};2", root.linkedid, context=context, exten=exten, state="Ring"
        )
        one.peer, two.peer = two, one
        self.send(
            "LocalBridge",
            **_prefixed("LocalOne", one),
            **_prefixed("LocalTwo", two),
            Context=context,
            Exten=exten,
            LocalOptimization="Yes" if optimize else "No",
        )
        return one, two

    def dial(self, src: Chan, dest: Chan, dial_string: str) -> None:
        """`src` starts ringing `dest` (DialBegin; a phone shows Ringing)."""
        if not dest.name.startswith("Local/"):
            dest.state = "Ringing"
            self.send("Newstate", dest)
        self.send("DialBegin", src, **_prefixed("Dest", dest), DialString=dial_string)

    def dial_end(self, src: Chan, dest: Chan, status: str, *, forward: str = "") -> None:
        """`src`'s Dial of `dest` ends (``forward``: where the phone redirected the call)."""
        extra = {"Forward": forward} if forward else {}
        self.send("DialEnd", src, **_prefixed("Dest", dest), DialStatus=status, **extra)

    def up(self, chan: Chan) -> None:
        chan.state = "Up"
        self.send("Newstate", chan)

    def bridge(self) -> str:
        bridge = f"b{next(self._bridge_number):04d}-0000-4000-8000-000000000000"
        self.send("BridgeCreate", BridgeUniqueid=bridge, BridgeType="basic")
        return bridge

    def enter(self, bridge: str, chan: Chan, *, swap: Chan | None = None) -> None:
        """``chan`` joins ``bridge`` (taking ``swap``'s place, as an optimisation does)."""
        if chan.bridge is not None:
            self.leave(chan)
        chan.bridge = bridge
        fields = {"SwapUniqueid": swap.uniqueid} if swap is not None else {}
        self.send("BridgeEnter", chan, BridgeUniqueid=bridge, BridgeType="basic", **fields)

    def leave(self, chan: Chan) -> None:
        if chan.bridge is not None:
            self.send("BridgeLeave", chan, BridgeUniqueid=chan.bridge, BridgeType="basic")
            chan.bridge = None

    def varset(self, chan: Chan, variable: str, value: str) -> None:
        self.send("VarSet", chan, Variable=variable, Value=value)

    def app(self, chan: Chan, application: str, data: str = "") -> None:
        self.send("Newexten", chan, Application=application, AppData=data)

    def hangup(self, chan: Chan, cause: str = "16", *, by_far_end: bool = True) -> None:
        """`chan` hangs up: the far end (HangupRequest) or Asterisk (SoftHangupRequest)."""
        self.send("HangupRequest" if by_far_end else "SoftHangupRequest", chan, Cause=cause)
        self.leave(chan)
        self.send("Hangup", chan, Cause=cause)

    def dtmf(self, chan: Chan, digit: str) -> None:
        self.send("DTMFEnd", chan, Digit=digit, Direction="Received")

    # -- queues -------------------------------------------------------------

    def queue_join(self, caller: Chan, queue: str) -> None:
        self.send("QueueCallerJoin", caller, Queue=queue, Position="1", Count="1")

    def agent_called(self, caller: Chan, dest: Chan, queue: str, interface: str) -> None:
        self.send(
            "AgentCalled",
            caller,
            **_prefixed("Dest", dest),
            Queue=queue,
            Interface=interface,
            MemberName=interface,
        )

    def queue_abandon(self, caller: Chan, queue: str, hold: int) -> None:
        self.send(
            "QueueCallerAbandon",
            caller,
            Queue=queue,
            Position="1",
            OriginalPosition="1",
            HoldTime=str(hold),
        )

    def queue_leave(self, caller: Chan, queue: str) -> None:
        self.send("QueueCallerLeave", caller, Queue=queue, Position="1", Count="0")


def snapshot(chan: Chan) -> dict[str, str]:
    """The channel snapshot Asterisk puts in every channel event."""
    states = {"Down": "0", "Ring": "4", "Ringing": "5", "Up": "6"}
    return {
        "Channel": chan.name,
        "ChannelState": states[chan.state],
        "ChannelStateDesc": chan.state,
        "CallerIDNum": chan.caller,
        "CallerIDName": "<unknown>",
        "ConnectedLineNum": "<unknown>",
        "ConnectedLineName": "<unknown>",
        "Language": "en",
        "AccountCode": "",
        "Context": chan.context,
        "Exten": chan.exten,
        "Priority": "1",
        "Uniqueid": chan.uniqueid,
        "Linkedid": chan.linkedid,
    }


def _prefixed(prefix: str, chan: Chan) -> dict[str, str]:
    return {prefix + key: value for key, value in snapshot(chan).items()}


# -- how the dialplans of the field put calls through ---------------------------


@dataclass
class Leg:
    """What one Dial destination of the caller became: the chain down to a phone."""

    top: Chan  # what the caller's Dial rang (a Local ;1, or the phone itself)
    phone: Chan | None  # the device or trunk leg at the end, once created
    chain: list[tuple[Chan, Chan]] = field(default_factory=list)  # Local halves, outermost first
    inner_dialer: Chan | None = None  # who dialled the phone (the caller or the last ;2)


def ring(pbx: Pbx, caller: Chan, locals_: list[str], device: str, dial_string: str) -> Leg:
    """The caller's Dial rings ``device`` through Local channels ``locals_`` (outermost first)."""
    src, chain = caller, []
    for target in locals_:
        one, two = pbx.local(target, caller)
        pbx.dial(src, one, f"{target}/n")
        chain.append((one, two))
        src = two
    phone = pbx.phone(device, caller)
    pbx.dial(src, phone, dial_string)
    return Leg(chain[0][0] if chain else phone, phone, chain, src)


def answer(pbx: Pbx, caller: Chan, leg: Leg) -> list[str]:
    """The phone picks up and every pair along the chain is bridged, the caller last.

    Returns the bridges, innermost first.
    """
    assert leg.phone is not None and leg.inner_dialer is not None
    pbx.up(leg.phone)
    pbx.dial_end(leg.inner_dialer, leg.phone, "ANSWER")
    return connect(pbx, caller, leg)


def connect(pbx: Pbx, caller: Chan, leg: Leg) -> list[str]:
    """Bridge each pair along the chain: phone with the last ;2, …, the first ;1 with the caller."""
    assert leg.phone is not None
    bridges, near = [], leg.phone
    for one, two in reversed(leg.chain):
        bridge = pbx.bridge()
        pbx.up(two)
        pbx.enter(bridge, near)
        pbx.enter(bridge, two)
        bridges.append(bridge)
        near = one
        pbx.up(one)
        dialer = caller if (one, two) == leg.chain[0] else _dialer_of(leg, one)
        pbx.dial_end(dialer, one, "ANSWER")
    bridge = pbx.bridge()
    pbx.enter(bridge, near)
    pbx.up(caller)
    pbx.enter(bridge, caller)
    bridges.append(bridge)
    return bridges


def _dialer_of(leg: Leg, one: Chan) -> Chan:
    index = [pair[0] for pair in leg.chain].index(one)
    return leg.chain[index - 1][1]


def cancel(pbx: Pbx, caller: Chan, leg: Leg, status: str = "CANCEL") -> None:
    """The caller's Dial gives up on ``leg`` (``status`` to the caller), the chain unwinds."""
    pbx.dial_end(caller, leg.top, status)
    if leg.phone is not None and leg.inner_dialer is not caller:
        assert leg.inner_dialer is not None
        pbx.dial_end(leg.inner_dialer, leg.phone, "CANCEL")
    for one, two in leg.chain:
        pbx.hangup(one, "0", by_far_end=False)
        pbx.hangup(two, "0", by_far_end=False)
    if leg.phone is not None:
        pbx.hangup(leg.phone, "16" if status != "CANCEL" else "26", by_far_end=False)


def end_call(pbx: Pbx, caller: Chan, leg: Leg, *, caller_first: bool = True) -> None:
    """Everyone hangs up after talking: the caller (or the manager) first, then the rest."""
    first, then = (caller, leg.phone) if caller_first else (leg.phone, caller)
    assert first is not None and then is not None
    pbx.hangup(first)
    for chan in [then, *(half for pair in leg.chain for half in pair)]:
        pbx.hangup(chan, by_far_end=False)


def mobile_leg(pbx: Pbx, caller: Chan, number: str = "79160000103") -> tuple[Leg, Chan, Chan]:
    """Follow-me with call confirmation (FreePBX): Local/LC-<number> dials
    Local/<number>, whose ;2 dials the mobile through the trunk."""
    lc_one, lc_two = pbx.local(f"LC-{number}@from-internal", caller, optimize=True)
    pbx.dial(caller, lc_one, f"LC-{number}@from-internal")
    out_one, out_two = pbx.local(f"{number}@from-internal", caller)
    pbx.dial(lc_two, out_one, f"{number}@from-internal/n")
    mobile = pbx.phone("PJSIP/carrier-out", caller)
    pbx.dial(out_two, mobile, f"carrier-out/{number}")
    leg = Leg(lc_one, mobile, [(lc_one, lc_two), (out_one, out_two)], out_two)
    return leg, out_one, lc_two


def mobile_picks_up(pbx: Pbx, leg: Leg) -> None:
    """The mobile answers and hears "press 1": bridged with the inner Local only."""
    assert leg.phone is not None and leg.inner_dialer is not None
    pbx.up(leg.phone)
    pbx.dial_end(leg.inner_dialer, leg.phone, "ANSWER")
    bridge = pbx.bridge()
    pbx.enter(bridge, leg.phone)
    pbx.enter(bridge, leg.inner_dialer)
    pbx.app(leg.chain[1][0], "Read", "INPUT,incoming-call-1-accept-2-decline,1,,1,5")


def mobile_drops(pbx: Pbx, caller: Chan, leg: Leg, status: str) -> None:
    """Not confirmed: the inner leg hangs up, the caller's Dial gets ``status`` for it."""
    assert leg.phone is not None
    (lc_one, lc_two), (out_one, out_two) = leg.chain
    pbx.dial_end(lc_two, out_one, status)
    for chan in (out_one, out_two, leg.phone, lc_two):
        pbx.hangup(chan, by_far_end=False)
    pbx.dial_end(caller, lc_one, status)
    pbx.hangup(lc_one, by_far_end=False)


def queue_call(pbx: Pbx, caller: Chan) -> list[Leg]:
    """FreePBX queue 400: Answer(), Queue(400) ringing members Local/<ext>@from-queue/n."""
    pbx.up(caller)
    pbx.queue_join(caller, "400")
    legs = []
    for ext, device in (("101", "PJSIP/101"), ("102", "SIP/102")):
        one, two = pbx.local(f"{ext}@from-queue", caller)
        pbx.agent_called(caller, one, "400", f"Local/{ext}@from-queue/n")
        pbx.dial(caller, one, f"Local/{ext}@from-queue/n")
        phone = pbx.phone(device, caller)
        pbx.dial(two, phone, ext)
        legs.append(Leg(one, phone, [(one, two)], two))
    return legs


# -- whole calls, with what truly happened (shared by the replay and live-listener tests) --


@dataclass(frozen=True)
class Expected:
    """The true outcome of a scene's call (``did`` as the carrier delivered it)."""

    did: str
    caller: str
    status: str
    reason: str | None = None
    answered_by: str | None = None
    transferred_to: str | None = None
    ring: int = 0
    talk: int = 0
    via: str | None = None
    number: str | None = None
    queue: str | None = None
    transfer_wait: int = 0


def mobile_confirms(pbx: Pbx) -> Expected:
    """Follow-me: desk 103 and her mobile ring; the mobile picks up and presses 1 two
    seconds later; the caller talks 6 s on her mobile."""
    caller = pbx.caller(did="74951110010", number="79161230007")
    desk = ring(pbx, caller, ["FMPR-103@from-internal"], "IAX2/103", "103/103")
    leg, out_one, lc_two = mobile_leg(pbx, caller)
    pbx.wait(3)
    mobile_picks_up(pbx, leg)
    pbx.wait(2)
    pbx.dtmf(leg.phone or caller, "1")
    pbx.dial_end(lc_two, out_one, "ANSWER")
    cancel(pbx, caller, desk)
    bridge = pbx.bridge()
    pbx.enter(bridge, out_one)
    pbx.enter(bridge, lc_two)
    pbx.dial_end(caller, leg.top, "ANSWER")
    outer = pbx.bridge()
    pbx.enter(outer, leg.top)
    pbx.enter(outer, caller)
    pbx.wait(6)
    end_call(pbx, caller, leg)
    return Expected(
        "74951110010", "79161230007", "answered", None, "103", None, 5, 6,
        "number", "+79160000103",
    )  # fmt: skip


def mobile_refuses(pbx: Pbx, caller: Chan, press: str | None, after: float) -> Leg:
    """Follow-me: desk 103 and her mobile ring; after 3 s the mobile picks up, and ``after``
    seconds later presses ``press`` (not 1) or drops for want of a key.  The desk's leg."""
    desk = ring(pbx, caller, ["FMPR-103@from-internal"], "IAX2/103", "103/103")
    leg, _, _ = mobile_leg(pbx, caller)
    pbx.wait(3)
    mobile_picks_up(pbx, leg)
    pbx.wait(after)
    if press:
        pbx.dtmf(leg.phone or caller, press)
    mobile_drops(pbx, caller, leg, "NOANSWER")
    return desk


def mobile_unconfirmed(pbx: Pbx, press: str | None = "2") -> Expected:
    """The mobile (or its voicemail) picks up but refuses (2) or never presses 1; the desk
    rings out at 20 s and voicemail takes the call."""
    caller = pbx.caller(did="74951110010", number="79161230008")
    desk = mobile_refuses(pbx, caller, press, 2 if press else 10)
    pbx.wait(20 - pbx.now)
    cancel(pbx, caller, desk, "NOANSWER")
    pbx.varset(caller, "DIALSTATUS", "NOANSWER")
    pbx.up(caller)
    pbx.app(caller, "VoiceMail", "103@default,u")
    pbx.wait(8)
    pbx.hangup(caller)
    return Expected("74951110010", "79161230008", "missed", "no_answer", ring=20)


def queue_abandoned(pbx: Pbx, *, join_seen: bool = True) -> Expected:
    """Queue 400 answers the caller, who hangs up after 12 s of waiting."""
    caller = pbx.caller(did="74951110003", number="79161230006")
    pbx.up(caller)
    if join_seen:
        pbx.queue_join(caller, "400")
    pbx.wait(12)
    pbx.send("HangupRequest", caller, Cause="16")
    pbx.queue_abandon(caller, "400", hold=12)
    pbx.queue_leave(caller, "400")
    pbx.send("Hangup", caller, Cause="16")
    return Expected("74951110003", "79161230006", "missed", "abandoned", ring=12, queue="400")


def ivr_hang_up(pbx: Pbx) -> Expected:
    """The IVR answers and plays its greeting; the caller hangs up after 3 s."""
    caller = pbx.caller(did="74951110001", number="79161230002")
    pbx.up(caller)
    pbx.app(caller, "Background", "custom/welcome-sales")
    pbx.wait(3)
    pbx.hangup(caller)
    return Expected("74951110001", "79161230002", "missed", "abandoned", ring=3)


def forward_to_stranger(pbx: Pbx) -> Expected:
    """101 forwards to a number no manager declared, which answers after 5 s."""
    caller = pbx.caller(did="74951110011", number="79161230009")
    leg = ring(
        pbx,
        caller,
        ["101@from-internal", "79169999999@from-internal"],
        "PJSIP/carrier-out",
        "carrier-out/79169999999",
    )
    pbx.wait(5)
    answer(pbx, caller, leg)
    pbx.wait(30)
    end_call(pbx, caller, leg)
    return Expected(
        "74951110011", "79161230009", "answered", ring=5, talk=30,
        via="number", number="+79169999999",
    )  # fmt: skip


def national_did(pbx: Pbx) -> Expected:
    """The carrier sends the DID in national form (8495...); hunt group: 101 answers."""
    caller = pbx.caller(did="84951110002", number="79161230010")
    pbx.varset(caller, "__FROM_DID", "84951110002")
    leg = ring(pbx, caller, ["101@from-internal"], "PJSIP/101", "101")
    pbx.wait(2)
    answer(pbx, caller, leg)
    pbx.wait(4)
    end_call(pbx, caller, leg)
    return Expected("84951110002", "79161230010", "answered", None, "101", None, 2, 4, "device")


def blind_transfer(pbx: Pbx) -> Expected:
    """101 answers after 2 s, talks 3 s and blind-transfers (##) to 102, who picks up
    3 s later and talks 6 s."""
    caller = pbx.caller(did="74951110002", number="79161230011")
    first = ring(pbx, caller, ["101@from-internal"], "PJSIP/101", "101")
    pbx.wait(2)
    answer(pbx, caller, first)
    pbx.wait(3)
    assert first.phone is not None and first.inner_dialer is not None
    transferee = first.inner_dialer  # the ;2 half leaves 101 and dials 102
    pbx.send("BlindTransfer", Result="Success", Extension="102", IsExternal="Yes")
    pbx.leave(transferee)
    pbx.hangup(first.phone, by_far_end=False)
    one, two = pbx.local("102@from-internal", caller)
    pbx.dial(transferee, one, "102@from-internal/n")
    phone = pbx.phone("SIP/102", caller)
    pbx.dial(two, phone, "102")
    pbx.wait(3)
    answer(pbx, transferee, Leg(one, phone, [(one, two)], two))
    pbx.wait(6)
    pbx.hangup(caller)
    for chan in (phone, one, two, transferee, first.chain[0][0]):
        pbx.hangup(chan, by_far_end=False)
    return Expected(
        "74951110002", "79161230011", "answered", None, "101", "102", 2, 9,
        "device", transfer_wait=3,
    )  # fmt: skip


SCENES = {
    "mobile_confirms": mobile_confirms,
    "mobile_unconfirmed": mobile_unconfirmed,
    "queue_abandoned": queue_abandoned,
    "ivr_hang_up": ivr_hang_up,
    "forward_to_stranger": forward_to_stranger,
    "national_did": national_did,
    "blind_transfer": blind_transfer,
}


# -- a PBX's people, for the correlator alone (the config builds the same from YAML) ----

MANAGERS = {"101": "PJSIP/101", "102": "SIP/102", "103": "IAX2/103"}
MOBILES = {"79160000101": "101", "79160000103": "103"}


def _digits(text: str) -> str:
    digits = text.lstrip("+")
    return "7" + digits[1:] if len(digits) == 11 and digits.startswith("8") else digits


def _device_owner(channel: str) -> str | None:
    device = channel.rsplit("-", 1)[0]
    return next((ext for ext, phone in MANAGERS.items() if phone == device), None)


def _phone_number(text: str) -> str | None:
    digits = _digits(text)
    return "+" + digits if digits.isdigit() and len(digits) == 11 else None


TOPOLOGY = Topology(
    node="pbx",
    inbound_contexts=frozenset({CALLER_CONTEXT}),
    did_variable="FROM_DID",
    manager_for_channel=_device_owner,
    manager_for_extension=lambda ext: ext if ext in MANAGERS else None,
    manager_for_number=lambda text: MOBILES.get(_digits(text)),
    phone_number=_phone_number,
)
