"""One generated call's messages rewritten from its template, message by message.

`CallPlan` is what is decided about the call (its times, caller, source, Dial
timeout); `render_message` puts the call's own tokens into one template
message, then the caller's name, the source label, the timeouts, AGI command
ids and every duration Asterisk reports (`ANSWEREDTIME`, `DIALEDTIME`,
`TalkTime`, Cdr times and durations) follow the call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pbx_tracker.sim.call_template import CallTemplate
from pbx_tracker.sim.ids import IdAllocator

UNKNOWN = "<unknown>"


@dataclass(frozen=True)
class Timing:
    """How much longer the ringing and the talk are than the template's, and where."""

    ring_gap: int | None
    ring_delta: float
    talk_gap: int | None
    talk_delta: float

    def ring_shift(self, index: int) -> float:
        return self.ring_delta if self.ring_gap is not None and index >= self.ring_gap else 0.0

    def talk_shift(self, index: int) -> float:
        return self.talk_delta if self.talk_gap is not None and index >= self.talk_gap else 0.0

    def shift(self, index: int) -> float:
        return self.ring_shift(index) + self.talk_shift(index)


@dataclass(frozen=True)
class CallPlan:
    """What is decided about one call before its messages are rendered."""

    template: CallTemplate
    timing: Timing
    times: list[float]  # new epoch time of every message
    caller: str
    name: str
    source: str
    timeout: str | None
    command_ids: dict[str, str]
    login_time: str


def render_message(
    call: CallPlan, index: int, table: list[str], ids: IdAllocator
) -> dict[str, str]:
    """Template message `index` as the call's own (`table`: the new value of every token)."""
    message = {"_ts": f"{call.times[index] - ids.epoch:.6f}"}
    for key, segments in call.template.fields[index]:
        if isinstance(segments, str):
            message[key] = segments
        else:
            message[key] = "".join(p if isinstance(p, str) else table[p] for p in segments)
    _fix_names(message, call)
    fixer = _FIXERS.get(message.get("Event", ""))
    if fixer is not None:
        fixer(message, index, call, ids)
    return message


def _fix_names(message: dict[str, str], call: CallPlan) -> None:
    """The caller's name wherever the caller's number is shown."""
    for prefix in ("", "Dest"):
        for number, name in (
            ("CallerIDNum", "CallerIDName"),
            ("ConnectedLineNum", "ConnectedLineName"),
        ):
            if message.get(prefix + number) == call.caller and prefix + name in message:
                message[prefix + name] = call.name or UNKNOWN


def _fix_varset(message: dict[str, str], index: int, call: CallPlan, ids: IdAllocator) -> None:
    variable, value = message.get("Variable", ""), message.get("Value", "")
    if variable.endswith("TRACK_SOURCE"):
        message["Value"] = call.source
    elif variable == "ROUTE_TIMEOUT" and call.timeout and value == call.template.spec.timeout:
        message["Value"] = call.timeout
    elif value and variable in ("ANSWEREDTIME", "ANSWEREDTIME_MS", "QUEUETALKTIME"):
        message["Value"] = _stretched(call, index, variable, value, call.timing.talk_shift(index))
    elif value and variable in ("DIALEDTIME", "DIALEDTIME_MS"):
        message["Value"] = _stretched(call, index, variable, value, call.timing.shift(index))


def _stretched(call: CallPlan, index: int, variable: str, value: str, delta: float) -> str:
    if variable.endswith("_MS"):
        return str(max(0, int(value) + round(delta * 1000)))
    milliseconds = call.template.ms_of.get(index)
    if milliseconds is not None:
        return str(max(0, (milliseconds + round(delta * 1000)) // 1000))
    return str(max(0, round(int(value) + delta)))


def _fix_newexten(message: dict[str, str], index: int, call: CallPlan, ids: IdAllocator) -> None:
    data = message.get("AppData", "")
    for prefix in ("__TRACK_SOURCE=", "CDR(userfield)="):
        if data.startswith(prefix):
            message["AppData"] = prefix + call.source
    if call.timeout and message.get("Application") == "Dial":
        message["AppData"] = _with_timeout(message["AppData"], call)


def _with_timeout(dial_data: str, call: CallPlan) -> str:
    target, sep, rest = dial_data.partition(",")
    old = f"{call.template.spec.timeout},"
    if sep and rest.startswith(old) and call.timeout:
        return f"{target},{call.timeout},{rest[len(old) :]}"
    return dial_data


def _fix_agi(message: dict[str, str], index: int, call: CallPlan, ids: IdAllocator) -> None:
    if "CommandId" in message:
        old = message["CommandId"]
        message["CommandId"] = call.command_ids.setdefault(old, ids.command_id())
    old_timeout = f'ROUTE_TIMEOUT "{call.template.spec.timeout}"'
    if call.timeout and message.get("Command", "").endswith(old_timeout):
        message["Command"] = message["Command"].replace(
            old_timeout, f'ROUTE_TIMEOUT "{call.timeout}"'
        )


def _fix_agent_complete(
    message: dict[str, str], index: int, call: CallPlan, ids: IdAllocator
) -> None:
    if message.get("TalkTime"):
        talk = int(message["TalkTime"]) + call.timing.talk_shift(index)
        message["TalkTime"] = str(max(0, round(talk)))


def _fix_member(message: dict[str, str], index: int, call: CallPlan, ids: IdAllocator) -> None:
    if "LoginTime" in message:
        message["LoginTime"] = call.login_time
    if message.get("LastCall", "0") != "0":
        moment = call.times[call.template.index_at(float(message["LastCall"]))]
        message["LastCall"] = str(int(moment))


def _fix_cdr(message: dict[str, str], index: int, call: CallPlan, ids: IdAllocator) -> None:
    name = call.name
    message["CallerID"] = f'"{name}" <{call.caller}>'
    message["UserField"] = call.source
    if call.timeout:
        message["LastData"] = _with_timeout(message.get("LastData", ""), call)
    moments = {key: _cdr_index(call, message.get(key, "")) for key in _CDR_TIMES}
    for key, moment in moments.items():
        if moment is not None:
            message[key] = _cdr_time(call.times[moment])
    _fix_cdr_durations(message, call, moments)


_CDR_TIMES = ("StartTime", "AnswerTime", "EndTime")


def _fix_cdr_durations(
    message: dict[str, str], call: CallPlan, moments: dict[str, int | None]
) -> None:
    start, answer, end = (moments[key] for key in _CDR_TIMES)
    if end is None:
        return
    shift = call.timing.shift
    if start is not None and message.get("Duration"):
        duration = int(message["Duration"]) + shift(end) - shift(start)
        message["Duration"] = str(max(0, round(duration)))
    if answer is not None and message.get("BillableSeconds"):
        billable = int(message["BillableSeconds"]) + shift(end) - shift(answer)
        message["BillableSeconds"] = str(max(0, round(billable)))


def _cdr_index(call: CallPlan, text: str) -> int | None:
    if not text:
        return None
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    return call.template.index_at(moment)


def _cdr_time(epoch_time: float) -> str:
    return datetime.fromtimestamp(int(epoch_time), UTC).strftime("%Y-%m-%d %H:%M:%S")


_Fixer = Callable[[dict[str, str], int, CallPlan, IdAllocator], None]
_FIXERS: dict[str, _Fixer] = {
    "VarSet": _fix_varset,
    "Newexten": _fix_newexten,
    "AGIExecStart": _fix_agi,
    "AGIExecEnd": _fix_agi,
    "AgentComplete": _fix_agent_complete,
    "QueueMemberStatus": _fix_member,
    "Cdr": _fix_cdr,
}
