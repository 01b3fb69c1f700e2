"""Calls shaped exactly like real Asterisk traffic, templated from captured traces.

Each kind of call is one real capture (copied into `templates/`, see
`tests/data/asterisk-traces/README.md`): its call events are replayed with
everything that identifies the call rewritten consistently — Uniqueids and
Linkedids (fresh `epoch.seq`), channel names (fresh IAX2 call numbers), bridge
ids, AGI command ids, the caller's number and name, the DID, the source label,
the recording file, and (for the single-leg templates) which manager's phone
rang.  Ring and talk time stretch the one long silence of the template (the
ringing, the conversation) and every duration Asterisk reports about it
(`ANSWEREDTIME`, `DIALEDTIME`, `TalkTime`, Cdr times and durations) follows.
Header names, header order and event order stay those of the real capture.

| kind        | template                 | outcome                        | ring | talk |
|-------------|--------------------------|--------------------------------|------|------|
| `answered`  | 01_answered_simple       | answered by `manager`          | yes  | yes  |
| `no_answer` | 03_missed_no_answer      | missed, no_answer (`manager`)  | yes* | -    |
| `abandoned` | 04_missed_caller_abandon | missed, abandoned (101&102)    | yes  | -    |
| `busy`      | 05_busy_all              | missed, busy (101&102&103)     | -    | -    |
| `ringgroup` | 06_ringgroup             | answered by 102 (ring all)     | yes  | yes  |
| `queue`     | 07_queue_answered        | answered by 102 (queue sales)  | -    | yes  |

(*) for `no_answer` the ring time is the Dial timeout, which is rewritten too.
`ring_seconds` counts from the inbound channel's creation to the answer (or
to the end of the ringing); `talk_seconds` from the answer to the first hang-up
request.  Times are seconds since the simulated day's start (`IdAllocator.epoch`).
"""

from __future__ import annotations

import bisect
import functools
import random
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources

from pbx_tracker.sim.cel_apps import DEFAULT_APPS
from pbx_tracker.sim.cel_log import cel_rows
from pbx_tracker.sim.traces import trace_with_epoch

DEFAULT_EPOCH = 1795424400.0  # 2026-11-23 09:00:00 UTC, the day after the captures
MONITOR_DIR = "/var/spool/asterisk/monitor/"
UNKNOWN = "<unknown>"

CALLER_NAMES = (
    "Анна Смирнова",
    "Sergey Kuznetsov",
    "Ольга Попова",
    "Дмитрий Соколов",
    "Elena Volkova",
    "John Smith",
    "Пётр Новиков",
    "Ирина Фёдорова",
    "Anna Lebedeva",
    "Алексей Морозов",
    "",
)


@dataclass(frozen=True)
class ExpectedCall:
    """What the correlator must conclude about one generated call."""

    linkedid: str
    did: str
    caller: str
    status: str
    missed_reason: str | None
    answered_by: str | None
    ring_seconds: float
    talk_seconds: float
    kind: str = ""
    source: str = ""
    start: float = 0.0
    recording_path: str = ""


@dataclass(frozen=True)
class SimCall:
    expected: ExpectedCall
    messages: list[dict[str, str]]
    epoch: float = DEFAULT_EPOCH  # epoch time of `_ts == 0` (the day's start)

    def cel_lines(self, apps: Collection[str] = DEFAULT_APPS) -> list[str]:
        """The CEL lines Asterisk writes for this call (`sim.cel_log`; no newlines).

        Several calls: ``cel_rows(merge(calls), epoch=...)``.
        """
        return cel_rows(self.messages, epoch=self.epoch, apps=apps)


class IdAllocator:
    """Fresh identifiers for one simulated day: Uniqueids, IAX2 call numbers, bridge ids.

    Uniqueids are `<epoch seconds>.<seq>` like Asterisk's, with `seq` counting
    up across the whole day; everything random comes from `seed`.
    """

    def __init__(self, epoch: float = DEFAULT_EPOCH, *, seed: int = 1, first_seq: int = 0) -> None:
        self.epoch = epoch
        self._next_seq = first_seq
        self._rng = random.Random(f"pbx-tracker-ids-{seed}")
        self._callno = self._rng.randrange(1, 16000)

    def uniqueid(self, at: float) -> str:
        """A new Uniqueid for a channel created at epoch time `at`."""
        uniqueid = self.peek_uniqueid(at)
        self._next_seq += 1
        return uniqueid

    def peek_uniqueid(self, at: float) -> str:
        """The Uniqueid the next channel created at `at` will get (nothing is used up).

        The first channel of a call is the caller's: this is the call's Linkedid,
        known before the call is made (the router is asked with it).
        """
        return f"{int(at)}.{self._next_seq}"

    def callno(self) -> int:
        self._callno = self._callno % 32767 + 1
        return self._callno

    def bridge_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def command_id(self) -> str:
        return str(self._rng.randrange(1, 2**31))


# -- templates ----------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    file: str
    status: str
    reason: str | None = None
    answered_by: str | None = None  # None and pick_manager: the chosen manager
    pick_manager: bool = False
    ring: bool = False
    talk: bool = False
    max_ring: float = 19.0  # the template's Dial timeout is 20 s
    timeout: str | None = None  # the router's Dial timeout, rewritten from the ring time


KINDS: dict[str, _Spec] = {
    "answered": _Spec("01_answered_simple", "answered", pick_manager=True, ring=True, talk=True),
    "no_answer": _Spec(
        "03_missed_no_answer",
        "missed",
        "no_answer",
        pick_manager=True,
        ring=True,
        max_ring=300.0,
        timeout="10",
    ),
    "abandoned": _Spec("04_missed_caller_abandon", "missed", "abandoned", ring=True),
    "busy": _Spec("05_busy_all", "missed", "busy"),
    "ringgroup": _Spec("06_ringgroup", "answered", answered_by="102", ring=True, talk=True),
    "queue": _Spec("07_queue_answered", "answered", answered_by="102", talk=True),
}
TEMPLATE_MANAGER = "101"
_MIN_RING = 1.0
_UNIQUEID = re.compile(r"(?<![\w.])\d{9,11}\.\d+(?!\w)")
_CHANNEL = re.compile(r"IAX2/([A-Za-z0-9]+)-\d+(?!\w)")
_BRIDGE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MS_PAIRED = ("ANSWEREDTIME", "DIALEDTIME")

Segments = str | tuple[str | int, ...]


@dataclass
class _Template:
    kind: str
    spec: _Spec
    fields: list[list[tuple[str, Segments]]]
    times: list[float]
    epoch: float
    tokens: list[str]
    token_kinds: list[str]
    token_first: list[int]
    caller: str
    did: str
    ring_end: int
    answer: int | None
    talk_end: int | None
    ring_gap: int | None
    talk_gap: int | None
    ms_of: dict[int, int] = field(default_factory=dict)

    def index_at(self, epoch_time: float) -> int:
        """The first message at or after `epoch_time` (capture clock)."""
        index = bisect.bisect_left(self.times, epoch_time - self.epoch)
        return min(index, len(self.times) - 1)


@functools.cache
def _template(kind: str) -> _Template:
    spec = KINDS[kind]
    with resources.as_file(
        resources.files("pbx_tracker.sim") / "templates" / f"{spec.file}.jsonl"
    ) as p:
        messages, epoch = trace_with_epoch(p)
    times = [float(m.pop("_ts")) for m in messages]
    first = next(m for m in messages if m.get("Event") == "Newchannel")
    tokens, kinds, firsts = _discover_tokens(messages, first, spec.pick_manager)
    pattern = _token_pattern(tokens)
    index = {token: number for number, token in enumerate(tokens)}
    skip = index.get(TEMPLATE_MANAGER) if spec.pick_manager else None
    compiled = [
        [(key, _segments(value, pattern, index, skip)) for key, value in m.items()]
        for m in messages
    ]
    marks = _marks(messages)
    return _Template(
        kind,
        spec,
        compiled,
        times,
        epoch,
        tokens,
        kinds,
        firsts,
        caller=first["CallerIDNum"],
        did=first["Exten"],
        ring_end=marks.ring_end,
        answer=marks.answer,
        talk_end=marks.talk_end,
        ring_gap=_largest_gap(times, marks.ring_start, marks.ring_end) if spec.ring else None,
        talk_gap=_largest_gap(times, marks.answer, marks.talk_end) if spec.talk else None,
        ms_of=_ms_pairs(messages),
    )


def _discover_tokens(
    messages: list[dict[str, str]], first: Mapping[str, str], manager: bool
) -> tuple[list[str], list[str], list[int]]:
    """Every identifying string of the template, its kind and first message index."""
    found: dict[str, tuple[str, int]] = {}
    for number, message in enumerate(messages):
        for value in message.values():
            for kind, regex in (("uid", _UNIQUEID), ("chan", _CHANNEL), ("bridge", _BRIDGE)):
                for match in regex.finditer(value):
                    found.setdefault(match.group(0), (kind, number))
    found[first["Exten"]] = ("did", 0)
    found[first["CallerIDNum"]] = ("caller", 0)
    if manager:
        found[TEMPLATE_MANAGER] = ("manager", 0)
    ordered = sorted(found, key=lambda token: found[token][1])
    return ordered, [found[t][0] for t in ordered], [found[t][1] for t in ordered]


def _token_pattern(tokens: list[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))
    return re.compile(rf"(?<![\w.])(?:{alternatives})(?!\w)")


def _segments(
    value: str, pattern: re.Pattern[str], index: Mapping[str, int], skip: int | None
) -> Segments:
    """`value` cut into literal text and token numbers.

    The manager token is kept literal in values listing several phones (`&`):
    those are the dialplan's fixed fallback, not the phone that rang.
    """
    parts: list[str | int] = []
    position = 0
    for match in pattern.finditer(value):
        number = index[match.group(0)]
        if number == skip and "&" in value:
            continue
        parts.extend((value[position : match.start()], number))
        position = match.end()
    if not parts:
        return value
    parts.append(value[position:])
    return tuple(part for part in parts if part != "")


@dataclass(frozen=True)
class _Marks:
    ring_start: int
    ring_end: int
    answer: int | None
    talk_end: int | None


def _marks(messages: list[dict[str, str]]) -> _Marks:
    """Where ringing starts and ends, the answer, and the first hang-up request after it."""
    ring_start = _find(messages, lambda m: m.get("Event") in ("DialBegin", "AgentCalled"))
    answer = _find(messages, lambda m: m.get("Event") == "DialEnd" and m["DialStatus"] == "ANSWER")
    dial_ends = [i for i, m in enumerate(messages) if m.get("Event") == "DialEnd"]
    if ring_start is None or not dial_ends:
        raise ValueError("a template must dial somebody")
    talk_end = None
    if answer is not None:
        talk_end = _find(messages, lambda m: m.get("Event") == "HangupRequest", answer)
    ring_end = answer if answer is not None else dial_ends[-1]
    return _Marks(ring_start, ring_end, answer, talk_end)


def _find(
    messages: list[dict[str, str]], test: Callable[[dict[str, str]], bool], after: int = -1
) -> int | None:
    return next((i for i, m in enumerate(messages) if i > after and test(m)), None)


def _largest_gap(times: list[float], low: int | None, high: int | None) -> int | None:
    """The index i in (low, high] with the longest silence before it."""
    if low is None or high is None or high <= low:
        return None
    return max(range(low + 1, high + 1), key=lambda i: times[i] - times[i - 1])


def _ms_pairs(messages: list[dict[str, str]]) -> dict[int, int]:
    """For `ANSWEREDTIME`-like VarSets: the value of their `_MS` twin (for exact seconds)."""
    pairs: dict[int, int] = {}
    for number, message in enumerate(messages):
        variable = message.get("Variable", "")
        if message.get("Event") != "VarSet" or variable not in _MS_PAIRED or not message["Value"]:
            continue
        for later in messages[number + 1 :]:
            if later.get("Variable") == f"{variable}_MS" and later["Value"]:
                pairs[number] = int(later["Value"])
                break
    return pairs


# -- one call -----------------------------------------------------------------


@dataclass(frozen=True)
class _Timing:
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
class _Call:
    template: _Template
    timing: _Timing
    times: list[float]  # new epoch time of every message
    caller: str
    name: str
    source: str
    timeout: str | None
    command_ids: dict[str, str]
    login_time: str


def make_call(
    kind: str,
    *,
    start: float,
    did: str,
    caller: str,
    caller_name: str,
    source: str,
    manager: str = TEMPLATE_MANAGER,
    ring: float | None = None,
    talk: float | None = None,
    ids: IdAllocator,
) -> SimCall:
    """One call of `kind` starting `start` seconds after the day's start (see module doc).

    `manager` picks the phone of the single-leg kinds (`answered`, `no_answer`);
    the other kinds keep the template's phones.  `ring`/`talk` (seconds) are
    allowed where the table says so; ValueError otherwise or when out of range.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown call kind {kind!r}; known: {', '.join(KINDS)}")
    template = _template(kind)
    timing = _timing(template, ring, talk)
    base = ids.epoch + start
    times = [base + t + timing.shift(i) for i, t in enumerate(template.times)]
    call = _Call(
        template,
        timing,
        times,
        caller,
        caller_name,
        source,
        timeout=_dial_timeout(template, timing),
        command_ids={},
        login_time=str(int(ids.epoch)),
    )
    manager = manager if template.spec.pick_manager else TEMPLATE_MANAGER
    table = _token_table(template, ids, times, did=did, caller=caller, manager=manager)
    messages = [_render(call, i, table, ids) for i in range(len(template.fields))]
    return SimCall(_expected(call, messages, table, manager, start), messages, ids.epoch)


def _timing(template: _Template, ring: float | None, talk: float | None) -> _Timing:
    times = template.times
    template_ring = times[template.ring_end] - times[0]
    ring_delta = _delta(template, "ring", ring, template.ring_gap, template_ring)
    talk_delta = 0.0
    if template.answer is not None and template.talk_end is not None:
        template_talk = times[template.talk_end] - times[template.answer]
        talk_delta = _delta(template, "talk", talk, template.talk_gap, template_talk)
    elif talk is not None:
        raise ValueError(f"a {template.kind!r} call has no talk time")
    return _Timing(template.ring_gap, ring_delta, template.talk_gap, talk_delta)


def _delta(
    template: _Template, what: str, wanted: float | None, gap: int | None, current: float
) -> float:
    if wanted is None:
        return 0.0
    if gap is None:
        raise ValueError(f"the {what} time of a {template.kind!r} call is fixed by its template")
    silence = template.times[gap] - template.times[gap - 1]
    low = max(current - silence, _MIN_RING if what == "ring" else 0.0)
    high = template.spec.max_ring if what == "ring" else float("inf")
    if not low <= wanted <= high:
        raise ValueError(f"{what} time of a {template.kind!r} call must be in [{low:.3f}, {high}]")
    return wanted - current


def _dial_timeout(template: _Template, timing: _Timing) -> str | None:
    if template.spec.timeout is None or timing.ring_delta == 0.0:
        return None
    return str(max(1, round(int(template.spec.timeout) + timing.ring_delta)))


def _token_table(
    template: _Template,
    ids: IdAllocator,
    times: list[float],
    *,
    did: str,
    caller: str,
    manager: str,
) -> list[str]:
    """The new value of every template token, allocated in order of first appearance."""
    fixed = {"did": did, "caller": caller, "manager": manager}
    table: list[str] = []
    for token, kind, first in zip(
        template.tokens, template.token_kinds, template.token_first, strict=True
    ):
        if kind == "uid":
            table.append(ids.uniqueid(times[first]))
        elif kind == "chan":
            peer = _CHANNEL.fullmatch(token)
            name = peer.group(1) if peer else "carrier"
            name = manager if name == TEMPLATE_MANAGER else name
            table.append(f"IAX2/{name}-{ids.callno()}")
        elif kind == "bridge":
            table.append(ids.bridge_id())
        else:
            table.append(fixed[kind])
    return table


def _render(call: _Call, index: int, table: list[str], ids: IdAllocator) -> dict[str, str]:
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


def _fix_names(message: dict[str, str], call: _Call) -> None:
    """The caller's name wherever the caller's number is shown."""
    for prefix in ("", "Dest"):
        for number, name in (
            ("CallerIDNum", "CallerIDName"),
            ("ConnectedLineNum", "ConnectedLineName"),
        ):
            if message.get(prefix + number) == call.caller and prefix + name in message:
                message[prefix + name] = call.name or UNKNOWN


def _fix_varset(message: dict[str, str], index: int, call: _Call, ids: IdAllocator) -> None:
    variable, value = message.get("Variable", ""), message.get("Value", "")
    if variable.endswith("TRACK_SOURCE"):
        message["Value"] = call.source
    elif variable == "ROUTE_TIMEOUT" and call.timeout and value == call.template.spec.timeout:
        message["Value"] = call.timeout
    elif value and variable in ("ANSWEREDTIME", "ANSWEREDTIME_MS", "QUEUETALKTIME"):
        message["Value"] = _stretched(call, index, variable, value, call.timing.talk_shift(index))
    elif value and variable in ("DIALEDTIME", "DIALEDTIME_MS"):
        message["Value"] = _stretched(call, index, variable, value, call.timing.shift(index))


def _stretched(call: _Call, index: int, variable: str, value: str, delta: float) -> str:
    if variable.endswith("_MS"):
        return str(max(0, int(value) + round(delta * 1000)))
    milliseconds = call.template.ms_of.get(index)
    if milliseconds is not None:
        return str(max(0, (milliseconds + round(delta * 1000)) // 1000))
    return str(max(0, round(int(value) + delta)))


def _fix_newexten(message: dict[str, str], index: int, call: _Call, ids: IdAllocator) -> None:
    data = message.get("AppData", "")
    for prefix in ("__TRACK_SOURCE=", "CDR(userfield)="):
        if data.startswith(prefix):
            message["AppData"] = prefix + call.source
    if call.timeout and message.get("Application") == "Dial":
        message["AppData"] = _with_timeout(message["AppData"], call)


def _with_timeout(dial_data: str, call: _Call) -> str:
    target, sep, rest = dial_data.partition(",")
    old = f"{call.template.spec.timeout},"
    if sep and rest.startswith(old) and call.timeout:
        return f"{target},{call.timeout},{rest[len(old) :]}"
    return dial_data


def _fix_agi(message: dict[str, str], index: int, call: _Call, ids: IdAllocator) -> None:
    if "CommandId" in message:
        old = message["CommandId"]
        message["CommandId"] = call.command_ids.setdefault(old, ids.command_id())
    old_timeout = f'ROUTE_TIMEOUT "{call.template.spec.timeout}"'
    if call.timeout and message.get("Command", "").endswith(old_timeout):
        message["Command"] = message["Command"].replace(
            old_timeout, f'ROUTE_TIMEOUT "{call.timeout}"'
        )


def _fix_agent_complete(message: dict[str, str], index: int, call: _Call, ids: IdAllocator) -> None:
    if message.get("TalkTime"):
        talk = int(message["TalkTime"]) + call.timing.talk_shift(index)
        message["TalkTime"] = str(max(0, round(talk)))


def _fix_member(message: dict[str, str], index: int, call: _Call, ids: IdAllocator) -> None:
    if "LoginTime" in message:
        message["LoginTime"] = call.login_time
    if message.get("LastCall", "0") != "0":
        moment = call.times[call.template.index_at(float(message["LastCall"]))]
        message["LastCall"] = str(int(moment))


def _fix_cdr(message: dict[str, str], index: int, call: _Call, ids: IdAllocator) -> None:
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
    message: dict[str, str], call: _Call, moments: dict[str, int | None]
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


def _cdr_index(call: _Call, text: str) -> int | None:
    if not text:
        return None
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    return call.template.index_at(moment)


def _cdr_time(epoch_time: float) -> str:
    return datetime.fromtimestamp(int(epoch_time), UTC).strftime("%Y-%m-%d %H:%M:%S")


_Fixer = Callable[[dict[str, str], int, _Call, IdAllocator], None]
_FIXERS: dict[str, _Fixer] = {
    "VarSet": _fix_varset,
    "Newexten": _fix_newexten,
    "AGIExecStart": _fix_agi,
    "AGIExecEnd": _fix_agi,
    "AgentComplete": _fix_agent_complete,
    "QueueMemberStatus": _fix_member,
    "Cdr": _fix_cdr,
}


def _expected(
    call: _Call, messages: list[dict[str, str]], table: list[str], manager: str, start: float
) -> ExpectedCall:
    template, spec, times = call.template, call.template.spec, call.times
    first = messages[0]
    linkedid = first["Linkedid"]
    talk = 0.0
    if template.answer is not None and template.talk_end is not None:
        talk = times[template.talk_end] - times[template.answer]
    answered_by = spec.answered_by or (manager if spec.status == "answered" else None)
    return ExpectedCall(
        linkedid=linkedid,
        did=first["Exten"],
        caller=first["CallerIDNum"],
        status=spec.status,
        missed_reason=spec.reason,
        answered_by=answered_by,
        ring_seconds=round(times[template.ring_end] - times[0], 3),
        talk_seconds=round(talk, 3),
        kind=template.kind,
        source=call.source,
        start=start,
        recording_path=f"{MONITOR_DIR}{linkedid}.wav",
    )


# -- a day of calls -----------------------------------------------------------

_WEIGHTS = {
    "answered": 35,
    "ringgroup": 15,
    "queue": 15,
    "no_answer": 12,
    "abandoned": 12,
    "busy": 11,
}
_TEMPLATE_NUMBERS = frozenset(
    {"79161234501", "79161234503", "79161234504", "79161234505", "79161234506", "79161234507"}
)


def generate_day(
    n_calls: int,
    *,
    dids: Sequence[tuple[str, str]],
    managers: Sequence[str] = ("101", "102", "103"),
    seed: int = 1,
    mean_gap: float = 2.0,
    epoch: float = DEFAULT_EPOCH,
) -> list[SimCall]:
    """`n_calls` calls of mixed kinds (each kind at least once from six calls on).

    Calls start `mean_gap` seconds apart on average (exponential gaps), so
    they overlap; `dids` are `(did, source)` pairs.  Deterministic for a seed.
    """
    if not dids:
        raise ValueError("generate_day needs at least one (did, source) pair")
    rng = random.Random(f"pbx-tracker-day-{seed}")
    ids = IdAllocator(epoch, seed=seed)
    callers: dict[str, str] = {}
    calls: list[SimCall] = []
    start = 1.0
    for kind in _kinds(n_calls, rng):
        did, source = rng.choice(list(dids))
        caller, name = _caller(rng, callers, {d for d, _ in dids})
        manager, ring, talk = _options(kind, rng, managers)
        call = make_call(
            kind,
            start=start,
            did=did,
            caller=caller,
            caller_name=name,
            source=source,
            manager=manager,
            ring=ring,
            talk=talk,
            ids=ids,
        )
        calls.append(call)
        start = round(start + rng.expovariate(1.0 / mean_gap), 3)
    return calls


@dataclass(frozen=True)
class CallSlot:
    """Who calls which number when, before anyone decides how the call goes."""

    start: float  # seconds after the day's start
    did: str
    source: str
    caller: str
    caller_name: str


def call_slots(
    n_calls: int, *, dids: Sequence[tuple[str, str]], seed: int = 1, mean_gap: float = 2.0
) -> list[CallSlot]:
    """`n_calls` callers of a day, `mean_gap` seconds apart on average; some call again."""
    if not dids:
        raise ValueError("call_slots needs at least one (did, source) pair")
    rng = random.Random(f"pbx-tracker-slots-{seed}")
    callers: dict[str, str] = {}
    slots, start = [], 1.0
    for _ in range(n_calls):
        did, source = rng.choice(list(dids))
        caller, name = _caller(rng, callers, {d for d, _ in dids})
        slots.append(CallSlot(start, did, source, caller, name))
        start = round(start + rng.expovariate(1.0 / mean_gap), 3)
    return slots


def _kinds(n_calls: int, rng: random.Random) -> list[str]:
    every = list(KINDS)
    rng.shuffle(every)
    head = every[:n_calls]
    rest = rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()), k=n_calls - len(head))
    return head + rest


def _caller(rng: random.Random, known: dict[str, str], dids: set[str]) -> tuple[str, str]:
    """A caller: now and then one who called before (same name), else a new number."""
    if known and rng.random() < 0.15:
        number = rng.choice(sorted(known))
        return number, known[number]
    while True:
        number = f"79{rng.randrange(10**9):09d}"
        if number not in known and number not in dids and number not in _TEMPLATE_NUMBERS:
            break
    known[number] = rng.choice(CALLER_NAMES)
    return number, known[number]


def _options(
    kind: str, rng: random.Random, managers: Sequence[str]
) -> tuple[str, float | None, float | None]:
    """Manager, ring and talk time of one random call of `kind`."""
    spec = KINDS[kind]
    manager = rng.choice(list(managers)) if spec.pick_manager else TEMPLATE_MANAGER
    ring: float | None = None
    if kind == "no_answer":
        ring = float(rng.choice((10, 15, 20, 30)))
    elif spec.ring:
        ring = round(rng.uniform(1.5, 15.0 if kind == "abandoned" else 12.0), 1)
    talk = round(rng.uniform(3.0, 60.0), 1) if spec.talk else None
    return manager, ring, talk


def merge(calls: Iterable[SimCall]) -> list[dict[str, str]]:
    """All messages of `calls` in time order (stable: a call's own order is kept)."""
    messages = [message for call in calls for message in call.messages]
    return sorted(messages, key=lambda message: float(message["_ts"]))
