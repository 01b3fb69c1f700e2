"""Over generated call shapes, a call is answered if and only if the caller's channel was
bridged with a person's leg, by the manager whose leg it was."""

from __future__ import annotations

from dataclasses import dataclass

from dialplans import TOPOLOGY, Chan, Leg, Pbx, answer, cancel, end_call, ring
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.records import CallRecord

# target → (manager it reaches or None, Local targets in front of it, device, dial string)
TARGETS = {
    "desk101": ("101", ["101@from-internal"], "PJSIP/101", "101"),
    "desk102": ("102", ["102@from-queue"], "SIP/102", "102"),
    "desk104": (None, ["104@from-internal"], "PJSIP/104", "104"),
    "mobile101": ("101", ["79160000101@from-internal"], "PJSIP/out", "out/79160000101"),
    "stranger": (None, ["79169999999@from-internal"], "PJSIP/out", "out/79169999999"),
}
EXTRA_LOCALS = ["FMPR-{ext}@from-internal", "{ext}@from-internal"]


@dataclass
class Branch:
    target: str
    depth: int  # Local halves in front of the target's own (0-2)
    fate: str  # ringout | busy | answer | refuse (picks up, never connected)
    after: int  # seconds into the round


@dataclass
class Round:
    branches: list[Branch]
    caller_gives_up_at: int | None  # seconds into the round, before the timeout
    timeout: int = 20


@dataclass
class Shape:
    ivr: int  # seconds of IVR before the first round (0: none)
    rounds: list[Round]
    talk: int
    dialstatus_visible: bool  # the AMI user reads the dialplan class (VarSet)
    optimise: bool  # Asterisk optimises the outermost Local channel away mid-call


@dataclass
class Truth:
    """What the generator made happen."""

    answered_by: str | None = None
    answered: bool = False
    ring: int = 0
    talk: int = 0
    reason: str | None = None
    phones: int = 0
    refused: int = 0


branches = st.builds(
    Branch,
    target=st.sampled_from(sorted(TARGETS)),
    depth=st.integers(0, 2),
    fate=st.sampled_from(["ringout", "busy", "answer", "refuse"]),
    after=st.integers(1, 15),
)
rounds = st.builds(
    Round,
    branches=st.lists(branches, min_size=1, max_size=3),
    caller_gives_up_at=st.one_of(st.none(), st.integers(1, 19)),
)
shapes = st.builds(
    Shape,
    ivr=st.integers(0, 5),
    rounds=st.lists(rounds, min_size=1, max_size=3),
    talk=st.integers(2, 40),
    dialstatus_visible=st.booleans(),
    optimise=st.booleans(),
)


def play(shape: Shape) -> tuple[Pbx, Truth]:
    """Build the AMI traffic of ``shape`` and what truly happened."""
    pbx, truth = Pbx(), Truth()
    caller = pbx.caller()
    if shape.ivr:
        pbx.up(caller)
        pbx.app(caller, "Background", "custom/welcome")
        pbx.wait(shape.ivr)
    for number, round_ in enumerate(shape.rounds):
        if play_round(pbx, caller, round_, shape, truth):
            return pbx, truth
        if number == len(shape.rounds) - 1:
            pbx.up(caller)
            pbx.app(caller, "VoiceMail", "101@default,u")
            pbx.wait(5)
            pbx.hangup(caller)
    return pbx, truth


def play_round(pbx: Pbx, caller: Chan, round_: Round, shape: Shape, truth: Truth) -> bool:
    """One Dial of the caller's channel; True when the call ended in it."""
    start = pbx.now
    if shape.dialstatus_visible:
        pbx.varset(caller, "DIALSTATUS", "")
    legs = [start_branch(pbx, caller, branch) for branch in round_.branches]
    truth.phones += len(legs)
    ringing = dict(zip(range(len(legs)), legs, strict=True))
    statuses: list[str] = []
    moments = sorted((b.after, i) for i, b in enumerate(round_.branches) if b.fate != "ringout")
    gives_up = round_.caller_gives_up_at
    for after, index in moments:
        if after >= round_.timeout or (gives_up is not None and after >= gives_up):
            break
        pbx.wait(start + after - pbx.now)
        branch, leg = round_.branches[index], ringing.pop(index)
        if branch.fate == "answer":
            for other in ringing.values():
                cancel(pbx, caller, other)
            bridges = answer(pbx, caller, leg)
            truth.answered, truth.answered_by = True, TARGETS[branch.target][0]
            truth.ring = round(pbx.now)
            pbx.wait(shape.talk // 2)
            if shape.optimise:
                optimise_outermost(pbx, caller, leg, bridges[-2])
            pbx.wait(shape.talk - shape.talk // 2)
            truth.talk = shape.talk
            end_call(pbx, caller, leg)
            return True
        if branch.fate == "refuse":
            refuse(pbx, caller, leg)
            truth.refused += 1
            statuses.append("NOANSWER")
        else:
            cancel(pbx, caller, leg, "BUSY")
            statuses.append("BUSY")
    if gives_up is not None and ringing:  # (with nothing left ringing, Dial has returned)
        pbx.wait(start + gives_up - pbx.now)
        pbx.send("HangupRequest", caller, Cause="16")
        for leg in ringing.values():
            cancel(pbx, caller, leg)
        pbx.send("Hangup", caller, Cause="16")
        truth.reason, truth.ring = "abandoned", round(pbx.now)
        return True
    if ringing:
        pbx.wait(start + round_.timeout - pbx.now)
    for leg in ringing.values():
        cancel(pbx, caller, leg, "NOANSWER")
        statuses.append("NOANSWER")
    status = "NOANSWER" if "NOANSWER" in statuses else "BUSY"
    if shape.dialstatus_visible:
        pbx.varset(caller, "DIALSTATUS", status)
    truth.reason = "no_answer" if status == "NOANSWER" else "busy"
    truth.ring = round(pbx.now)
    return False


def start_branch(pbx: Pbx, caller: Chan, branch: Branch) -> Leg:
    manager, locals_, device, dial_string = TARGETS[branch.target]
    extra = [pattern.format(ext=manager or "104") for pattern in EXTRA_LOCALS[: branch.depth]]
    return ring(pbx, caller, extra + locals_, device, dial_string)


def refuse(pbx: Pbx, caller: Chan, leg: Leg) -> None:
    """The phone picks up (its voicemail, an unconfirmed mobile) but is never put through."""
    assert leg.phone is not None and leg.inner_dialer is not None
    pbx.up(leg.phone)
    pbx.dial_end(leg.inner_dialer, leg.phone, "ANSWER")
    if leg.inner_dialer is not caller:
        bridge = pbx.bridge()
        pbx.enter(bridge, leg.phone)
        pbx.enter(bridge, leg.inner_dialer)
    pbx.wait(1)
    cancel(pbx, caller, leg, "NOANSWER")


def optimise_outermost(pbx: Pbx, caller: Chan, leg: Leg, inner_bridge: str) -> None:
    """LocalOptimization: the caller takes the place of the outer Local's ;2 in the next
    bridge in, and both halves go away."""
    one, two = leg.chain.pop(0)
    pbx.send("LocalOptimizationBegin", SourceUniqueid=caller.uniqueid, DestUniqueId=two.uniqueid)
    pbx.enter(inner_bridge, caller, swap=two)
    pbx.leave(two)
    pbx.send("LocalOptimizationEnd", Success="Yes", Id="0")
    pbx.hangup(one, by_far_end=False)
    pbx.hangup(two, by_far_end=False)


def correlate(pbx: Pbx) -> CallRecord:
    correlator = Correlator(TOPOLOGY)
    records = correlator.feed_all(pbx.ami_events())
    assert correlator.events_failed == 0 and correlator.calls_in_progress == 0
    (record,) = records
    return record


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes)
def test_answered_if_and_only_if_bridged_with_a_persons_leg(shape: Shape) -> None:
    """Any mix of Local chains, busy phones, ring-outs, unconfirmed pick-ups and caller
    hang-ups: answered exactly when a leg was put through, by whose leg it was."""
    pbx, truth = play(shape)
    record = correlate(pbx)
    assert (record.status == "answered") == truth.answered
    if truth.answered:
        assert record.answered_by == truth.answered_by
        assert (record.ring_seconds, record.talk_seconds) == (truth.ring, truth.talk)
        assert record.missed_reason is None
    else:
        assert record.answered_by is None and record.talk_seconds == 0
        assert (record.missed_reason, record.ring_seconds) == (truth.reason, truth.ring)
    assert len(record.attempts) == truth.phones
    refused = [a for a in record.attempts if a.outcome == "not_accepted"]
    assert len(refused) == truth.refused
