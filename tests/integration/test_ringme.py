"""Ring me over the real protocol: RingMe and AmiListener against FakeAsterisk on loopback.

The fake rings the manager and runs the callback as the captured one (trace 12)
did; the events the listener receives go through RingMe (its results) and the
correlator (the outbound call record), as in the daemon.  Time for RingMe's
timeouts is a controllable clock; every wait on the network is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from ami_settings import ListenerSettings, resynced_listener
from clocks import SecondsClock
from pydantic import SecretStr

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.ami.connection import AmiListener
from pbx_tracker.callbacks.ringme import (
    RESPONSE_MARGIN,
    RingMe,
    RingMeCall,
    RingMeRefused,
    RingMeResult,
)
from pbx_tracker.callbacks.settings import RingMeSettings
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction, MissedReason
from pbx_tracker.config import load_settings
from pbx_tracker.replay import topology_of
from pbx_tracker.sim.asterisk import FakeAsterisk
from traces import TRACE_CONFIG, TRACES

USER = "tracker"
SECRET = "ring-me-secret-7f"
WAIT = 5.0
SECRET_VALUE = SecretStr(SECRET)
TASK = 7
CUSTOMER = "+79161234503"
CALL = RingMeCall(
    task_id=TASK,
    manager="101",
    manager_dial="IAX2/101/101",
    customer=CUSTOMER,
    did="+74951110001",
    attempt=1,
)
TEMPLATE = Path(__file__).resolve().parents[2] / "pbx_tracker/sim/templates"


AmiSettings = functools.partial(ListenerSettings, SECRET_VALUE)


@dataclass
class Rig:
    """A logged-in listener, RingMe on it, and a correlator fed with what arrives."""

    asterisk: FakeAsterisk
    listener: AmiListener
    ringme: RingMe
    clock: SecondsClock
    correlator: Correlator
    records: list[CallRecord] = field(default_factory=list)
    events: list[AmiEvent] = field(default_factory=list)

    def originates(self) -> list[dict[str, str]]:
        return self.asterisk.actions_named("Originate")

    async def next_event(self) -> AmiEvent:
        while True:
            item = await asyncio.wait_for(self.listener.events.get(), WAIT)
            if isinstance(item, AmiEvent):
                self.events.append(item)
                self.records += self.correlator.feed(item)
                return item

    async def result(self) -> RingMeResult:
        """Events until RingMe reports a result."""
        while (result := self.ringme.feed(await self.next_event())) is None:
            pass
        return result

    async def until(self, done: Callable[[AmiEvent], bool]) -> AmiEvent:
        while not done(event := await self.next_event()):
            pass
        return event

    async def call_ends(self) -> list[CallRecord]:
        """Events until the correlator has no call in progress; the records it made."""
        while self.correlator.calls_in_progress:
            await self.next_event()
        return self.records


def ringme_settings(**changes: object) -> RingMeSettings:
    return RingMeSettings.model_validate({"context": "callback", **changes})  # the traces' PBX


@contextlib.asynccontextmanager
async def rig_for(settings: RingMeSettings | None = None, **fake: object) -> AsyncIterator[Rig]:
    tracker = load_settings(TRACE_CONFIG, environ={})
    async with FakeAsterisk(username=USER, secret=SECRET, timestamp_events=True) as asterisk:
        for key, value in fake.items():
            setattr(asterisk, key, value)
        async with resynced_listener(AmiSettings(port=asterisk.port), WAIT) as listener:

            async def send(action: Mapping[str, str], timeout: float) -> object:  # noqa: ASYNC109
                return await listener.send_action(action, timeout=timeout)

            clock = SecondsClock()
            ringme = RingMe(
                send, settings or ringme_settings(), region=tracker.phone_region, clock=clock
            )
            correlator = Correlator(topology_of(tracker))
            yield Rig(asterisk, listener, ringme, clock, correlator)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with rig_for() as ready:
        yield ready


# -- the Originate ------------------------------------------------------------------


async def test_the_originate_rings_the_manager_and_names_the_callback(rig: Rig) -> None:
    """Channel, context, customer as the trunk dials it, caller ID, timeout, async, variables."""
    action_id = await rig.ringme.start(CALL)
    (sent,) = rig.originates()
    assert sent == {
        "Action": "Originate",
        "ActionID": action_id,
        "Async": "true",
        "CallerID": '"Callback" <79161234503>',
        "Channel": "IAX2/101/101",
        "Context": "callback",
        "Exten": "79161234503",
        "Priority": "1",
        "Timeout": "20000",
        "Variable": "CALLBACK_TASK=7,CALLBACK_ATTEMPT=1,CALLBACK_DID=74951110001,"
        "CALLBACK_FOR=79161234503,CALLBACK_TIMEOUT=30",
    }
    assert action_id.startswith("ringme-7-1-")
    assert rig.ringme.in_flight(TASK) and rig.ringme.attempts(TASK) == 1


async def test_a_configured_caller_id_is_what_the_customer_sees() -> None:
    """With a callback caller ID configured, the customer sees that number and rings for the
    configured time, and the callback's record shows it as the number dialled."""
    settings = ringme_settings(caller_id="+74951110002", customer_ring_seconds=45)
    async with rig_for(settings) as rig:
        await rig.ringme.start(CALL)
        result = await rig.result()
        records = await rig.call_ends()
    (sent,) = rig.originates()
    assert "CALLBACK_DID=74951110002," in sent["Variable"]
    assert sent["Variable"].endswith("CALLBACK_TIMEOUT=45")
    assert result.outcome == "answered"
    (record,) = records
    assert record.did == "74951110002"  # the caller ID the dialplan showed the customer


# -- answered ---------------------------------------------------------------------------


async def test_an_answered_callback_is_an_outbound_call_by_that_manager(rig: Rig) -> None:
    """101 picks up, the customer answers: `answered`, then one outbound answered record."""
    action_id = await rig.ringme.start(CALL)
    result = await rig.result()
    assert result == RingMeResult(TASK, 1, action_id, "answered", result.reason, manager="101")
    assert "101" in result.reason
    assert not rig.ringme.in_flight(TASK)
    (record,) = await rig.call_ends()
    assert record.direction is Direction.OUTBOUND
    assert (record.caller, record.did) == ("79161234503", "74951110001")
    assert (record.status, record.answered_by) == (CallStatus.ANSWERED, "101")
    assert (record.ring_seconds, record.talk_seconds) == (3, 4)
    assert record.variables["CALLBACK_TASK"] == "7"
    assert record.variables["CALLBACK_ATTEMPT"] == "1"
    assert record.recording_path == f"/var/spool/asterisk/monitor/{record.linkedid}.wav"
    assert rig.correlator.events_failed == 0


async def test_another_managers_phone_rings_as_its_own_device() -> None:
    """A ring-me callback for manager 102 rings 102's own phone, and the callback is recorded as
    answered by 102."""
    async with rig_for() as rig:
        call = replace(CALL, manager="102", manager_dial="IAX2/102/102")
        await rig.ringme.start(call)
        assert (await rig.result()).outcome == "answered"
        (record,) = await rig.call_ends()
    assert record.answered_by == "102"
    devices = {e.get("Device") for e in rig.events if e.name == "DeviceStateChange"}
    assert devices == {"IAX2/102", "IAX2/carrier-out"}


@pytest.mark.parametrize(
    ("customer", "reason"), [("no_answer", MissedReason.NO_ANSWER), ("busy", MissedReason.BUSY)]
)
async def test_a_customer_who_does_not_answer_makes_a_missed_callback(
    customer: str, reason: MissedReason
) -> None:
    """The manager answered (`answered`); the call record says the customer was not reached."""
    async with rig_for(originate_outcomes={"79161234503": customer}) as rig:
        await rig.ringme.start(CALL)
        assert (await rig.result()).outcome == "answered"
        (record,) = await rig.call_ends()
    assert record.direction is Direction.OUTBOUND
    assert (record.status, record.missed_reason) == (CallStatus.MISSED, reason)
    assert record.caller == "79161234503"
    assert [a.outcome for a in record.attempts] == [customer.replace("_", "")]


# -- the manager does not answer ----------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "expected", "reason"),
    [
        ("no_answer", "no_answer", "3"),
        ("busy", "busy", "5"),
        ("reject", "rejected", "1"),
        ("congestion", "failed", "8"),
    ],
)
async def test_a_manager_who_does_not_pick_up_gives_the_matching_outcome(
    outcome: str, expected: str, reason: str
) -> None:
    """A manager who does not answer, is busy, rejects or whose line is congested gets the matching
    outcome with Asterisk's reason, the attempt is counted, and no call is recorded."""
    async with rig_for(originate_outcomes={"IAX2/101": outcome}) as rig:
        action_id = await rig.ringme.start(CALL)
        result = await rig.result()
        response = rig.events[-1]
    assert (result.action_id, result.outcome) == (action_id, expected)
    assert f"Reason {reason}" in result.reason
    assert (
        response.fields.items()
        >= {
            "Response": "Failure",
            "Channel": "IAX2/101/101",
            "Context": "callback",
            "Exten": "79161234503",
            "Reason": reason,
            "Uniqueid": "<null>",
        }.items()
    )
    assert not rig.ringme.in_flight(TASK) and rig.ringme.attempts(TASK) == 1
    assert rig.records == [] and rig.correlator.calls_in_progress == 0  # no call was made


async def test_a_synchronous_originate_that_fails_is_an_error_answer() -> None:
    """Without Async Asterisk answers only after the manager's phone gave up."""
    async with rig_for(originate_outcomes={"IAX2/101": "busy"}) as rig:
        action = {"Action": "Originate", "Channel": "IAX2/101/101", "Context": "callback"}
        action.update(Exten="79161234503", Priority="1")
        (response,) = await rig.listener.send_action(action, timeout=WAIT)
        hangup = await rig.until(lambda e: e.name == "Hangup")
    assert (response.get("Response"), response.get("Message")) == ("Error", "Originate failed")
    assert hangup.get("Cause") == "17"
    assert not [e for e in rig.events if e.name == "OriginateResponse"]


# -- refusals ---------------------------------------------------------------------------------


async def test_a_second_start_while_one_is_in_flight_is_refused(rig: Rig) -> None:
    """A second "ring me" for a task while the first is still ringing is refused and only one call
    is placed."""
    await rig.ringme.start(CALL)
    with pytest.raises(RingMeRefused, match="attempt 1 is still in flight"):
        await rig.ringme.start(replace(CALL, attempt=2))
    assert len(rig.originates()) == 1
    assert (await rig.result()).outcome == "answered"


async def test_no_more_than_max_attempts() -> None:
    """A ring-me callback is refused once the task has used all its configured attempts, and each
    attempt placed carries its number."""
    settings = ringme_settings(max_attempts=2)
    async with rig_for(settings, originate_outcomes={"IAX2/101": "no_answer"}) as rig:
        for attempt in (1, 2):
            await rig.ringme.start(replace(CALL, attempt=attempt))
            assert (await rig.result()).outcome == "no_answer"
        with pytest.raises(RingMeRefused, match="all 2 attempts are used"):
            await rig.ringme.start(replace(CALL, attempt=3))
    variables = [a["Variable"] for a in rig.originates()]
    assert [v.split(",")[1] for v in variables] == ["CALLBACK_ATTEMPT=1", "CALLBACK_ATTEMPT=2"]


@pytest.mark.parametrize("customer", ["", "<unknown>", "anonymous", "Restricted", "101"])
async def test_a_customer_who_cannot_be_dialled_is_refused(rig: Rig, customer: str) -> None:
    """A ring-me callback to a hidden, anonymous, restricted or internal caller is refused as not
    dialable and nothing is placed or counted."""
    with pytest.raises(RingMeRefused, match="cannot be dialled"):
        await rig.ringme.start(replace(CALL, customer=customer))
    assert rig.originates() == [] and rig.ringme.attempts(TASK) == 0


async def test_an_originate_asterisk_rejects_is_refused_with_its_message(rig: Rig) -> None:
    """An Originate Asterisk rejects (a bad channel) is refused with Asterisk's message and counts
    as a finished attempt."""
    with pytest.raises(RingMeRefused, match="rejected the Originate: Invalid channel"):
        await rig.ringme.start(replace(CALL, manager_dial="FOO/101"))
    assert len(rig.originates()) == 1
    assert rig.ringme.attempts(TASK) == 1 and not rig.ringme.in_flight(TASK)


async def test_without_ami_nothing_is_counted() -> None:
    """A ring-me callback while AMI is not connected is refused saying so, and uses no attempt."""
    listener = AmiListener(AmiSettings(port=1))  # never run: not connected

    async def send(action: Mapping[str, str], timeout: float) -> object:  # noqa: ASYNC109
        return await listener.send_action(action, timeout=timeout)

    ringme = RingMe(send, ringme_settings(), region="RU")
    with pytest.raises(RingMeRefused, match="AMI is not connected"):
        await ringme.start(CALL)
    assert ringme.attempts(TASK) == 0 and not ringme.in_flight(TASK)


# -- late results -----------------------------------------------------------------------------


async def test_a_late_response_is_reported_once_and_never_dials_again(rig: Rig) -> None:
    """Given up after the manager's ring time: "timeout"; the late success is still one result."""
    action_id = await rig.ringme.start(CALL)
    rig.clock.advance(20 + RESPONSE_MARGIN + 1)
    (timeout,) = rig.ringme.expire(rig.clock.now)
    assert (timeout.action_id, timeout.outcome) == (action_id, "timeout")
    assert rig.ringme.expire(rig.clock.now) == []
    assert rig.ringme.in_flight(TASK)  # a success may still come: no second dial yet
    with pytest.raises(RingMeRefused, match="still in flight"):
        await rig.ringme.start(replace(CALL, attempt=2))

    response = await rig.until(lambda e: e.name == "OriginateResponse")
    late = rig.ringme.feed(response)
    reason = late.reason if late else ""
    assert late == RingMeResult(TASK, 1, action_id, "answered", reason, True, manager="101")
    assert rig.ringme.feed(response) is None
    assert rig.ringme.expire(rig.clock.now + 3600) == []
    (record,) = await rig.call_ends()
    assert record.status is CallStatus.ANSWERED
    assert len(rig.originates()) == 1


async def test_no_answer_at_all_frees_the_task_after_the_customers_ring_time() -> None:
    """When Asterisk never answers an Originate the attempt times out, and the task is free for
    another attempt once the customer's ring time has also passed."""
    async with rig_for(originate_delay=60.0) as rig:  # the response would come much later
        await rig.ringme.start(CALL)
        rig.clock.advance(20 + RESPONSE_MARGIN)
        assert [r.outcome for r in rig.ringme.expire()] == ["timeout"]
        rig.clock.advance(30 - 0.001)
        assert rig.ringme.in_flight(TASK)
        rig.clock.advance(0.001)
        assert not rig.ringme.in_flight(TASK)
        second = await rig.ringme.start(replace(CALL, attempt=2))
    assert second.startswith("ringme-7-2-") and len(rig.originates()) == 2


# -- the template ---------------------------------------------------------------------------


def test_the_template_is_the_capture_and_correlates_as_the_readme_says() -> None:
    """Trace 12 itself: one outbound call by 101 to 79161234503, answered, 3 s ring, 4 s talk."""
    template = TEMPLATE / "12_callback_originate.jsonl"
    assert template.read_bytes() == (TRACES / "12_callback_originate.jsonl").read_bytes()
    correlator = Correlator(topology_of(load_settings(TRACE_CONFIG, environ={})))
    records = correlator.feed_all(read_capture(template))
    (record,) = records
    assert record.direction is Direction.OUTBOUND
    assert (record.caller, record.did, record.answered_by) == ("79161234503", "74951110001", "101")
    assert (record.status, record.ring_seconds, record.talk_seconds) == (CallStatus.ANSWERED, 3, 4)
    assert correlator.calls_in_progress == 0 and correlator.events_failed == 0
