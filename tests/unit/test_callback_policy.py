"""The callback policy: what each kind of finished call does to the customer's task."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pbx_tracker.callbacks.policy import (
    Attempt,
    Decision,
    Join,
    Nothing,
    Open,
    Resolution,
    Resolve,
    assignee_of,
    customer_of,
    decide,
)
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.calls.records import (
    CallRecord,
    CallStatus,
    Direction,
    MissedReason,
    RingAttempt,
)
from stored import missed_call

T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
CUSTOMER = "+79161234567"
DID = "+74951234567"
SETTINGS = CallbackSettings()


@dataclass(frozen=True)
class Task:
    id: int
    first_missed_at: datetime = T0 - timedelta(hours=1)


TASK = Task(7)


def rang(*managers: str | None) -> tuple[RingAttempt, ...]:
    return tuple(
        RingAttempt(m, f"PJSIP/{m}-0000000{i}", T0, T0 + timedelta(seconds=20), "noanswer")
        for i, m in enumerate(managers)
    )


def missed(reason: MissedReason = MissedReason.NO_ANSWER, **changes: Any) -> CallRecord:
    """A missed call on a tracked number (source google) from CUSTOMER."""
    record = missed_call("in.1", T0, CUSTOMER).replace(missed_reason=reason, source="google")
    return record.replace(**changes)


def answered(**changes: Any) -> CallRecord:
    """The customer called again: 101 answered."""
    return missed(
        linkedid="in.2",
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by="101",
        answered_at=T0 + timedelta(seconds=5),
        talk_seconds=60,
    ).replace(**changes)


def outbound(status: CallStatus, **changes: Any) -> CallRecord:
    """102 called the customer back (the correlator puts the customer in `caller`)."""
    answered_at = T0 + timedelta(seconds=8) if status is CallStatus.ANSWERED else None
    return missed(
        linkedid="out.1",
        direction=Direction.OUTBOUND,
        did="+74951110001",
        source=None,
        status=status,
        missed_reason=None if answered_at else MissedReason.NO_ANSWER,
        answered_by="102" if answered_at else None,
        answered_at=answered_at,
        attempts=rang("102", None),
    ).replace(**changes)


OPEN = Open(CUSTOMER, True, None, None, DID, "google")

CASES: list[tuple[str, CallRecord, Task | None, Decision]] = [
    ("no answer opens a task", missed(), None, OPEN),
    ("abandoned opens", missed(MissedReason.ABANDONED), None, OPEN),
    ("busy opens", missed(MissedReason.BUSY), None, OPEN),
    ("unavailable opens", missed(MissedReason.UNAVAILABLE), None, OPEN),
    ("failed opens", missed(MissedReason.FAILED), None, OPEN),
    ("a second miss joins", missed(), TASK, Join(7)),
    (
        "untracked number: nothing",
        missed(source=None),
        None,
        Nothing("missed on a number that is not tracked"),
    ),
    (
        "hidden caller: a task of its own",
        missed(caller=None),
        None,
        Open(None, False, None, None, DID, "google"),
    ),
    (
        "extension as caller: a task of its own, not dialable",
        missed(caller="101"),
        None,
        Open(None, False, None, None, DID, "google"),
    ),
    (
        "answered with an open task resolves it",
        answered(),
        TASK,
        Resolve(7, Resolution.ANSWERED_INBOUND, "101", "in.2", T0 + timedelta(seconds=5)),
    ),
    (
        "answered and transferred: resolved by the last one",
        answered(transferred_to="103"),
        TASK,
        Resolve(7, Resolution.ANSWERED_INBOUND, "103", "in.2", T0 + timedelta(seconds=5)),
    ),
    (
        "answered without a task: nothing",
        answered(),
        None,
        Nothing("answered; no open task for the caller"),
    ),
    (
        "outbound answered resolves",
        outbound(CallStatus.ANSWERED),
        TASK,
        Resolve(7, Resolution.CALLED_BACK, "102", "out.1", T0 + timedelta(seconds=8)),
    ),
    (
        "outbound unanswered is an attempt",
        outbound(CallStatus.MISSED),
        TASK,
        Attempt(7, "102", "out.1", T0),
    ),
    (
        "outbound to a number without a task: nothing",
        outbound(CallStatus.ANSWERED),
        None,
        Nothing("outbound call; no open task for that number"),
    ),
]


@pytest.mark.parametrize(
    ("record", "task", "expected"),
    [pytest.param(r, t, e, id=name) for name, r, t, e in CASES],
)
def test_decision(record: CallRecord, task: Task | None, expected: Decision) -> None:
    """Each kind of finished call does the expected thing to the customer's callback task: a miss
    opens one, an answer or a call back resolves it, an unanswered call back counts as an attempt,
    anything else changes nothing and says why."""
    assert decide(record, task, SETTINGS) == expected


def test_reasons_not_configured_open_nothing() -> None:
    """When callbacks are configured for 'no answer' only, a busy or abandoned call opens no task
    and the decision names the reason it was ignored."""
    settings = CallbackSettings(reasons=["no_answer"])
    assert decide(missed(MissedReason.NO_ANSWER), None, settings) == OPEN
    for reason in (MissedReason.BUSY, MissedReason.ABANDONED):
        decision = decide(missed(reason), TASK, settings)
        assert isinstance(decision, Nothing)
        assert reason.value in decision.reason


def test_hidden_callers_never_join() -> None:
    """Even handed an open task, a hidden caller's missed call opens a new one."""
    decision = decide(missed(caller=None), TASK, SETTINGS)
    assert isinstance(decision, Open)
    assert not decision.dialable


def test_disabled_callbacks_change_nothing() -> None:
    """With callbacks switched off no call, inbound or outbound, answered or not, opens, resolves or
    counts against a task."""
    settings = CallbackSettings(enabled=False)
    records = [missed(), answered(), outbound(CallStatus.ANSWERED), outbound(CallStatus.MISSED)]
    for record in records:
        assert decide(record, TASK, settings) == Nothing("callbacks are disabled")


ASSIGNEES: list[tuple[str, tuple[RingAttempt, ...], dict[str, str], tuple[str | None, ...]]] = [
    ("one phone rang", rang("101"), {"ROUTE_GROUP": "sales"}, ("101", "sales")),
    ("rang twice, same manager", rang("101", "101"), {}, ("101", None)),
    (
        "several rang: the router's one manager",
        rang("101", "102"),
        {"ROUTE_MANAGER": "102", "ROUTE_GROUP": "sales"},
        ("102", "sales"),
    ),
    (
        "ring all: the group",
        rang("101", "102"),
        {"ROUTE_MANAGER": "101&102", "ROUTE_GROUP": "sales"},
        (None, "sales"),
    ),
    ("nobody rang, router named one", (), {"ROUTE_MANAGER": "103"}, ("103", None)),
    ("nobody rang, no router", (), {}, (None, None)),
    ("trunk legs are no managers", rang(None, "104"), {}, ("104", None)),
    ("empty group is none", (), {"ROUTE_GROUP": "", "ROUTE_MANAGER": ""}, (None, None)),
]


@pytest.mark.parametrize(
    ("attempts", "variables", "expected"),
    [pytest.param(a, v, e, id=name) for name, a, v, e in ASSIGNEES],
)
def test_assignee(
    attempts: tuple[RingAttempt, ...], variables: dict[str, str], expected: tuple[str | None, ...]
) -> None:
    """A missed call's task goes to the one manager whose phone rang (or whom the router chose), to
    the group when several rang at once, and to nobody when nothing says who."""
    record = missed(attempts=attempts, variables=variables)
    assert assignee_of(record) == expected
    decision = decide(record, None, SETTINGS)
    assert isinstance(decision, Open)
    assert (decision.assignee, decision.group) == expected


def test_customer_is_the_e164_number_of_either_direction() -> None:
    """The customer of a task is the outside number in E.164 form, whether they called in or were
    called back, and a hidden or anonymous caller gives no customer."""
    assert customer_of(missed()) == CUSTOMER
    assert customer_of(outbound(CallStatus.MISSED)) == CUSTOMER
    assert customer_of(missed(caller=None)) is None
    assert customer_of(missed(caller="anonymous")) is None


def test_unanswered_outbound_without_manager_leg_names_nobody() -> None:
    """An unanswered call back with no manager's phone in it still counts as an attempt on the task,
    credited to nobody."""
    decision = decide(outbound(CallStatus.MISSED, attempts=()), TASK, SETTINGS)
    assert decision == Attempt(7, None, "out.1", T0)


@pytest.mark.parametrize(
    "record",
    [answered(), outbound(CallStatus.ANSWERED), outbound(CallStatus.MISSED)],
    ids=["answered", "called back", "attempt"],
)
def test_a_call_over_before_the_first_miss_does_not_count(record: CallRecord) -> None:
    """A late record (a call that ended before the task's miss) leaves the task alone."""
    later_task = Task(7, first_missed_at=record.ended_at + timedelta(seconds=1))
    decision = decide(record, later_task, SETTINGS)
    assert isinstance(decision, Nothing) and "before the task's first miss" in decision.reason
    ended_as_it_began = Task(7, first_missed_at=record.ended_at)
    assert isinstance(decide(record, ended_as_it_began, SETTINGS), Nothing)
    still_talking = Task(7, first_missed_at=record.ended_at - timedelta(seconds=1))
    assert not isinstance(decide(record, still_talking, SETTINGS), Nothing)


@pytest.mark.parametrize(
    "record",
    [answered(), outbound(CallStatus.ANSWERED)],
    ids=["answered", "called back"],
)
def test_a_call_talking_when_the_miss_began_closes_the_task_at_the_miss(
    record: CallRecord,
) -> None:
    """A call answered before the miss and still going after it closes the task at the
    miss, never before it: the callback time is 0, not negative."""
    assert record.answered_at is not None
    missed_while_talking = Task(7, first_missed_at=record.answered_at + timedelta(seconds=3))
    decision = decide(record, missed_while_talking, SETTINGS)
    assert isinstance(decision, Resolve)
    assert decision.at == missed_while_talking.first_missed_at
