"""What the simulated Asterisk does with an AMI `Originate`: its outcome and the call it places.

The tracker's "ring me" sends `Originate` with `Channel: <manager's phone>`,
`Context: callback`, `Exten: <customer>`, `Async: true` and `Variable`s.  A
real Asterisk (16-22; the capture in `templates/12_callback_originate.jsonl`)
then:

1. answers `Response: Success`, `Message: Originate successfully queued`;
2. creates the manager's leg and rings it (`Newchannel`, a `VarSet` per
   variable, `NewCallerid` with the Originate's `CallerID`, `Newstate
   Ringing`, a `DialBegin` with no calling channel);
3. when the manager does not pick up, the leg ends (`DialEnd BUSY` or
   `CONGESTION`, a reject, or only a `Hangup` when the Timeout trips, as
   `main/dial.c` does) and `OriginateResponse` says `Response: Failure` with
   `Reason` 3 (no answer), 5 (busy), 1 (rejected) or 8 (congestion), the
   requested dial string as `Channel` and `Uniqueid: <null>`;
4. when they do: `DialEnd ANSWER`, the dialplan starts in `Context`/`Exten`,
   `OriginateResponse Response: Success, Reason: 4`, then the callback:
   recording, caller ID set to `CALLBACK_DID`, `Dial` of the customer through
   the trunk (`IAX2/carrier-out-<n>`) for `CALLBACK_TIMEOUT` seconds; the
   customer answers (bridge, talk, hang-ups, `Cdr ANSWERED`) or not
   (`DialEnd NOANSWER` / `BUSY`, the dialplan's `NoOp` and `Hangup()`).

An answered callback is the capture with everything that identifies it
rewritten: Uniqueids, channel names, the bridge id, the manager's phone, the
customer, the DID, the caller ID name, the context, the ring and talk times
and the durations Asterisk reports.  The other outcomes cut the capture short
and end it with events built from its own messages, shaped like the captured
no-answer and busy calls (traces 03 and 05).  The capture's
`QueueMemberStatus` noise is left out: it depends on the queues a phone is in.

The request is read by `sim.originate_request`; the capture is
`sim.callback_template`, its endings without an answer `sim.callback_endings`,
its rewriting for one call `sim.callback_rendering`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from pbx_tracker.sim.callback_endings import customer_gives_up, manager_gives_up
from pbx_tracker.sim.callback_rendering import Rewrite, render_parts, rewrite_for
from pbx_tracker.sim.callback_template import CallbackTemplate, Message, Timed, callback_template
from pbx_tracker.sim.ids import CallIds
from pbx_tracker.sim.originate_request import OriginateRequest

ManagerOutcome = Literal["answer", "no_answer", "busy", "reject", "congestion"]
CustomerOutcome = Literal["answer", "no_answer", "busy"]
MANAGER_OUTCOMES: tuple[str, ...] = get_args(ManagerOutcome)
CUSTOMER_OUTCOMES: tuple[str, ...] = get_args(CustomerOutcome)

ANSWERED_REASON = "4"
_LEFT_OUT = frozenset({"QueueMemberStatus"})
_QUICK_FAILURE = 0.5  # seconds a busy / rejecting / congested phone takes to say so


@dataclass(frozen=True)
class OriginatedCall:
    """The events of one Originate, in three parts (each message has `_ts`: seconds from start).

    `ringing`: the manager's phone rings.  `outcome`: it is answered or given
    up, ending with the `OriginateResponse`.  `after`: the rest of the call
    (empty when the manager did not answer).
    """

    ringing: list[Message]
    outcome: list[Message]
    after: list[Message]
    start: float

    @property
    def messages(self) -> list[Message]:
        return self.ringing + self.outcome + self.after

    @property
    def response(self) -> Message:
        return self.outcome[-1]


def callback_call(
    request: OriginateRequest,
    *,
    ids: CallIds,
    start: float,
    manager: str = "answer",
    customer: str = "answer",
    manager_ring: float | None = None,
    customer_ring: float | None = None,
    talk: float | None = None,
) -> OriginatedCall:
    """The events of `request` placed at epoch `start` (see the module doc).

    `manager` is one of `MANAGER_OUTCOMES`, `customer` of `CUSTOMER_OUTCOMES`.
    Times default to the capture's (2 s ringing, 3 s for the customer, 4 s of
    talk); a manager who does not answer rings for the Originate's `Timeout`,
    a customer who does not for the dialplan's Dial timeout (`CALLBACK_TIMEOUT`).
    """
    _check_outcomes(manager, customer)
    template = callback_template()
    rewrite = rewrite_for(template, request, ids, start)
    ring = _ring_time(template, request, manager, manager_ring)
    ringing = _ringing(template, request, ring)
    if manager != "answer":
        return _render_call(rewrite, ringing, manager_gives_up(template, manager, ring), [])
    answered = _shifted(template, template.answer, template.customer_answer, ring)
    cut = next(i for i, (_, m) in enumerate(answered) if m.get("Event") == "OriginateResponse")
    outcome, after = answered[: cut + 1], answered[cut + 1 :]
    if customer == "answer":
        after += _customer_answers(template, ring, customer_ring, talk)
    else:
        after += customer_gives_up(template, ring, customer, customer_ring, rewrite.dial_timeout)
    return _render_call(rewrite, ringing, outcome, after)


def _render_call(rewrite: Rewrite, ringing: Timed, outcome: Timed, after: Timed) -> OriginatedCall:
    first, second, third = render_parts(rewrite, (ringing, outcome, after))
    return OriginatedCall(first, second, third, rewrite.start)


def _check_outcomes(manager: str, customer: str) -> None:
    if manager not in MANAGER_OUTCOMES:
        raise ValueError(f"manager outcome {manager!r}: one of {', '.join(MANAGER_OUTCOMES)}")
    if customer not in CUSTOMER_OUTCOMES:
        raise ValueError(f"customer outcome {customer!r}: one of {', '.join(CUSTOMER_OUTCOMES)}")


def _ring_time(
    template: CallbackTemplate, request: OriginateRequest, manager: str, wanted: float | None
) -> float:
    if wanted is not None:
        return max(0.0, wanted)
    if manager == "answer":
        return template.manager_ring
    if manager == "no_answer":
        return request.timeout_seconds
    return _QUICK_FAILURE


def _ringing(template: CallbackTemplate, request: OriginateRequest, ring: float) -> Timed:
    """The manager's leg rings; the capture's variable VarSets become the request's."""
    timed: Timed = []
    for index in range(template.answer):
        message = template.messages[index]
        if message.get("Event") in _LEFT_OUT:
            continue
        if index == template.variables[0]:
            timed.extend(_variable_sets(template, request, index))
        elif index not in template.variables:
            timed.append((min(template.times[index], ring), dict(message)))
    return timed


def _variable_sets(template: CallbackTemplate, request: OriginateRequest, index: int) -> Timed:
    moment = template.times[index]
    return [
        (moment, {**template.messages[index], "Variable": name, "Value": value})
        for name, value in request.variables
    ]


def _shifted(template: CallbackTemplate, first: int, stop: int, ring: float) -> Timed:
    """Template messages [first, stop) moved so the manager answers after `ring` seconds."""
    delta = ring - template.manager_ring
    return [
        (template.times[i] + delta, dict(template.messages[i]))
        for i in range(first, stop)
        if template.messages[i].get("Event") not in _LEFT_OUT
    ]


def _customer_answers(
    template: CallbackTemplate, ring: float, customer_ring: float | None, talk: float | None
) -> Timed:
    """From the customer's answer to the end of the capture, stretched as asked."""
    delta = ring - template.manager_ring
    if customer_ring is not None:
        delta += customer_ring - template.customer_ring
    talking = 0.0 if talk is None else talk - template.talk
    timed: Timed = []
    for index in range(template.customer_answer, len(template.messages)):
        message = template.messages[index]
        if message.get("Event") not in _LEFT_OUT:
            shift = delta + (talking if index >= template.hangup else 0.0)
            timed.append((template.times[index] + shift, dict(message)))
    return timed
