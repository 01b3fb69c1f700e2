"""How a finished call is judged: answered or missed, why, and for how long."""

from __future__ import annotations

from pbx_tracker.calls.offers import Offer, reason_of
from pbx_tracker.calls.records import (
    CallRecord,
    CallStatus,
    Direction,
    MissedReason,
    RingAttempt,
    from_epoch,
)
from pbx_tracker.calls.state import Call, Leg

NOT_ACCEPTED = "not_accepted"
# The caller's channel hung up by Dial() itself with these causes: no phone could be reached.
_UNREACHABLE_CAUSES = frozenset({"20", "27", "3", "1"})


def build_record(call: Call, ended_at: float, node: str) -> CallRecord | None:
    """The record of a finished call; None for an outbound call no manager placed."""
    if call.direction is Direction.OUTBOUND:
        if call.placed_by is None or call.customer is None:
            return None
        call.answered_by = call.placed_by
    answered = call.answered_at is not None
    ring, talk = _durations(call, ended_at)
    return CallRecord(
        linkedid=call.linkedid,
        node=node,
        direction=call.direction,
        did=call.did,
        caller=call.caller if call.direction is Direction.INBOUND else call.customer,
        caller_name=call.caller_name,
        status=CallStatus.ANSWERED if answered else CallStatus.MISSED,
        missed_reason=None if answered else missed_reason(call),
        answered_by=call.answered_by if answered else None,
        transferred_to=call.transferred_to if answered else None,
        started_at=from_epoch(call.started_at),
        answered_at=from_epoch(call.answered_at) if call.answered_at is not None else None,
        ended_at=from_epoch(ended_at),
        ring_seconds=ring,
        talk_seconds=talk,
        recording_path=call.recording,
        queue=call.queue,
        complete=call.complete,
        variables=dict(call.variables),
        attempts=tuple(_attempt(call, leg) for leg in call.legs.values()),
        answered_via=call.answered_via if answered else None,
        answered_number=call.answered_number if answered else None,
        transfer_wait_seconds=round(call.transfer_wait) if answered else 0,
    )


def missed_reason(call: Call) -> MissedReason:
    """Why nobody talked to the caller, judged from the caller's side first.

    The last Dial or queue stint of the caller's channel decides (NOANSWER →
    no_answer, BUSY / CONGESTION → busy, CHANUNAVAIL → unavailable, CANCEL or
    hanging up in the queue → abandoned); without any, hanging up (in an IVR,
    an announcement) is abandoned and voicemail alone is no_answer.
    """
    last = call.last_offer()
    if last is not None:
        reason = reason_of(last.result(_hung_up_during(call, last)))
        if reason is not None:
            return reason
    if call.voicemail_at is not None:
        return MissedReason.NO_ANSWER
    if last is None and call.hangup_cause in _UNREACHABLE_CAUSES:
        return MissedReason.UNAVAILABLE
    if call.caller_hangup_at is not None:
        return MissedReason.ABANDONED
    return MissedReason.FAILED


def _hung_up_during(call: Call, offer: Offer) -> bool:
    """The caller hung up while this offer still tried to reach someone."""
    hangup = call.caller_hangup_at
    return hangup is not None and (offer.ended_at is None or hangup <= offer.ended_at)


def _durations(call: Call, ended_at: float) -> tuple[int, int]:
    """Ring (caller waiting for a manager) and talk seconds, rounded to whole seconds."""
    if call.direction is Direction.OUTBOUND:
        return _outbound_durations(call, ended_at)
    if call.answered_at is not None:
        return round(call.answered_at - call.started_at), round(call.talk)
    return round(_waited_until(call, ended_at) - call.started_at), 0


def _waited_until(call: Call, ended_at: float) -> float:
    """When a missed caller stopped waiting for a manager.

    They hung up while phones rang, in a queue or in the IVR before any phone
    rang; or the last Dial or queue stint ended and voicemail or a closing
    message took the call.
    """
    last = call.last_offer()
    hangup = call.caller_hangup_at
    if last is None:
        end = min(t for t in (hangup, call.voicemail_at, ended_at) if t is not None)
    elif _hung_up_during(call, last) and hangup is not None:
        end = hangup
    else:
        end = last.ended_at if last.ended_at is not None else ended_at
    return min(end, ended_at)


def _outbound_durations(call: Call, ended_at: float) -> tuple[int, int]:
    # Dial's *TIME variables count from the manager's answer here, not the customer's:
    # only event times tell the customer's ring and talk.
    legs = call.customer_legs()
    rang_at = min((leg.rang_at for leg in legs), default=call.started_at)
    if call.answered_at is not None:
        return round(call.answered_at - rang_at), round(call.talk)
    end = max((leg.ended_at or ended_at for leg in legs), default=ended_at)
    return round(end - rang_at), 0


def _attempt(call: Call, leg: Leg) -> RingAttempt:
    return RingAttempt(
        manager=leg.manager,
        channel=leg.channel,
        rang_at=from_epoch(leg.rang_at),
        ended_at=from_epoch(leg.ended_at) if leg.ended_at is not None else None,
        outcome=_leg_outcome(call, leg),
        queue=leg.queue,
        via=leg.via,
        number=leg.number,
    )


def _leg_outcome(call: Call, leg: Leg) -> str | None:
    """The leg's own DialStatus, read with what the caller's side knows.

    A phone behind Local channels is cancelled by the Local when the caller's
    Dial times out: it rang out (noanswer).  A leg that picked up but was never
    with the caller (an unconfirmed mobile, its voicemail) was not accepted.
    """
    if call.direction is not Direction.INBOUND:
        return leg.outcome
    if leg.outcome == "answer" and not leg.connected:
        return NOT_ACCEPTED
    if leg.outcome == "cancel" and _caller_side_status(call, leg) == "NOANSWER":
        return "noanswer"
    return leg.outcome


def _caller_side_status(call: Call, leg: Leg) -> str | None:
    for offer in reversed(call.offers):
        status = offer.statuses.get(leg.caller_dest or leg.uniqueid)
        if status is not None:
            return status
    return None
