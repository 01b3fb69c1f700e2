"""RingMe's bookkeeping with a scripted AMI answer, and the simulated Originate's events.

The network path (FakeAsterisk + AmiListener) is in tests/integration/test_ringme.py;
here `send_action` is a plain coroutine that records the action and answers as told.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest
from clocks import SecondsClock

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.callbacks.ringme import (
    RESPONSE_MARGIN,
    RingMe,
    RingMeCall,
    RingMeRefused,
)
from pbx_tracker.callbacks.settings import RingMeSettings
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction, MissedReason
from pbx_tracker.sim.ids import IdAllocator, OriginateIds
from pbx_tracker.sim.originate import CUSTOMER_OUTCOMES, MANAGER_OUTCOMES, callback_call
from pbx_tracker.sim.originate_request import OriginateRequest, originate_error, parse_variables
from traces import TRACES

TASK = 3
CALL = RingMeCall(
    task_id=TASK,
    manager="102",
    manager_dial="PJSIP/102",
    customer="+79161234567",
    did="+74951110003",
    attempt=1,
)
START = 1795424400.0
QUEUED = {"Response": "Success", "ActionID": "x", "Message": "Originate successfully queued"}


class Ami:
    """`send_action` stand-in: records actions, answers `reply` (or raises it)."""

    def __init__(self, reply: Mapping[str, str] | BaseException = QUEUED) -> None:
        self.reply = reply
        self.actions: list[dict[str, str]] = []

    async def __call__(self, action: Mapping[str, str], timeout: float) -> object:  # noqa: ASYNC109
        self.actions.append(dict(action))
        if isinstance(self.reply, BaseException):
            raise self.reply
        return [AmiEvent(dict(self.reply), 0.0)]


def make(ami: Ami | None = None, **settings: object) -> tuple[RingMe, Ami, SecondsClock]:
    ami = ami or Ami()
    clock = SecondsClock(500.0)
    ringme = RingMe(ami, RingMeSettings.model_validate(settings), region="RU", clock=clock)
    return ringme, ami, clock


def response(action_id: str, outcome: str = "Success", reason: str = "4") -> AmiEvent:
    fields = {"Event": "OriginateResponse", "ActionID": action_id, "Response": outcome}
    return AmiEvent({**fields, "Reason": reason}, 0.0)


# -- the action ------------------------------------------------------------------------


async def test_the_action_uses_the_settings() -> None:
    """A ring-me Originate rings the manager's phone for the configured time, then the customer
    through the configured context, shows 'Callback' with the customer's number, and passes the
    task, attempt, tracked number and customer ring time to the dialplan."""
    ringme, ami, _ = make(context="ring-back", manager_ring_seconds=15, customer_ring_seconds=40)
    action_id = await ringme.start(CALL)
    (action,) = ami.actions
    assert action["ActionID"] == action_id
    assert (action["Channel"], action["Context"], action["Exten"]) == (
        "PJSIP/102",
        "ring-back",
        "79161234567",
    )
    assert (action["Timeout"], action["CallerID"]) == ("15000", '"Callback" <79161234567>')
    assert action["Variable"] == (
        "CALLBACK_TASK=3,CALLBACK_ATTEMPT=1,CALLBACK_DID=74951110003,"
        "CALLBACK_FOR=79161234567,CALLBACK_TIMEOUT=40"
    )


async def test_a_national_number_is_dialled_in_international_digits() -> None:
    """A customer number stored as 8 (916) 123-45-67 is dialled as 79161234567."""
    ringme, ami, _ = make()
    await ringme.start(replace(CALL, customer="8 (916) 123-45-67"))
    assert ami.actions[0]["Exten"] == "79161234567"


async def test_without_a_did_the_dialplan_chooses_the_caller_id() -> None:
    """When the missed call had no tracked number, the Originate passes none and the dialplan
    chooses the caller id the customer sees."""
    ringme, ami, _ = make()
    await ringme.start(replace(CALL, did=None))
    assert "CALLBACK_DID" not in ami.actions[0]["Variable"]


async def test_each_attempt_has_its_own_action_id() -> None:
    """Each ring-me attempt for a task gets its own action id and attempt number, so Asterisk's
    answers are never mixed up between attempts."""
    ringme, ami, _ = make()
    first = await ringme.start(CALL)
    ringme.feed(response(first, "Failure", "3"))
    second = await ringme.start(replace(CALL, attempt=2))
    assert first != second and second.startswith("ringme-3-2-")
    assert [a["Variable"].split(",")[1] for a in ami.actions] == [
        "CALLBACK_ATTEMPT=1",
        "CALLBACK_ATTEMPT=2",
    ]


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "settings", "reason"),
    [
        (CALL, {"enabled": False}, "disabled"),
        (replace(CALL, customer="<unknown>"), {}, "cannot be dialled"),
        (replace(CALL, manager_dial="PJSIP/102&PJSIP/102-mobile"), {}, "not one channel"),
        (replace(CALL, manager_dial="102"), {}, "not one channel"),
        (replace(CALL, attempt=4), {"max_attempts": 3}, "all 3 attempts are used"),
    ],
)
async def test_refused_before_anything_is_sent(
    call: RingMeCall, settings: dict[str, object], reason: str
) -> None:
    """A ring-me that cannot work (switched off, a customer number that cannot be dialled, a manager
    dial string that is not one channel, all attempts used) is refused with the reason and nothing
    is sent or counted."""
    ringme, ami, _ = make(**settings)
    with pytest.raises(RingMeRefused, match=reason) as refused:
        await ringme.start(call)
    assert refused.value.task_id == TASK and reason in refused.value.reason
    assert ami.actions == [] and ringme.attempts(TASK) == 0


async def test_an_attempt_number_kept_elsewhere_counts_against_the_limit() -> None:
    """A restarted daemon passes its own count: the limit holds across restarts."""
    ringme, ami, _ = make(max_attempts=3)
    await ringme.start(replace(CALL, attempt=3))
    assert ringme.attempts(TASK) == 3
    assert "CALLBACK_ATTEMPT=3" in ami.actions[0]["Variable"]


async def test_connection_lost_is_not_an_attempt() -> None:
    """A ring-me while AMI is disconnected is refused saying AMI is not connected, and the manager
    keeps all their attempts."""
    ringme, _, _ = make(Ami(ConnectionError("AMI not connected to 127.0.0.1:5038")))
    with pytest.raises(RingMeRefused, match="AMI is not connected"):
        await ringme.start(CALL)
    assert ringme.attempts(TASK) == 0 and not ringme.in_flight(TASK)


async def test_an_unanswered_originate_is_held_until_it_expires() -> None:
    """No answer to the action: Asterisk may have queued it, so no second dial meanwhile."""
    ringme, _, clock = make(Ami(TimeoutError()))
    with pytest.raises(RingMeRefused, match="attempt 1 held"):
        await ringme.start(CALL)
    assert ringme.attempts(TASK) == 1 and ringme.in_flight(TASK)
    clock.advance(20 + RESPONSE_MARGIN)
    assert [r.outcome for r in ringme.expire()] == ["timeout"]
    clock.advance(30)
    assert not ringme.in_flight(TASK)


async def test_a_refused_originate_counts_but_is_not_in_flight() -> None:
    """An Originate Asterisk rejects (permission denied) is reported with Asterisk's message, counts
    as an attempt, and lets the manager try again at once."""
    error = {"Response": "Error", "ActionID": "x", "Message": "Permission denied"}
    ringme, _, _ = make(Ami(error))
    with pytest.raises(RingMeRefused, match="rejected the Originate: Permission denied"):
        await ringme.start(CALL)
    assert ringme.attempts(TASK) == 1 and not ringme.in_flight(TASK)


# -- results -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reason", "outcome"),
    [
        ("Success", "4", "answered"),
        ("Failure", "3", "no_answer"),
        ("Failure", "2", "no_answer"),
        ("Failure", "5", "busy"),
        ("Failure", "1", "rejected"),
        ("Failure", "8", "failed"),
        ("Failure", "0", "failed"),
    ],
)
async def test_originate_response_reasons(answer: str, reason: str, outcome: str) -> None:
    """Asterisk's answer to a ring-me gives the manager a clear outcome (answered, no answer, busy,
    rejected, failed) naming the phone, and the task is free for another attempt."""
    ringme, _, _ = make()
    action_id = await ringme.start(CALL)
    result = ringme.feed(response(action_id, answer, reason))
    assert result is not None
    assert (result.task_id, result.attempt, result.outcome, result.late) == (
        TASK,
        1,
        outcome,
        False,
    )
    assert "102" in result.reason
    assert not ringme.in_flight(TASK)


async def test_other_events_and_other_action_ids_are_not_ours() -> None:
    """Only the OriginateResponse carrying this attempt's action id ends the attempt, and only once;
    other events and other actions' answers are ignored."""
    ringme, _, _ = make()
    action_id = await ringme.start(CALL)
    assert ringme.feed(response("someone-else")) is None
    assert ringme.feed(AmiEvent({"Event": "Hangup", "ActionID": action_id}, 0.0)) is None
    assert ringme.in_flight(TASK)
    assert ringme.feed(response(action_id)) is not None
    assert ringme.feed(response(action_id)) is None  # once


async def test_expire_reports_each_overdue_attempt_once() -> None:
    """An attempt Asterisk never answers times out once after the manager's ring time plus a margin,
    naming the customer's ring time, and a late answer afterwards is still recorded as late."""
    ringme, _, clock = make(manager_ring_seconds=20, customer_ring_seconds=30)
    action_id = await ringme.start(CALL)
    assert ringme.expire(clock.now + 20 + RESPONSE_MARGIN - 0.01) == []
    (timeout,) = ringme.expire(clock.now + 20 + RESPONSE_MARGIN)
    assert (timeout.action_id, timeout.outcome, timeout.attempt) == (action_id, "timeout", 1)
    assert "30 s" in timeout.reason
    assert ringme.expire(clock.now + 1000) == []
    late = ringme.feed(response(action_id, "Failure", "3"))
    assert late is not None and late.late and late.outcome == "no_answer"


async def test_forget_drops_a_closed_task() -> None:
    """Once a task is closed its ring-me bookkeeping is dropped: a late answer changes nothing and
    no attempts are counted."""
    ringme, _, _ = make()
    action_id = await ringme.start(CALL)
    ringme.forget(TASK)
    assert ringme.feed(response(action_id)) is None
    assert ringme.attempts(TASK) == 0 and not ringme.in_flight(TASK)


# -- the simulated Originate ----------------------------------------------------------------


REQUEST = OriginateRequest.parse(
    {
        "Action": "Originate",
        "ActionID": "ringme-3-1-abcd",
        "Channel": "IAX2/103/103",
        "Context": "callback",
        "Exten": "79160001122",
        "Priority": "1",
        "CallerID": '"Callback" <79160001122>',
        "Timeout": "20000",
        "Async": "true",
        "Variable": "CALLBACK_TASK=3,CALLBACK_DID=74951110002\nCALLBACK_TIMEOUT=25",
    }
)


def correlate(messages: list[dict[str, str]]) -> tuple[list[CallRecord], Correlator]:
    correlator = Correlator()
    events = [
        AmiEvent({k: v for k, v in m.items() if k != "_ts"}, START + float(m["_ts"]))
        for m in messages
    ]
    records = correlator.feed_all(events)
    assert correlator.calls_in_progress == 0 and correlator.events_failed == 0
    return records, correlator


def test_the_request_reads_repeated_and_comma_separated_variables() -> None:
    """The simulated Asterisk reads an Originate's variables whether repeated or comma-separated (a
    value may contain '='), and its device, caller id and async flag."""
    assert REQUEST.variables == (
        ("CALLBACK_TASK", "3"),
        ("CALLBACK_DID", "74951110002"),
        ("CALLBACK_TIMEOUT", "25"),
    )
    assert (REQUEST.device, REQUEST.resource, REQUEST.is_async) == ("IAX2/103", "103/103", True)
    assert (REQUEST.caller_name, REQUEST.caller_number) == ("Callback", "79160001122")
    assert parse_variables("A=1,B=x=y\nC=") == [("A", "1"), ("B", "x=y"), ("C", "")]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"Channel": ""}, "Channel not specified"),
        ({"Channel": "IAX2"}, "Invalid channel"),
        ({"Channel": "FOO/101"}, "Invalid channel"),
        ({"Priority": "start"}, "Invalid priority"),
        ({"Timeout": "soon"}, "Invalid timeout"),
        ({"Context": ""}, "Originate with 'Exten' requires 'Context' and 'Priority'"),
        ({}, None),
    ],
)
def test_requests_asterisk_refuses_at_once(changes: dict[str, str], message: str | None) -> None:
    """The simulated Asterisk refuses an Originate at once with Asterisk's own message (no channel,
    an invalid channel, priority or timeout, an exten without a context) and accepts a valid one."""
    action = {"Channel": "PJSIP/101", "Context": "callback", "Exten": "7916", "Priority": "1"}
    assert originate_error(OriginateRequest.parse({**action, **changes})) == message


def test_the_answered_call_keeps_the_captures_events_and_headers() -> None:
    """Same events, same header names in the same order, as trace 12 (less queue noise)."""
    captured = [
        e.fields
        for e in read_capture(TRACES / "12_callback_originate.jsonl")
        if e.name not in ("", "FullyBooted", "SuccessfulAuth", "QueueMemberStatus")
    ]
    action = {"ActionID": "cap-438", "Channel": "IAX2/101/101", "Context": "callback"}
    action.update(Exten="79161234503", Priority="1", CallerID='"Callback" <79161234503>')
    action["Variable"] = "CALLBACK_FOR=79161234503,CALLBACK_DID=74951110001"
    call = callback_call(OriginateRequest.parse(action), ids=OriginateIds(), start=START)
    generated = [{k: v for k, v in m.items() if k != "_ts"} for m in call.messages]
    assert [list(m) for m in generated] == [list(m) for m in captured]
    different = {
        key
        for mine, theirs in zip(generated, captured, strict=True)
        for key in mine
        if mine[key] != theirs[key]
    }
    identifying = {"Channel", "DestChannel", "Uniqueid", "Linkedid", "DestUniqueid"}
    identifying |= {"DestLinkedid", "BridgeUniqueid", "AppData", "Value", "UniqueID"}
    identifying |= {"StartTime", "AnswerTime", "EndTime", "DestinationChannel", "LastData"}
    identifying |= {"Duration", "BillableSeconds"}
    assert different <= identifying


def test_an_answered_call_is_an_outbound_answered_record() -> None:
    """A ring-me the manager and customer both answer is recorded as one answered outbound call from
    the tracked number, by the manager, with its ring and talk times and the task id, and Asterisk
    reports success to the Originate."""
    call = callback_call(REQUEST, ids=IdAllocator(START), start=START, talk=12.5)
    (record,), _ = correlate(call.messages)
    assert record.direction is Direction.OUTBOUND
    assert (record.caller, record.did, record.answered_by) == ("79160001122", "74951110002", "103")
    assert (record.status, record.ring_seconds, record.talk_seconds) == (CallStatus.ANSWERED, 3, 12)
    assert record.variables["CALLBACK_TASK"] == "3"
    response = call.response
    assert (response["Response"], response["Reason"], response["ActionID"]) == (
        "Success",
        "4",
        "ringme-3-1-abcd",
    )
    assert response["Channel"].startswith("IAX2/103-")
    dial = next(m for m in call.messages if m.get("Application") == "Dial")
    assert dial["AppData"] == "IAX2/carrier-out/79160001122,25"


@pytest.mark.parametrize("manager", [m for m in MANAGER_OUTCOMES if m != "answer"])
def test_a_manager_who_does_not_answer_makes_no_call(manager: str) -> None:
    """When the manager's phone is not answered, busy or rejects, no call is recorded and Asterisk
    reports the Originate failed after the manager's ring time (or at once)."""
    call = callback_call(REQUEST, ids=OriginateIds(), start=START, manager=manager)
    records, _ = correlate(call.messages)
    assert records == [] and call.after == []
    assert (call.response["Response"], call.response["Channel"]) == ("Failure", "IAX2/103/103")
    hangup = next(m for m in call.outcome if m.get("Event") == "Hangup")
    expected = 20.0 if manager == "no_answer" else 0.5  # the Originate's Timeout
    assert float(hangup["_ts"]) == expected


@pytest.mark.parametrize("customer", [c for c in CUSTOMER_OUTCOMES if c != "answer"])
def test_a_customer_who_does_not_answer_is_a_missed_callback(customer: str) -> None:
    """When the customer does not answer or is busy the callback is recorded as a missed outbound
    call with that reason, ringing for the dialplan's callback timeout."""
    call = callback_call(REQUEST, ids=OriginateIds(), start=START, customer=customer)
    (record,), _ = correlate(call.messages)
    reason = MissedReason.NO_ANSWER if customer == "no_answer" else MissedReason.BUSY
    assert (record.status, record.missed_reason) == (CallStatus.MISSED, reason)
    assert call.response["Response"] == "Success"
    cdr = next(m for m in call.after if m.get("Event") == "Cdr")
    assert cdr["Disposition"] == ("NO ANSWER" if customer == "no_answer" else "BUSY")
    if customer == "no_answer":  # rings for the dialplan's Dial timeout (CALLBACK_TIMEOUT)
        assert record.ring_seconds == 25


def test_unknown_outcomes_are_errors() -> None:
    """Asking the simulator for a manager or customer outcome it does not know is refused with an
    error naming it."""
    with pytest.raises(ValueError, match="manager outcome 'maybe'"):
        callback_call(REQUEST, ids=OriginateIds(), start=START, manager="maybe")
    with pytest.raises(ValueError, match="customer outcome 'reject'"):
        callback_call(REQUEST, ids=OriginateIds(), start=START, customer="reject")
