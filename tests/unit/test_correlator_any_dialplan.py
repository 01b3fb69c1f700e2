"""Calls on dialplans we have no capture of: Local chains, mobiles with call
confirmation, IVRs, queues, forwards to numbers nobody declared (replay path)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from dialplans import (
    SCENES,
    TOPOLOGY,
    Expected,
    Leg,
    Pbx,
    answer,
    blind_transfer,
    cancel,
    connect,
    end_call,
    forward_to_stranger,
    ivr_hang_up,
    mobile_confirms,
    mobile_refuses,
    mobile_unconfirmed,
    national_did,
    queue_abandoned,
    queue_call,
    ring,
)

from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.records import CallRecord

MOBILE_103 = "79160000103"


def correlate(pbx: Pbx) -> CallRecord:
    correlator = Correlator(TOPOLOGY)
    records = correlator.feed_all(pbx.ami_events())
    assert correlator.events_failed == 0
    assert correlator.calls_in_progress == 0
    (record,) = records
    return record


def correlate_scene(scene: Callable[..., Expected], **options: str | bool | None) -> CallRecord:
    """Build a scene, correlate it, and check the record against its true outcome."""
    pbx = Pbx()
    want = scene(pbx, **options)
    record = correlate(pbx)
    assert (record.did, record.caller) == (want.did, want.caller)
    assert outcome(record) == (want.status, want.answered_by, want.reason, want.transferred_to)
    assert (record.ring_seconds, record.talk_seconds) == (want.ring, want.talk)
    assert (record.answered_via, record.answered_number) == (want.via, want.number)
    assert (record.queue, record.transfer_wait_seconds) == (want.queue, want.transfer_wait)
    return record


def outcome(record: CallRecord) -> tuple[str, str | None, str | None, str | None]:
    return (record.status, record.answered_by, record.missed_reason, record.transferred_to)


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_manager_reached_through_local_chains_of_any_depth_answers(depth: int) -> None:
    """A desk phone behind 0 to 3 Local channels: answered by its manager, one attempt."""
    pbx = Pbx()
    caller = pbx.caller()
    chain = ["101@from-internal", "101@from-queue", "FMPR-101@from-internal"][:depth]
    leg = ring(pbx, caller, chain, "PJSIP/101", "101")
    pbx.wait(4)
    answer(pbx, caller, leg)
    pbx.wait(30)
    end_call(pbx, caller, leg)
    record = correlate(pbx)
    assert outcome(record) == ("answered", "101", None, None)
    assert (record.ring_seconds, record.talk_seconds) == (4, 30)
    assert (record.answered_via, record.answered_number) == ("device", None)
    assert [(a.manager, a.outcome, a.via) for a in record.attempts] == [("101", "answer", "device")]


@pytest.mark.parametrize("gap", [0.0, 2.0])
def test_local_channels_optimised_away_mid_call_keep_one_conversation(gap: float) -> None:
    """Asterisk swaps the caller into the phone's bridge and drops the Local halves:
    still one answered call, talk unbroken, no transfer, no transfer wait."""
    pbx = Pbx()
    caller = pbx.caller()
    leg = ring(pbx, caller, ["101@from-internal"], "PJSIP/101", "101")
    pbx.wait(3)
    inner, _ = answer(pbx, caller, leg)
    pbx.wait(5)
    one, two = leg.chain[0]
    pbx.send("LocalOptimizationBegin", SourceUniqueid=caller.uniqueid, DestUniqueId=two.uniqueid)
    pbx.leave(caller)
    pbx.wait(gap)  # a clock rebuilt from raw text may put the swap's two halves apart
    pbx.enter(inner, caller, swap=two)
    pbx.leave(two)
    pbx.send("LocalOptimizationEnd", Success="Yes", Id="0")
    pbx.hangup(one, by_far_end=False)
    pbx.hangup(two, by_far_end=False)
    pbx.wait(20)
    assert leg.phone is not None
    pbx.hangup(caller)
    pbx.hangup(leg.phone, by_far_end=False)
    record = correlate(pbx)
    assert outcome(record) == ("answered", "101", None, None)
    assert (record.ring_seconds, record.talk_seconds, record.transfer_wait_seconds) == (
        3,
        25 + gap,
        0,
    )


def test_mobile_that_confirms_answers_for_its_manager() -> None:
    """The mobile picks up, presses 1 two seconds later: answered by 103 on her mobile,
    ringing until the confirmation; the desk's attempt cancelled."""
    record = correlate_scene(mobile_confirms)
    assert [(a.channel.split("-")[0], a.outcome, a.via) for a in record.attempts] == [
        ("IAX2/103", "cancel", "device"),
        ("PJSIP/carrier", "answer", "number"),
    ]


@pytest.mark.parametrize("press", ["2", None])
def test_mobile_that_does_not_confirm_is_not_an_answer(press: str | None) -> None:
    """The mobile (or its voicemail) picks up but refuses or never presses 1: the caller is
    never connected to it; the desk rings out and voicemail takes the call: missed, no_answer,
    the mobile's attempt not accepted."""
    record = correlate_scene(mobile_unconfirmed, press=press)
    mobile = [a for a in record.attempts if a.via == "number"]
    assert [(a.manager, a.outcome, a.number) for a in mobile] == [
        ("103", "not_accepted", "+" + MOBILE_103)
    ]


def test_unconfirmed_mobile_then_desk_answers() -> None:
    """The mobile refuses, then the desk phone picks up: answered by 103 on her desk."""
    pbx = Pbx()
    caller = pbx.caller(did="74951110010")
    desk = mobile_refuses(pbx, caller, "2", 1)
    pbx.wait(4)
    answer(pbx, caller, desk)
    pbx.wait(10)
    end_call(pbx, caller, desk)
    record = correlate(pbx)
    assert outcome(record) == ("answered", "103", None, None)
    assert (record.answered_via, record.ring_seconds, record.talk_seconds) == ("device", 8, 10)
    assert sorted(a.outcome or "" for a in record.attempts) == ["answer", "not_accepted"]


def test_voicemail_behind_a_local_channel_is_a_missed_call() -> None:
    """The Local half runs VoiceMail and "answers" the caller's Dial; no person is on the
    line: missed, no_answer, ringing until voicemail took it."""
    pbx = Pbx()
    caller = pbx.caller()
    one, two = pbx.local("vmu101@ext-local", caller)
    pbx.dial(caller, one, "vmu101@ext-local/n")
    pbx.wait(15)
    pbx.up(two)
    pbx.app(two, "VoiceMail", "101@default,u")
    pbx.up(one)
    pbx.dial_end(caller, one, "ANSWER")
    bridge = pbx.bridge()
    pbx.enter(bridge, one)
    pbx.up(caller)
    pbx.enter(bridge, caller)
    pbx.wait(20)
    pbx.hangup(caller)
    pbx.hangup(one, by_far_end=False)
    pbx.hangup(two, by_far_end=False)
    record = correlate(pbx)
    assert outcome(record) == ("missed", None, "no_answer", None)
    assert record.ring_seconds == 15


def test_caller_hanging_up_in_the_ivr_before_any_phone_rang_is_abandoned() -> None:
    """The IVR answers and plays its greeting; the caller hangs up: missed, abandoned,
    ringing the whole time they waited, no ring attempt."""
    assert correlate_scene(ivr_hang_up).attempts == ()


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("NOANSWER", "no_answer"),
        ("BUSY", "busy"),
        ("CONGESTION", "busy"),
        ("CHANUNAVAIL", "unavailable"),
    ],
)
def test_the_callers_own_dial_result_decides_the_reason(status: str, reason: str) -> None:
    """The caller's Dial of a ring group of Local channels ends with ``status``: that is why
    the call was missed, whatever the phones behind said."""
    pbx = Pbx()
    caller = pbx.caller()
    legs = [
        ring(pbx, caller, [f"{ext}@from-internal"], device, ext)
        for ext, device in (("101", "PJSIP/101"), ("102", "SIP/102"))
    ]
    pbx.wait(20)
    for leg in legs:
        cancel(pbx, caller, leg, status)
    pbx.varset(caller, "DIALSTATUS", status)
    pbx.hangup(caller, by_far_end=False)
    record = correlate(pbx)
    assert outcome(record) == ("missed", None, reason, None)


def test_phones_that_could_not_be_dialled_at_all_are_unavailable() -> None:
    """No channel could be created (nothing but DIALSTATUS=CHANUNAVAIL): unavailable."""
    pbx = Pbx()
    caller = pbx.caller()
    pbx.varset(caller, "DIALSTATUS", "")
    pbx.app(caller, "Dial", "PJSIP/104,20")
    pbx.varset(caller, "DIALSTATUS", "CHANUNAVAIL")
    pbx.hangup(caller, "20", by_far_end=False)
    assert outcome(correlate(pbx)) == ("missed", None, "unavailable", None)


def test_caller_who_gives_up_while_phones_ring_abandoned_even_after_a_ring_out() -> None:
    """Follow-me: the desk rings out (NOANSWER), then desk and mobile ring and the caller
    hangs up: judged by what happened last, abandoned."""
    pbx = Pbx()
    caller = pbx.caller()
    first = ring(pbx, caller, ["FMPR-103@from-internal"], "IAX2/103", "103/103")
    pbx.wait(6)
    cancel(pbx, caller, first, "NOANSWER")
    second = ring(pbx, caller, ["FMPR-103@from-internal"], "IAX2/103", "103/103")
    pbx.wait(4)
    pbx.send("HangupRequest", caller, Cause="16")
    cancel(pbx, caller, second, "CANCEL")
    pbx.send("Hangup", caller, Cause="16")
    record = correlate(pbx)
    assert outcome(record) == ("missed", None, "abandoned", None)
    assert record.ring_seconds == 10


def test_queue_call_answered_through_a_local_member_is_not_a_transfer() -> None:
    """AgentConnect names the member "Anna", the bridge says extension 101: answered by 101,
    transferred to nobody, the queue on the record and on its attempts."""
    pbx = Pbx()
    caller = pbx.caller(did="74951110003")
    first, second = queue_call(pbx, caller)
    pbx.wait(4)
    cancel(pbx, caller, second)
    pbx.queue_leave(caller, "400")
    pbx.send("AgentConnect", caller, Queue="400", MemberName="Anna", HoldTime="4")
    answer(pbx, caller, first)
    pbx.wait(6)
    end_call(pbx, caller, first)
    record = correlate(pbx)
    assert outcome(record) == ("answered", "101", None, None)
    assert record.queue == "400"
    assert {a.queue for a in record.attempts} == {"400"}


@pytest.mark.parametrize("join_seen", [True, False])
def test_queue_caller_abandon_alone_means_abandoned_and_names_the_queue(join_seen: bool) -> None:
    """The caller hangs up while queued (even if the join itself was not seen): missed,
    abandoned, queue 400 on the record, the wait as its ring time."""
    correlate_scene(queue_abandoned, join_seen=join_seen)


@pytest.mark.parametrize(
    ("status", "reason"), [("TIMEOUT", "no_answer"), ("LEAVEEMPTY", "unavailable")]
)
def test_queue_that_gives_up_on_the_caller_is_not_abandoned(status: str, reason: str) -> None:
    """Asterisk raises QueueCallerAbandon on a queue timeout too; QUEUESTATUS tells it apart."""
    pbx = Pbx()
    caller = pbx.caller(did="74951110003")
    legs = queue_call(pbx, caller)
    pbx.wait(60)
    for leg in legs:
        cancel(pbx, caller, leg, "NOANSWER")
    pbx.queue_abandon(caller, "400", hold=60)
    pbx.queue_leave(caller, "400")
    pbx.varset(caller, "QUEUESTATUS", status)
    pbx.hangup(caller, by_far_end=False)
    record = correlate(pbx)
    assert outcome(record) == ("missed", None, reason, None)
    assert record.ring_seconds == 60


def test_queue_nobody_could_join_is_unavailable() -> None:
    """JOINEMPTY produces no queue event at all, only QUEUESTATUS: missed, unavailable."""
    pbx = Pbx()
    caller = pbx.caller(did="74951110003")
    pbx.up(caller)
    pbx.app(caller, "Queue", "400,t,,,60")
    pbx.varset(caller, "QUEUESTATUS", "JOINEMPTY")
    pbx.app(caller, "Playback", "sorry-no-agents")
    pbx.wait(3)
    pbx.hangup(caller, by_far_end=False)
    assert outcome(correlate(pbx)) == ("missed", None, "unavailable", None)


@pytest.mark.parametrize(
    "dial_string",
    [
        "carrier-out/79160000101",
        "79160000101@carrier-out",
        "carrier-out/sip:+79160000101@192.0.2.1:5060",
        "carrier-out/89160000101",
    ],
)
def test_trunk_leg_to_a_managers_mobile_is_that_manager(dial_string: str) -> None:
    """Call forwarding dials 101's mobile through the trunk, in any dial-string form:
    answered by 101, reached on her number."""
    pbx = Pbx()
    caller = pbx.caller()
    leg = ring(pbx, caller, ["101@from-internal"], "PJSIP/carrier-out", dial_string)
    pbx.wait(7)
    answer(pbx, caller, leg)
    pbx.wait(9)
    end_call(pbx, caller, leg)
    record = correlate(pbx)
    assert outcome(record) == ("answered", "101", None, None)
    assert (record.answered_via, record.answered_number) == ("number", "+79160000101")


def test_forward_to_a_number_nobody_declared_is_answered_never_missed() -> None:
    """101 forwards to a number no manager declared: answered, by nobody known, with the
    number that answered on the record."""
    correlate_scene(forward_to_stranger)


def test_desk_phone_nobody_declared_answers_the_call() -> None:
    """Extension 104 is nobody's: the call is answered, the device named on the record."""
    pbx = Pbx()
    caller = pbx.caller()
    leg = ring(pbx, caller, [], "PJSIP/104", "104")
    pbx.wait(2)
    answer(pbx, caller, leg)
    pbx.wait(3)
    end_call(pbx, caller, leg)
    record = correlate(pbx)
    assert outcome(record) == ("answered", None, None, None)
    assert (record.answered_via, record.answered_number) == ("device", "PJSIP/104")


def test_unknown_softphone_behind_a_managers_local_channel_is_that_manager() -> None:
    """Local/102@from-internal rings a softphone nobody listed: it is 102's, by the pattern."""
    pbx = Pbx()
    caller = pbx.caller()
    leg = ring(pbx, caller, ["102@from-internal"], "PJSIP/boris-laptop", "boris-laptop")
    pbx.wait(2)
    answer(pbx, caller, leg)
    pbx.wait(3)
    end_call(pbx, caller, leg, caller_first=False)
    record = correlate(pbx)
    assert outcome(record) == ("answered", "102", None, None)
    assert record.attempts[0].manager == "102"


def test_blind_transfer_keeps_the_wait_out_of_talk() -> None:
    """101 talks 3 s and blind-transfers; 102 picks up 3 s later and talks 6 s: talk 9,
    transfer wait 3, transferred to 102."""
    correlate_scene(blind_transfer)


def test_national_did_is_kept_as_delivered_for_the_labeler() -> None:
    """The carrier's national form reaches the record as delivered (the labeler maps it)."""
    assert correlate_scene(national_did).did == "84951110002"


def test_call_picked_up_by_another_manager_is_theirs() -> None:
    """101's phone rings, 102 picks the call up from his own phone (*8): answered by 102,
    101's ring attempt cancelled, and no second call appears for 102's pick-up."""
    pbx = Pbx()
    caller = pbx.caller()
    ringing = ring(pbx, caller, ["101@from-internal"], "PJSIP/101", "101")
    pbx.wait(4)
    picker = pbx.new_channel("SIP/102-000000aa", context="from-internal", exten="*8")
    pbx.up(picker)
    (one, two), phone = ringing.chain[0], ringing.phone
    assert phone is not None
    pbx.dial_end(two, phone, "CANCEL")
    pbx.dial(two, picker, "101")
    pbx.send("Pickup", picker, TargetUniqueid=phone.uniqueid)
    pbx.dial_end(two, picker, "ANSWER")
    pbx.hangup(phone, "26", by_far_end=False)
    picked = Leg(one, picker, [(one, two)], two)
    connect(pbx, caller, picked)
    pbx.wait(12)
    pbx.hangup(caller)
    for chan in (picker, one, two):
        pbx.hangup(chan, by_far_end=False)
    record = correlate(pbx)
    assert outcome(record) == ("answered", "102", None, None)
    assert (record.ring_seconds, record.talk_seconds) == (4, 12)
    assert [(a.manager, a.outcome) for a in record.attempts] == [
        ("101", "cancel"),
        ("102", "answer"),
    ]


@pytest.mark.parametrize("name", sorted(SCENES))
def test_local_halves_pair_up_by_name_when_localbridge_is_filtered(name: str) -> None:
    """A site whose AMI user filters out LocalBridge events gets the same records: the two
    halves of a Local channel are paired by their names."""
    pbx = Pbx()
    want = SCENES[name](pbx)
    pbx.messages_sent = [m for m in pbx.messages_sent if m["Event"] != "LocalBridge"]
    record = correlate(pbx)
    assert outcome(record) == (want.status, want.answered_by, want.reason, want.transferred_to)
    assert (record.ring_seconds, record.talk_seconds) == (want.ring, want.talk)


@pytest.mark.parametrize("name", sorted(SCENES))
def test_hangup_requests_filtered_out_change_no_record(name: str) -> None:
    """A site whose AMI user filters out HangupRequest and SoftHangupRequest gets the same
    records: a caller's channel that hangs up unasked hung up itself."""
    pbx = Pbx()
    want = SCENES[name](pbx)
    requests = ("HangupRequest", "SoftHangupRequest")
    pbx.messages_sent = [m for m in pbx.messages_sent if m["Event"] not in requests]
    record = correlate(pbx)
    assert outcome(record) == (want.status, want.answered_by, want.reason, want.transferred_to)
    assert (record.ring_seconds, record.talk_seconds) == (want.ring, want.talk)


def test_unreachable_phone_without_dialplan_events_is_unavailable() -> None:
    """No DialBegin, no VarSet, no hang-up requests: the caller's channel hung up by Dial with
    cause 20 (subscriber absent) was missed because no phone could be reached."""
    pbx = Pbx()
    caller = pbx.caller()
    pbx.wait(1)
    pbx.send("Hangup", caller, Cause="20")
    assert outcome(correlate(pbx)) == ("missed", None, "unavailable", None)


def test_desk_that_forwards_the_call_is_a_forwarded_attempt() -> None:
    """101's phone answers the ring with a redirect (SIP 302) to her mobile, who picks up:
    answered by 101 on her mobile, the desk's attempt forwarded."""
    pbx = Pbx()
    caller = pbx.caller()
    desk = ring(pbx, caller, ["101@from-internal"], "PJSIP/101", "101")
    pbx.wait(2)
    assert desk.phone is not None and desk.inner_dialer is not None
    pbx.dial_end(desk.inner_dialer, desk.phone, "CANCEL", forward="79160000101")
    pbx.hangup(desk.phone, by_far_end=False)
    mobile = pbx.phone("PJSIP/carrier-out", caller)
    pbx.dial(desk.inner_dialer, mobile, "carrier-out/79160000101")
    pbx.wait(3)
    forwarded = Leg(desk.top, mobile, desk.chain, desk.inner_dialer)
    answer(pbx, caller, forwarded)
    pbx.wait(10)
    end_call(pbx, caller, forwarded)
    record = correlate(pbx)
    assert outcome(record) == ("answered", "101", None, None)
    assert [(a.via, a.outcome) for a in record.attempts] == [
        ("device", "forwarded"),
        ("number", "answer"),
    ]
