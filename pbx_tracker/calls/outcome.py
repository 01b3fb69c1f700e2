"""How a finished call is judged: answered or missed, why, and for how long."""

from __future__ import annotations

from pbx_tracker.calls.records import (
    CallRecord,
    CallStatus,
    Direction,
    MissedReason,
    RingAttempt,
    from_epoch,
)
from pbx_tracker.calls.state import Call, Leg

_UNAVAILABLE_QUEUE = {"JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL", "LEAVEUNAVAIL", "FULL"}
_RANG_OUT = {"noanswer"}
_UNREACHABLE = {"chanunavail"}
_FAILED = {"congestion"}


def build_record(call: Call, ended_at: float, node: str) -> CallRecord | None:
    """The record of a finished call; None for an outbound call no manager placed."""
    if call.direction is Direction.OUTBOUND:
        if call.placed_by is None or call.customer is None:
            return None
        call.answered_by = call.placed_by
    answered = call.answered_at is not None
    ring, talk = _durations(call, ended_at)
    answered_at = call.answered_at
    if answered and call.estimated and call.answered_ms is not None:
        answered_at = ended_at - talk
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
        answered_at=from_epoch(answered_at) if answered_at is not None else None,
        ended_at=from_epoch(ended_at),
        ring_seconds=ring,
        talk_seconds=talk,
        recording_path=call.recording,
        queue=call.queue,
        complete=call.complete,
        variables=dict(call.variables),
        attempts=tuple(_attempt(leg) for leg in call.legs.values()),
    )


def missed_reason(call: Call) -> MissedReason:
    """Why nobody talked to the caller, from what the legs and the queue said."""
    outcomes = [leg.outcome for leg in _offered_legs(call)]
    if _caller_gave_up(call):
        return MissedReason.ABANDONED
    if any(o in _RANG_OUT for o in outcomes) or call.queue_status == "TIMEOUT":
        return MissedReason.NO_ANSWER
    if call.queue_abandoned or call.dial_status == "NOANSWER":
        return MissedReason.NO_ANSWER
    if any(o == "busy" for o in outcomes) or call.dial_status == "BUSY":
        return MissedReason.BUSY
    if call.queue_status in _UNAVAILABLE_QUEUE or call.dial_status == "CHANUNAVAIL":
        return MissedReason.UNAVAILABLE
    if any(o in _UNREACHABLE for o in outcomes):
        return MissedReason.UNAVAILABLE
    if call.voicemail:
        return MissedReason.NO_ANSWER
    if any(o in _FAILED for o in outcomes) or call.dial_status == "CONGESTION":
        return MissedReason.FAILED
    if call.caller_hangup_at is not None or outcomes:
        return MissedReason.ABANDONED
    return MissedReason.FAILED


def _offered_legs(call: Call) -> list[Leg]:
    """The legs whose fate decides a missed call: managers rung, or the customer dialled."""
    if call.direction is Direction.OUTBOUND and call.customer_legs():
        return call.customer_legs()
    return call.manager_legs() or call.customer_legs()


def _caller_gave_up(call: Call) -> bool:
    """The caller hung up while phones still rang or while waiting in a queue."""
    hangup = call.caller_hangup_at
    if hangup is None:
        return False
    legs = _offered_legs(call)
    if any(leg.ended_at is None or leg.ended_at >= hangup for leg in legs):
        return True
    if call.queue is not None and (call.queue_left_at is None or call.queue_left_at >= hangup):
        return True
    if call.voicemail:
        return False
    return not legs or all(leg.outcome == "cancel" for leg in legs)


def _durations(call: Call, ended_at: float) -> tuple[int, int]:
    """Ring (caller waiting for a manager) and talk seconds, rounded to whole seconds."""
    if call.direction is Direction.OUTBOUND:
        return _outbound_durations(call, ended_at)
    if call.estimated:
        reported = _reported_durations(call)
        if reported is not None:
            return reported
    if call.answered_at is not None:
        return round(call.answered_at - call.started_at), round(call.talk)
    return round(_offer_end(call, ended_at) - call.started_at), 0


def _reported_durations(call: Call) -> tuple[int, int] | None:
    """Durations Asterisk itself reported (Dial's *TIME_MS variables, the Cdr).

    Used when the capture has no clock (raw AMI text without `Timestamp:`).
    """
    if call.answered_at is not None and call.answered_ms is not None:
        ring = ((call.dialed_ms or call.answered_ms) - call.answered_ms) / 1000
        return round(ring), round(call.answered_ms / 1000)
    if call.cdr_duration is None:
        return None
    if call.answered_at is not None:
        talk = call.cdr_billable or 0.0
        return round(call.cdr_duration - talk), round(talk)
    return round(call.cdr_duration), 0


def _offer_end(call: Call, ended_at: float) -> float:
    ends = [leg.ended_at for leg in call.legs.values() if leg.ended_at is not None]
    if call.queue_left_at is not None:
        ends.append(call.queue_left_at)
    if call.caller_hangup_at is not None:
        ends.append(call.caller_hangup_at)
    return min(max(ends), ended_at) if ends else ended_at


def _outbound_durations(call: Call, ended_at: float) -> tuple[int, int]:
    # Dial's *TIME variables count from the manager's answer here, not the customer's:
    # only event times tell the customer's ring and talk.
    legs = call.customer_legs()
    rang_at = min((leg.rang_at for leg in legs), default=call.started_at)
    if call.answered_at is not None:
        return round(call.answered_at - rang_at), round(call.talk)
    end = max((leg.ended_at or ended_at for leg in legs), default=ended_at)
    return round(end - rang_at), 0


def _attempt(leg: Leg) -> RingAttempt:
    return RingAttempt(
        manager=leg.manager,
        channel=leg.channel,
        rang_at=from_epoch(leg.rang_at),
        ended_at=from_epoch(leg.ended_at) if leg.ended_at is not None else None,
        outcome=leg.outcome,
        queue=leg.queue,
    )
