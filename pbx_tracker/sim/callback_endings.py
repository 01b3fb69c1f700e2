"""How an originated call ends when somebody does not answer, built from the capture's own
messages and shaped like the captured no-answer and busy calls (traces 03 and 05)."""

from __future__ import annotations

from collections.abc import Mapping

from pbx_tracker.sim.callback_template import CallbackTemplate, Message, Timed

# OriginateResponse `Reason` (the last control frame of the manager's leg) per outcome
FAILURE_REASONS = {"no_answer": "3", "busy": "5", "reject": "1", "congestion": "8"}
_CUSTOMER_BUSY = 0.5
_CAUSE_TEXT = {
    "0": "Unknown",
    "16": "Normal Clearing",
    "17": "User busy",
    "21": "Call Rejected",
    "34": "Circuit/channel congestion",
}


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


def _dial_end(template: CallbackTemplate, dest_uid: str, status: str) -> Message:
    """The capture's `DialEnd ANSWER` to `dest_uid`, the leg still ringing, with `status`."""
    message = template.message("DialEnd", DestUniqueid=dest_uid)
    message.update(DestChannelState="5", DestChannelStateDesc="Ringing", DialStatus=status)
    return message


def _device(template: CallbackTemplate, device: str, state: str) -> Message:
    return {**template.message("DeviceStateChange", Device=device), "State": state}


def manager_gives_up(template: CallbackTemplate, outcome: str, ring: float) -> Timed:
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


def _failure_response(template: CallbackTemplate, reason: str) -> Message:
    message = dict(template.messages[template.response])
    message.update(Response="Failure", Channel=template.requested, Reason=reason)
    message["Uniqueid"] = "<null>"
    return message


def customer_gives_up(
    template: CallbackTemplate, ring: float, outcome: str, wanted: float | None, dial_timeout: str
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


def _dialplan_ends(template: CallbackTemplate, status: str) -> list[Message]:
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
