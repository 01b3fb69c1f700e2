"""An originated call's events rendered from the capture: everything that identifies
the call rewritten, the texts and durations Asterisk reports made true."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pbx_tracker.sim.callback_template import CallbackTemplate, Message, Timed, callback_template
from pbx_tracker.sim.ids import CallIds
from pbx_tracker.sim.originate_request import UNKNOWN, OriginateRequest

DIALPLAN_DID = "74951110001"  # extensions.conf [callback]: the caller ID without CALLBACK_DID
DIALPLAN_TIMEOUT = "30"  # ... and the Dial timeout without CALLBACK_TIMEOUT


@dataclass(frozen=True)
class Rewrite:
    """Template value -> the call's value, and what is known of the call."""

    tokens: dict[str, str]
    pattern: re.Pattern[str]
    request: OriginateRequest
    name: str
    did: str
    dial_timeout: str
    start: float


def rewrite_for(
    template: CallbackTemplate, request: OriginateRequest, ids: CallIds, start: float
) -> Rewrite:
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
    return Rewrite(
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


def render_parts(rewrite: Rewrite, parts: Sequence[Timed]) -> list[list[Message]]:
    """Each part's messages as the call's own; Dial's times and the Cdr follow the whole call."""
    template = callback_template()
    rendered = [
        [_render(template, rewrite, moment, message) for moment, message in part] for part in parts
    ]
    _fix_durations(rewrite.start, [message for part in rendered for message in part])
    return rendered


def _render(
    template: CallbackTemplate, rewrite: Rewrite, moment: float, message: Message
) -> Message:
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


def _manager_leg_fields(template: CallbackTemplate, message: Mapping[str, str]) -> frozenset[str]:
    """Fields that show the Originate's caller ID: the manager leg's own and connected line."""
    fields = set()
    if message.get("Channel") == template.manager_channel:
        fields |= {"CallerIDNum", "ConnectedLineNum"}
    if message.get("DestChannel") == template.manager_channel:
        fields |= {"DestCallerIDNum", "DestConnectedLineNum"}
    if message.get("Event") == "OriginateResponse":
        fields.add("CallerIDNum")
    return frozenset(fields)


def _fix_texts(rewrite: Rewrite, message: Message) -> None:
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
