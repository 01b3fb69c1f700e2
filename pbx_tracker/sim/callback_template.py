"""The captured click-to-call callback every originated call is made from.

`templates/12_callback_originate.jsonl` (a real Asterisk answering the
tracker's "ring me" `Originate`): its call events with their template values,
and where its phases begin.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.sim.traces import SESSION_EVENTS

_TEMPLATE = "12_callback_originate.jsonl"
Message = dict[str, str]
Timed = list[tuple[float, Message]]  # messages with their time (seconds from the start)


@dataclass(frozen=True)
class CallbackTemplate:
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
        return find(self.messages, event, start, **fields)

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
def callback_template() -> CallbackTemplate:
    with resources.as_file(resources.files("pbx_tracker.sim") / "templates" / _TEMPLATE) as path:
        events = [e for e in read_capture(path) if e.name and e.name not in SESSION_EVENTS]
    messages = tuple(dict(e.fields) for e in events)
    legs = [m for m in messages if m.get("Event") == "Newchannel"]
    manager, customer = legs[0]["Uniqueid"], legs[1]["Uniqueid"]
    response = find(messages, "OriginateResponse")
    variables = tuple(
        i
        for i, m in enumerate(messages[:response])
        if m.get("Event") == "VarSet" and m["Variable"].startswith("CALLBACK_")
    )
    device = legs[0]["Channel"].rsplit("-", 1)[0]
    dial_string = messages[find(messages, "DialBegin")]["DialString"]
    customer_answer = find(messages, "Newstate", Uniqueid=customer, ChannelState="6")
    return CallbackTemplate(
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
        bridge=messages[find(messages, "BridgeCreate")]["BridgeUniqueid"],
        answer=find(messages, "Newstate", Uniqueid=manager, ChannelState="6"),
        response=response,
        customer_dial=find(messages, "DialBegin", DestUniqueid=customer),
        customer_answer=customer_answer,
        hangup=find(messages, "HangupRequest", customer_answer),
        variables=variables,
    )


def find(messages: Sequence[Mapping[str, str]], event: str, start: int = 0, **fields: str) -> int:
    """The index of the first `event` at or after `start` whose `fields` match."""
    for index in range(start, len(messages)):
        message = messages[index]
        if message.get("Event") == event and all(message.get(k) == v for k, v in fields.items()):
            return index
    raise ValueError(f"the template has no {event} {fields}")
