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
"""

from __future__ import annotations

import functools
import random
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Literal, Protocol, get_args

from pbx_tracker.ami.capture import read_capture

ManagerOutcome = Literal["answer", "no_answer", "busy", "reject", "congestion"]
CustomerOutcome = Literal["answer", "no_answer", "busy"]
MANAGER_OUTCOMES: tuple[str, ...] = get_args(ManagerOutcome)
CUSTOMER_OUTCOMES: tuple[str, ...] = get_args(CustomerOutcome)

QUEUED = "Originate successfully queued"
ANSWERED_REASON = "4"
# OriginateResponse `Reason` (the last control frame of the manager's leg) per outcome
FAILURE_REASONS = {"no_answer": "3", "busy": "5", "reject": "1", "congestion": "8"}
TECHNOLOGIES = frozenset({"IAX2", "PJSIP", "SIP", "DAHDI", "LOCAL", "MOTIF", "CONSOLE"})
DEFAULT_TIMEOUT_MS = 30000  # Asterisk's default Originate Timeout
DIALPLAN_DID = "74951110001"  # extensions.conf [callback]: the caller ID without CALLBACK_DID
DIALPLAN_TIMEOUT = "30"  # ... and the Dial timeout without CALLBACK_TIMEOUT
UNKNOWN = "<unknown>"

_TEMPLATE = "12_callback_originate.jsonl"
_SESSION_EVENTS = frozenset({"FullyBooted", "SuccessfulAuth"})
_LEFT_OUT = frozenset({"QueueMemberStatus"})
_QUICK_FAILURE = 0.5  # seconds a busy / rejecting / congested phone takes to say so
_CUSTOMER_BUSY = 0.5
_CALLER_ID = re.compile(r'^\s*"?(?P<name>[^"<]*?)"?\s*<(?P<number>[^>]*)>\s*$')
_CAUSE_TEXT = {
    "0": "Unknown",
    "16": "Normal Clearing",
    "17": "User busy",
    "21": "Call Rejected",
    "34": "Circuit/channel congestion",
}
Message = dict[str, str]


# -- the request ----------------------------------------------------------------


@dataclass(frozen=True)
class OriginateRequest:
    """The headers of an `Originate` action that matter to the simulation."""

    action_id: str
    channel: str
    context: str
    exten: str
    priority: str
    caller_id: str
    timeout: str
    is_async: bool
    variables: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, action: Mapping[str, str]) -> OriginateRequest:
        """From the action's headers (names in any case; repeated ones joined by newlines)."""
        headers = {key.lower(): value for key, value in action.items()}
        return cls(
            action_id=headers.get("actionid", ""),
            channel=headers.get("channel", "").strip(),
            context=headers.get("context", "").strip(),
            exten=headers.get("exten", "").strip(),
            priority=headers.get("priority", "").strip(),
            caller_id=headers.get("callerid", "").strip(),
            timeout=headers.get("timeout", "").strip(),
            is_async=headers.get("async", "").strip().lower() in ("true", "yes", "1", "on"),
            variables=tuple(parse_variables(headers.get("variable", ""))),
        )

    @property
    def technology(self) -> str:
        return self.channel.partition("/")[0]

    @property
    def resource(self) -> str:
        """`101/101` of `IAX2/101/101`: what the channel driver dials."""
        return self.channel.partition("/")[2]

    @property
    def device(self) -> str:
        """`IAX2/101` of `IAX2/101/101`: the device whose state changes."""
        return f"{self.technology}/{self.resource.partition('/')[0]}"

    @property
    def timeout_seconds(self) -> float:
        return (int(self.timeout) if self.timeout else DEFAULT_TIMEOUT_MS) / 1000

    def variable(self, name: str) -> str | None:
        return next((value for key, value in self.variables if key == name), None)

    @property
    def caller_name(self) -> str:
        return _caller_id(self.caller_id)[0] or UNKNOWN

    @property
    def caller_number(self) -> str:
        return _caller_id(self.caller_id)[1] or UNKNOWN


def parse_variables(raw: str) -> list[tuple[str, str]]:
    """`Variable:` headers (`a=1,b=2`, or one header per variable) as (name, value) pairs."""
    pairs = []
    for line in raw.splitlines():
        for part in line.split(","):
            name, sep, value = part.partition("=")
            if sep and name.strip():
                pairs.append((name.strip(), value))
    return pairs


def _caller_id(text: str) -> tuple[str, str]:
    """(name, number) of `"Name" <number>`; a bare value is a number if it has no letters."""
    match = _CALLER_ID.match(text)
    if match:
        return match["name"].strip(), match["number"].strip()
    if any(ch.isalpha() for ch in text):
        return text, ""
    return "", text


def originate_error(request: OriginateRequest) -> str | None:
    """The `Message` of the `Response: Error` Asterisk answers at once, or None."""
    if not request.channel:
        return "Channel not specified"
    if request.priority and not request.priority.isdigit():
        return "Invalid priority"
    if request.timeout and not request.timeout.isdigit():
        return "Invalid timeout"
    tech, sep, resource = request.channel.partition("/")
    if not sep or not resource or tech.upper() not in TECHNOLOGIES:
        return "Invalid channel"
    if not request.exten or not request.context:
        return "Originate with 'Exten' requires 'Context' and 'Priority'"
    return None


# -- identifiers ------------------------------------------------------------------


class CallIds(Protocol):
    """Fresh identifiers (`scenarios.IdAllocator` is one)."""

    def uniqueid(self, at: float) -> str: ...
    def callno(self) -> int: ...
    def bridge_id(self) -> str: ...


class OriginateIds:
    """Identifiers for originated calls: Uniqueids `<epoch>.<seq>`, IAX2 call numbers, bridges.

    The sequence starts high so that it never meets the Uniqueids of calls
    generated alongside by `scenarios.IdAllocator` (which counts from 0).
    """

    def __init__(self, *, seed: int = 12, first_seq: int = 900_000) -> None:
        self._seq = first_seq
        self._rng = random.Random(f"pbx-tracker-originate-{seed}")
        self._callno = self._rng.randrange(1, 16000)

    def uniqueid(self, at: float) -> str:
        self._seq += 1
        return f"{int(at)}.{self._seq}"

    def callno(self) -> int:
        self._callno = self._callno % 32767 + 1
        return self._callno

    def bridge_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


# -- the template -------------------------------------------------------------------


@dataclass(frozen=True)
class _Template:
    """The capture's call events (template values) and where its phases begin."""

    messages: tuple[Message, ...]
    times: tuple[float, ...]  # seconds since the manager's leg was created
    manager_uid: str
    customer_uid: str
    manager_channel: str
    customer_channel: str
    requested: str  # the Originate's Channel (IAX2/101/101)
    device: str  # IAX2/101
    customer: str
    did: str
    caller_name: str
    bridge: str
    answer: int  # the manager's leg goes Up
    response: int  # OriginateResponse
    customer_dial: int  # DialBegin of the customer's leg
    customer_answer: int  # the customer's leg goes Up
    hangup: int  # first HangupRequest after that: the end of the talk
    variables: tuple[int, ...]  # VarSets of the Originate's variables

    def find(self, event: str, start: int = 0, **fields: str) -> int:
        return _find(self.messages, event, start, **fields)

    def message(self, event: str, start: int = 0, **fields: str) -> Message:
        return dict(self.messages[self.find(event, start, **fields)])

    @property
    def manager_ring(self) -> float:
        return self.times[self.answer] - self.times[0]

    @property
    def customer_ring(self) -> float:
        return self.times[self.customer_answer] - self.times[self.customer_dial]

    @property
    def talk(self) -> float:
        return self.times[self.hangup] - self.times[self.customer_answer]


@functools.cache
def _template() -> _Template:
    with resources.as_file(resources.files("pbx_tracker.sim") / "templates" / _TEMPLATE) as path:
        events = [e for e in read_capture(path) if e.name and e.name not in _SESSION_EVENTS]
    messages = tuple(dict(e.fields) for e in events)
    legs = [m for m in messages if m.get("Event") == "Newchannel"]
    manager, customer = legs[0]["Uniqueid"], legs[1]["Uniqueid"]
    response = _find(messages, "OriginateResponse")
    variables = tuple(
        i
        for i, m in enumerate(messages[:response])
        if m.get("Event") == "VarSet" and m["Variable"].startswith("CALLBACK_")
    )
    device = legs[0]["Channel"].rsplit("-", 1)[0]
    dial_string = messages[_find(messages, "DialBegin")]["DialString"]
    customer_answer = _find(messages, "Newstate", Uniqueid=customer, ChannelState="6")
    return _Template(
        messages=messages,
        times=tuple(e.time - events[0].time for e in events),
        manager_uid=manager,
        customer_uid=customer,
        manager_channel=legs[0]["Channel"],
        customer_channel=legs[1]["Channel"],
        requested=f"{device.partition('/')[0]}/{dial_string}",
        device=device,
        customer=messages[response]["Exten"],
        did=next(messages[i]["Value"] for i in variables if "DID" in messages[i]["Variable"]),
        caller_name=messages[response]["CallerIDName"],
        bridge=messages[_find(messages, "BridgeCreate")]["BridgeUniqueid"],
        answer=_find(messages, "Newstate", Uniqueid=manager, ChannelState="6"),
        response=response,
        customer_dial=_find(messages, "DialBegin", DestUniqueid=customer),
        customer_answer=customer_answer,
        hangup=_find(messages, "HangupRequest", customer_answer),
        variables=variables,
    )


def _find(messages: Sequence[Mapping[str, str]], event: str, start: int = 0, **fields: str) -> int:
    """The index of the first `event` at or after `start` whose `fields` match."""
    for index in range(start, len(messages)):
        message = messages[index]
        if message.get("Event") == event and all(message.get(k) == v for k, v in fields.items()):
            return index
    raise ValueError(f"the template has no {event} {fields}")


# -- one originated call ---------------------------------------------------------------


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


Timed = list[tuple[float, Message]]


@dataclass(frozen=True)
class _Rewrite:
    """Template value -> the call's value, and what is known of the call."""

    tokens: dict[str, str]
    pattern: re.Pattern[str]
    request: OriginateRequest
    name: str
    did: str
    dial_timeout: str
    start: float


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
    template = _template()
    rewrite = _rewrite_for(template, request, ids, start)
    ring = _ring_time(template, request, manager, manager_ring)
    ringing = _ringing(template, request, ring)
    if manager != "answer":
        return _render_call(rewrite, ringing, _manager_gives_up(template, manager, ring), [])
    answered = _shifted(template, template.answer, template.customer_answer, ring)
    cut = next(i for i, (_, m) in enumerate(answered) if m.get("Event") == "OriginateResponse")
    outcome, after = answered[: cut + 1], answered[cut + 1 :]
    if customer == "answer":
        after += _customer_answers(template, ring, customer_ring, talk)
    else:
        after += _customer_gives_up(template, ring, customer, customer_ring, rewrite.dial_timeout)
    return _render_call(rewrite, ringing, outcome, after)


def _check_outcomes(manager: str, customer: str) -> None:
    if manager not in MANAGER_OUTCOMES:
        raise ValueError(f"manager outcome {manager!r}: one of {', '.join(MANAGER_OUTCOMES)}")
    if customer not in CUSTOMER_OUTCOMES:
        raise ValueError(f"customer outcome {customer!r}: one of {', '.join(CUSTOMER_OUTCOMES)}")


def _ring_time(
    template: _Template, request: OriginateRequest, manager: str, wanted: float | None
) -> float:
    if wanted is not None:
        return max(0.0, wanted)
    if manager == "answer":
        return template.manager_ring
    if manager == "no_answer":
        return request.timeout_seconds
    return _QUICK_FAILURE


def _ringing(template: _Template, request: OriginateRequest, ring: float) -> Timed:
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


def _variable_sets(template: _Template, request: OriginateRequest, index: int) -> Timed:
    moment = template.times[index]
    return [
        (moment, {**template.messages[index], "Variable": name, "Value": value})
        for name, value in request.variables
    ]


def _shifted(template: _Template, first: int, stop: int, ring: float) -> Timed:
    """Template messages [first, stop) moved so the manager answers after `ring` seconds."""
    delta = ring - template.manager_ring
    return [
        (template.times[i] + delta, dict(template.messages[i]))
        for i in range(first, stop)
        if template.messages[i].get("Event") not in _LEFT_OUT
    ]


def _customer_answers(
    template: _Template, ring: float, customer_ring: float | None, talk: float | None
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


# -- outcomes built from the capture's own messages -----------------------------------------


def _snapshot(message: Mapping[str, str]) -> Message:
    """The channel fields (`Channel` .. `Linkedid`) of a channel event."""
    keys = [k for k in message if k not in ("Event", "Privilege")]
    return {k: message[k] for k in keys[: keys.index("Linkedid") + 1]}


def _event(name: str, privilege: str, fields: Mapping[str, str]) -> Message:
    return {"Event": name, "Privilege": privilege, **fields}


def _hangup_pair(snapshot: Message, cause: str | None) -> list[Message]:
    request = _event("HangupRequest", "call,all", snapshot)
    if cause is not None and cause != "0":
        request["Cause"] = cause
    cause = cause or "0"
    hangup = _event("Hangup", "call,all", {**snapshot, "Cause": cause})
    hangup["Cause-txt"] = _CAUSE_TEXT.get(cause, "Unknown")
    return [request, hangup]


def _dial_end(template: _Template, dest_uid: str, status: str) -> Message:
    """The capture's `DialEnd ANSWER` to `dest_uid`, the leg still ringing, with `status`."""
    message = template.message("DialEnd", DestUniqueid=dest_uid)
    message.update(DestChannelState="5", DestChannelStateDesc="Ringing", DialStatus=status)
    return message


def _device(template: _Template, device: str, state: str) -> Message:
    return {**template.message("DeviceStateChange", Device=device), "State": state}


def _manager_gives_up(template: _Template, outcome: str, ring: float) -> Timed:
    """The manager's phone never answers: its leg ends, then `OriginateResponse Failure`."""
    leg = template.message("Newstate", Uniqueid=template.manager_uid, ChannelState="5")
    cause = {"no_answer": None, "busy": "17", "reject": "21", "congestion": "34"}[outcome]
    request, hangup = _hangup_pair(_snapshot(leg), cause)
    messages: list[Message] = []
    if outcome in ("busy", "congestion"):
        status = "BUSY" if outcome == "busy" else "CONGESTION"
        messages += [_dial_end(template, template.manager_uid, status), request, hangup]
    elif outcome == "reject":  # the phone hangs up: dial.c reads the hangup cause
        messages += [request, _dial_end(template, template.manager_uid, "NOANSWER"), hangup]
    else:  # the Timeout trips: dial.c hangs the leg up without a DialEnd
        messages += [request, hangup]
    messages.append(_device(template, template.device, "UNKNOWN"))
    messages.append(_failure_response(template, FAILURE_REASONS[outcome]))
    return [(ring, message) for message in messages]


def _failure_response(template: _Template, reason: str) -> Message:
    message = dict(template.messages[template.response])
    message.update(Response="Failure", Channel=template.requested, Reason=reason)
    message["Uniqueid"] = "<null>"
    return message


def _customer_gives_up(
    template: _Template, ring: float, outcome: str, wanted: float | None, dial_timeout: str
) -> Timed:
    """The customer does not answer (or is busy): the dialplan's Dial returns, then Hangup()."""
    status = "NOANSWER" if outcome == "no_answer" else "BUSY"
    default = float(dial_timeout) if outcome == "no_answer" else _CUSTOMER_BUSY
    delta = ring - template.manager_ring
    moment = (
        template.times[template.customer_dial] + delta + (default if wanted is None else wanted)
    )
    customer = _snapshot(
        template.message("Newstate", Uniqueid=template.customer_uid, ChannelState="5")
    )
    request, hangup = _hangup_pair(customer, None if status == "NOANSWER" else "17")
    messages = [_dial_end(template, template.customer_uid, status), request, hangup]
    messages.append(_device(template, "IAX2/carrier-out", "UNKNOWN"))
    messages += _dialplan_ends(template, status)
    return [(moment, message) for message in messages]


def _dialplan_ends(template: _Template, status: str) -> list[Message]:
    """`NoOp(Callback result ...)`, `Hangup()`, the manager's leg hung up, its Cdr."""
    dial = template.find("Newexten", Application="Dial")
    manager = _snapshot(template.messages[dial])
    dialstatus = template.message("VarSet", template.customer_answer, Variable="DIALSTATUS")
    dialstatus["Value"] = status
    cause = "16" if status == "NOANSWER" else "17"
    noop = {**template.messages[dial], "Application": "NoOp", "Priority": "6"}
    noop["AppData"] = f"Callback result {status}"
    manager["Priority"] = "7"
    hang_app = {**template.messages[dial], "Priority": "7", "Application": "Hangup", "AppData": ""}
    soft = _event("SoftHangupRequest", "call,all", {**manager, "Cause": "16"})
    request, hangup = _hangup_pair(manager, cause)
    cdr = template.message("Cdr")
    disposition = "NO ANSWER" if status == "NOANSWER" else "BUSY"
    cdr.update(Disposition=disposition, BillableSeconds="0")
    messages = [dialstatus, noop, hang_app, soft, request, cdr, hangup]
    return [*messages, _device(template, template.device, "UNKNOWN")]


# -- rendering ------------------------------------------------------------------------------


def _rewrite_for(
    template: _Template, request: OriginateRequest, ids: CallIds, start: float
) -> _Rewrite:
    times = template.times
    customer_at = start + times[template.find("Newchannel", Uniqueid=template.customer_uid)]
    did = request.variable("CALLBACK_DID") or DIALPLAN_DID
    tokens = {
        template.manager_uid: ids.uniqueid(start),
        template.manager_channel: _channel_name(request.device, ids),
        template.requested: request.channel,
        template.device: request.device,
        template.requested.partition("/")[2]: request.resource,
        template.customer_uid: ids.uniqueid(customer_at),
        template.customer_channel: f"IAX2/carrier-out-{ids.callno()}",
        template.bridge: ids.bridge_id(),
        template.customer: request.exten,
        template.did: did,
    }
    alternatives = "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))
    return _Rewrite(
        tokens=tokens,
        pattern=re.compile(rf"(?<![\w.])(?:{alternatives})(?!\w)"),
        request=request,
        name=request.caller_name,
        did=did,
        dial_timeout=request.variable("CALLBACK_TIMEOUT") or DIALPLAN_TIMEOUT,
        start=start,
    )


def _channel_name(device: str, ids: CallIds) -> str:
    """`IAX2/101-<callno>` like chan_iax2, `PJSIP/101-0000002a` like the others."""
    callno = ids.callno()
    return f"{device}-{callno}" if device.upper().startswith("IAX2/") else f"{device}-{callno:08x}"


def _render_call(rewrite: _Rewrite, ringing: Timed, outcome: Timed, after: Timed) -> OriginatedCall:
    template = _template()
    first, second, third = (
        [_render(template, rewrite, moment, message) for moment, message in part]
        for part in (ringing, outcome, after)
    )
    _fix_durations(rewrite.start, first + second + third)
    return OriginatedCall(first, second, third, rewrite.start)


def _render(template: _Template, rewrite: _Rewrite, moment: float, message: Message) -> Message:
    manager_leg = _manager_leg_fields(template, message)
    rendered = {"_ts": f"{moment:.6f}"}
    for key, value in message.items():
        if key in manager_leg and value == template.customer:
            rendered[key] = rewrite.request.caller_number
        elif key.endswith("Name") and value == template.caller_name:
            rendered[key] = rewrite.name
        elif key in ("Context", "DestContext", "DestinationContext") and value == "callback":
            rendered[key] = rewrite.request.context
        else:
            rendered[key] = rewrite.pattern.sub(lambda m: rewrite.tokens[m.group(0)], value)
    _fix_texts(rewrite, rendered)
    return rendered


def _manager_leg_fields(template: _Template, message: Mapping[str, str]) -> frozenset[str]:
    """Fields that show the Originate's caller ID: the manager leg's own and connected line."""
    fields = set()
    if message.get("Channel") == template.manager_channel:
        fields |= {"CallerIDNum", "ConnectedLineNum"}
    if message.get("DestChannel") == template.manager_channel:
        fields |= {"DestCallerIDNum", "DestConnectedLineNum"}
    if message.get("Event") == "OriginateResponse":
        fields.add("CallerIDNum")
    return frozenset(fields)


def _fix_texts(rewrite: _Rewrite, message: Message) -> None:
    request = rewrite.request
    event = message.get("Event")
    if event == "OriginateResponse":
        message.update(Context=request.context, Exten=request.exten)
        if request.action_id:
            message["ActionID"] = request.action_id
        else:
            message.pop("ActionID", None)
    elif event == "Newexten" and message.get("AppData", "").startswith("Callback by "):
        message["AppData"] = f"Callback by {request.caller_number} to customer {request.exten}"
    if event == "Newexten" and message.get("Application") == "Dial":
        message["AppData"] = _with_timeout(message["AppData"], rewrite.dial_timeout)
    elif event == "Cdr":
        message["LastData"] = _with_timeout(message["LastData"], rewrite.dial_timeout)
        message["CallerID"] = f'"{"" if rewrite.name == UNKNOWN else rewrite.name}" <{rewrite.did}>'


def _with_timeout(dial_data: str, timeout: str) -> str:
    target, sep, _ = dial_data.partition(",")
    return f"{target},{timeout}" if sep else dial_data


def _fix_durations(start: float, messages: Sequence[Message]) -> None:
    """Dial's `*TIME` variables and the Cdr, from the call's own times."""
    answered = next(
        (float(m["_ts"]) for m in messages if _is_answer(m, messages[0].get("Uniqueid", ""))),
        None,
    )
    for message in messages:
        moment = float(message["_ts"])
        variable = message.get("Variable", "")
        if message.get("Event") == "VarSet" and message.get("Value"):
            if variable.startswith("ANSWEREDTIME") and answered is not None:
                message["Value"] = _elapsed(variable, moment - answered)
            elif variable.startswith("DIALEDTIME"):
                message["Value"] = _elapsed(variable, moment)
        elif message.get("Event") == "Cdr":
            _fix_cdr(message, start, moment, answered)


def _is_answer(message: Mapping[str, str], manager_uid: str) -> bool:
    return (
        message.get("Event") == "Newstate"
        and message.get("Uniqueid") == manager_uid
        and message.get("ChannelState") == "6"
    )


def _elapsed(variable: str, seconds: float) -> str:
    milliseconds = max(0, round(seconds * 1000))
    return str(milliseconds if variable.endswith("_MS") else milliseconds // 1000)


def _fix_cdr(message: Message, start: float, moment: float, answered: float | None) -> None:
    message["StartTime"] = _cdr_time(start)
    message["EndTime"] = _cdr_time(start + moment)
    message["Duration"] = str(int(moment))
    if message.get("Disposition") == "ANSWERED" and answered is not None:
        message["AnswerTime"] = _cdr_time(start + answered)
        message["BillableSeconds"] = str(int(moment - answered))
    else:
        message["AnswerTime"] = ""
        message["BillableSeconds"] = "0"


def _cdr_time(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S")
