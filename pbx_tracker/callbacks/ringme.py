"""Ring me: the click-to-call callback over AMI, one attempt at a time per call.

`RingMe.start` sends an async `Originate`: Asterisk rings the manager's phone
(`Channel`) and, once they pick up, runs the dialplan context `callback`
(`RingMeSettings.context`) with the customer's number as `Exten`.  That
context (`tests/data/asterisk-traces/asterisk-config/extensions.conf`) records
the call, shows `CALLBACK_DID` to the customer as caller ID and dials them
through the trunk for `CALLBACK_TIMEOUT` seconds.  While it rings, the
manager's phone shows `"Callback" <customer>`, as in the captured callback.

Asterisk first answers "Originate successfully queued", then sends an
`OriginateResponse` event carrying our ActionID: `Success` (`Reason: 4`) once
the manager answered, `Failure` with a `Reason` otherwise.  The daemon hands
every AMI event to `feed`, which turns our `OriginateResponse`s into results.
Whether the customer then answered is the correlator's business: the callback
becomes an outbound call record that carries the `CALLBACK_*` variables.

A ring-me call is for a callback task (`RingMeCall.task_id`, passed as
`CALLBACK_TASK`) or for a call a CRM registered when a manager clicked a number
there (`crm_call_id`, Bitrix24's ``CALL_ID``, passed as `CALLBACK_CRM_CALL_ID`);
its `key` (the task id, or ``crm:<CALL_ID>``) is what the rules below count by.

Idempotency: a key has at most one attempt in flight.  An attempt with no
`OriginateResponse` after `manager_ring_seconds` + `RESPONSE_MARGIN` is
reported "timeout" by `expire`, yet stays in flight `customer_ring_seconds`
longer, so a success that comes late never meets a second dial; that late
result is still reported, once, marked `late`.  A task gets at most
`max_attempts` Originates, a CRM call one (the CRM registers a new call for
each click, so the same ``CALL_ID`` again is the same click told twice); a CRM
call is remembered `CRM_MEMORY` seconds after its attempt is over.  Nothing
here dials by itself: retrying is the caller's decision.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import structlog

from pbx_tracker.callbacks.settings import RingMeSettings
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.phones import is_dialable, normalize_number

__all__ = [
    "CRM_CALL_ID",
    "CRM_MEMORY",
    "RESPONSE_MARGIN",
    "Outcome",
    "RingMe",
    "RingMeCall",
    "RingMeKey",
    "RingMeRefused",
    "RingMeResult",
]

log = structlog.get_logger(__name__)

Outcome = Literal["answered", "no_answer", "busy", "failed", "rejected", "timeout"]
SendAction = Callable[[Mapping[str, str], float], Awaitable[object]]
RingMeKey = int | str  # a callback task's id, or "crm:<the CRM's call id>"

RESPONSE_MARGIN = 10.0  # seconds past the manager's ring time before the answer is given up
SEND_TIMEOUT = 5.0  # seconds Asterisk has to answer the Originate action itself
CRM_MEMORY = 3600.0  # seconds a CRM call is remembered after its attempt: told again, not dialled
# a CRM's call id as it may reach the dialplan (`Variable: a=1,b=2`: no comma, no line break)
CRM_CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
CALLER_NAME = "Callback"
# `Reason` of an `OriginateResponse: Failure` (the last control frame of the manager's leg)
_FAILURES: dict[str, tuple[Outcome, str]] = {
    "1": ("rejected", "rejected the call"),
    "2": ("no_answer", "did not answer"),
    "3": ("no_answer", "did not answer"),
    "5": ("busy", "is busy"),
    "8": ("failed", "could not be reached (congestion)"),
}


class RingMeRefused(Exception):
    """No call was placed (or its fate is unknown): `reason` says why."""

    def __init__(self, call: RingMeCall, reason: str) -> None:
        super().__init__(f"ring me for {call.named} refused: {reason}")
        self.task_id = call.task_id
        self.crm_call_id = call.crm_call_id
        self.reason = reason


@dataclass(frozen=True)
class RingMeCall:
    """Whom to ring for which task or CRM call: the manager's phone first, then the customer.

    Exactly one of `task_id` and `crm_call_id` is given.  `attempt` is the
    caller's number for this attempt (1 for the first); the attempt is numbered
    `max(attempt, attempts(key) + 1)`, so a count kept elsewhere (the database,
    across restarts) still bounds `max_attempts`.
    """

    task_id: int | None
    manager: str  # extension
    manager_dial: str  # one channel, e.g. "IAX2/101/101"
    customer: str  # E.164
    did: str | None  # the number the customer called: shown to them unless caller_id is set
    attempt: int = 1
    crm_call_id: str | None = None  # the call the CRM registered for a click on a number

    def __post_init__(self) -> None:
        if (self.task_id is None) == (self.crm_call_id is None):
            raise ValueError("a ring-me call is for a callback task or for a CRM call")

    @property
    def key(self) -> RingMeKey:
        """What the one-in-flight rule and the counts go by."""
        return self.task_id if self.task_id is not None else f"crm:{self.crm_call_id}"

    @property
    def named(self) -> str:
        """``callback task 7`` or ``CRM call externalCall.…``, for messages."""
        if self.task_id is not None:
            return f"callback task {self.task_id}"
        return f"CRM call {self._shown_crm_call}"

    @property
    def labels(self) -> dict[str, object]:
        """The log fields naming the call: ``task`` or ``crm_call``."""
        if self.task_id is not None:
            return {"task": self.task_id}
        return {"crm_call": self._shown_crm_call}

    @property
    def _shown_crm_call(self) -> str:
        shown = self.crm_call_id or ""
        return shown if CRM_CALL_ID.fullmatch(shown) else "(malformed id)"


@dataclass(frozen=True)
class RingMeResult:
    """The manager's side of one attempt; `late` when it came after a "timeout"."""

    task_id: int | None
    attempt: int
    action_id: str
    outcome: Outcome
    reason: str
    late: bool = False
    crm_call_id: str | None = None
    manager: str | None = None  # the extension whose phone was rung


@dataclass
class _Attempt:
    call: RingMeCall
    number: int
    action_id: str
    deadline: float  # no OriginateResponse by then: "timeout"
    hold_until: float  # ... but in flight until then
    count_before: int  # the key's attempts before this one
    settled: bool = False  # an OriginateResponse came, or Asterisk refused the action
    timed_out: bool = False

    def busy(self, now: float) -> bool:
        return not self.settled and now < self.hold_until


class RingMe:
    """Places ring-me Originates through `send_action(action, timeout)` and follows them."""

    def __init__(
        self,
        send_action: SendAction,
        settings: RingMeSettings,
        *,
        region: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send_action
        self._settings = settings
        self._region = region
        self._clock = clock
        self._attempts: dict[str, _Attempt] = {}  # by ActionID
        self._latest: dict[RingMeKey, _Attempt] = {}  # by task or CRM call
        self._counts: dict[RingMeKey, int] = {}

    # -- queries -----------------------------------------------------------

    def in_flight(self, key: RingMeKey) -> bool:
        """An attempt for the task (its id) or CRM call (``crm:<id>``) may still ring."""
        attempt = self._latest.get(key)
        return attempt is not None and attempt.busy(self._clock())

    def attempts(self, key: RingMeKey) -> int:
        """Originates sent for the key that reached Asterisk (refused ones included)."""
        return self._counts.get(key, 0)

    # -- placing a call ------------------------------------------------------

    async def start(self, call: RingMeCall) -> str:
        """Send the Originate and return its ActionID; RingMeRefused says why not."""
        self._forget_old_crm_calls()
        customer = self._check(call)
        attempt = self._open(call)
        action = self._originate(call, customer, attempt)
        try:
            response = await self._send(action, SEND_TIMEOUT)
        except ConnectionError as error:
            self._withdraw(attempt)
            raise self._refused(call, f"AMI is not connected ({error})") from error
        except TimeoutError as error:
            # Asterisk may have queued it all the same: in flight until it expires.
            waited = f"no answer to the Originate within {SEND_TIMEOUT:g} s"
            raise self._refused(call, f"{waited}; attempt {attempt.number} held") from error
        fields = _response_fields(response)
        if fields.get("Response") != "Success":
            attempt.settled = True
            message = fields.get("Message") or "no reason given"
            raise self._refused(call, f"Asterisk rejected the Originate: {message}")
        log.info(
            "callbacks.ringme_attempt_started",
            **call.labels,
            attempt=attempt.number,
            manager=call.manager,
            action_id=attempt.action_id,
        )
        return attempt.action_id

    def _check(self, call: RingMeCall) -> str:
        """The customer's number as the trunk dials it (E.164 digits), or RingMeRefused."""
        if not self._settings.enabled:
            raise self._refused(call, "ring me is disabled (callbacks.ring_me.enabled)")
        customer = _digits(call.customer, self._region)
        if customer is None:
            shown = call.customer or "hidden"
            raise self._refused(call, f"the customer's number ({shown}) cannot be dialled")
        tech, sep, resource = call.manager_dial.partition("/")
        if not (tech and sep and resource) or "&" in call.manager_dial:
            dial = call.manager_dial
            raise self._refused(call, f"{dial!r} is not one channel (TECH/resource) to ring")
        if call.crm_call_id is not None and not CRM_CALL_ID.fullmatch(call.crm_call_id):
            raise self._refused(call, "the CRM's call id is not one Asterisk can be given")
        latest = self._latest.get(call.key)
        if latest is not None and latest.busy(self._clock()):
            raise self._refused(call, f"attempt {latest.number} is still in flight")
        if call.task_id is None and self.attempts(call.key):
            raise self._refused(call, "it was dialled already (one attempt per CRM call)")
        limit = self._settings.max_attempts
        if self._number(call) > limit:
            raise self._refused(call, f"all {limit} attempts are used")
        return customer

    def _number(self, call: RingMeCall) -> int:
        return max(call.attempt, self.attempts(call.key) + 1)

    def _open(self, call: RingMeCall) -> _Attempt:
        number = self._number(call)
        s = self._settings
        deadline = self._clock() + s.manager_ring_seconds + RESPONSE_MARGIN
        whose = call.task_id if call.task_id is not None else "crm"
        attempt = _Attempt(
            call=call,
            number=number,
            action_id=f"ringme-{whose}-{number}-{secrets.token_hex(4)}",
            deadline=deadline,
            hold_until=deadline + s.customer_ring_seconds,
            count_before=self.attempts(call.key),
        )
        self._attempts[attempt.action_id] = attempt
        self._latest[call.key] = attempt
        self._counts[call.key] = number
        return attempt

    def _withdraw(self, attempt: _Attempt) -> None:
        """Nothing reached Asterisk: as if the attempt had never been opened."""
        key = attempt.call.key
        del self._attempts[attempt.action_id]
        if self._latest.get(key) is attempt:
            del self._latest[key]
        self._counts[key] = attempt.count_before

    def _forget_old_crm_calls(self) -> None:
        """CRM calls whose attempt ended `CRM_MEMORY` seconds ago (nothing else forgets them)."""
        before = self._clock() - CRM_MEMORY
        for key, attempt in list(self._latest.items()):
            if isinstance(key, str) and attempt.hold_until < before:
                self.forget(key)

    def _originate(self, call: RingMeCall, customer: str, attempt: _Attempt) -> dict[str, str]:
        s = self._settings
        variables = {
            "CALLBACK_TASK": "" if call.task_id is None else str(call.task_id),
            "CALLBACK_CRM_CALL_ID": call.crm_call_id or "",
            "CALLBACK_ATTEMPT": str(attempt.number),
            "CALLBACK_DID": self._shown_number(call),
            "CALLBACK_FOR": customer,
            "CALLBACK_TIMEOUT": str(s.customer_ring_seconds),
        }
        return {
            "Action": "Originate",
            "ActionID": attempt.action_id,
            "Channel": call.manager_dial,
            "Context": s.context,
            "Exten": customer,
            "Priority": "1",
            "CallerID": f'"{CALLER_NAME}" <{customer}>',
            "Timeout": str(s.manager_ring_seconds * 1000),
            "Async": "true",
            "Variable": ",".join(f"{name}={value}" for name, value in variables.items() if value),
        }

    def _shown_number(self, call: RingMeCall) -> str:
        """The caller ID the customer sees: `caller_id`, else the DID they called ('' if none)."""
        for number in (self._settings.caller_id, call.did):
            digits = _digits(number, self._region)
            if digits is not None:
                return digits
        return ""

    def _refused(self, call: RingMeCall, reason: str) -> RingMeRefused:
        log.warning(
            "callbacks.ringme_attempt_refused",
            **call.labels,
            manager=call.manager,
            reason=reason,
        )
        return RingMeRefused(call, reason)

    # -- results -------------------------------------------------------------

    def feed(self, event: AmiEvent) -> RingMeResult | None:
        """The result of one of our attempts when `event` is its `OriginateResponse` (once)."""
        if event.name != "OriginateResponse":
            return None
        attempt = self._attempts.get(event.get("ActionID"))
        if attempt is None or attempt.settled:
            return None
        attempt.settled = True
        outcome, reason = _judge(attempt.call, event)
        call = attempt.call
        result = RingMeResult(
            call.task_id,
            attempt.number,
            attempt.action_id,
            outcome,
            reason,
            late=attempt.timed_out,
            crm_call_id=call.crm_call_id,
            manager=call.manager,
        )
        log.info(
            "callbacks.ringme_attempt_result",
            **call.labels,
            attempt=result.attempt,
            outcome=outcome,
        )
        return result

    def expire(self, now: float | None = None) -> list[RingMeResult]:
        """ "timeout" for attempts whose `OriginateResponse` is overdue (each once)."""
        moment = self._clock() if now is None else now
        results = []
        for attempt in self._attempts.values():
            if attempt.settled or attempt.timed_out or moment < attempt.deadline:
                continue
            attempt.timed_out = True
            waited = self._settings.manager_ring_seconds + RESPONSE_MARGIN
            reason = f"no OriginateResponse within {waited:g} s"
            call = attempt.call
            results.append(
                RingMeResult(
                    call.task_id,
                    attempt.number,
                    attempt.action_id,
                    "timeout",
                    reason,
                    crm_call_id=call.crm_call_id,
                    manager=call.manager,
                )
            )
            log.warning("callbacks.ringme_attempt_timeout", **call.labels, attempt=attempt.number)
        return results

    def forget(self, key: RingMeKey) -> None:
        """Drop what is known of a task (closed) or CRM call: later responses for it are
        ignored."""
        self._latest.pop(key, None)
        self._counts.pop(key, None)
        for action_id in [a for a, at in self._attempts.items() if at.call.key == key]:
            del self._attempts[action_id]


def _judge(call: RingMeCall, event: AmiEvent) -> tuple[Outcome, str]:
    reason = event.get("Reason")
    who = f"manager {call.manager} ({call.manager_dial})"
    if event.get("Response") == "Success":
        return "answered", f"{who} answered; the customer {call.customer} is being dialled"
    outcome, text = _FAILURES.get(reason, ("failed", "could not be rung"))
    return outcome, f"{who} {text} (Reason {reason or '?'})"


def _digits(number: str | None, region: str) -> str | None:
    """A phone number as the trunk dials it (E.164 without "+"); None if it is none."""
    e164 = normalize_number(number, region)
    return e164[1:] if e164 is not None and is_dialable(e164) else None


def _response_fields(response: object) -> Mapping[str, str]:
    """The first message of what `send_action` returned: an AmiEvent, a mapping, or a list."""
    if isinstance(response, list | tuple):
        response = response[0] if response else None
    if isinstance(response, AmiEvent):
        return response.fields
    if isinstance(response, Mapping):
        return {str(key): str(value) for key, value in response.items()}
    return {}
