"""The captured calls every generated inbound call is made from, one per kind of call.

`KINDS` names each kind's capture (in `templates/`) and what may change in it;
`template_of(kind)` reads the capture once: its messages cut into literal text
and the identifying tokens (Uniqueids, channels, bridges, the DID, the caller,
the manager's phone), and where ringing and talk begin and end.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources

from pbx_tracker.sim.traces import trace_with_epoch


@dataclass(frozen=True)
class CallSpec:
    """One kind of call: its capture, its outcome, and what of it may change."""

    file: str
    status: str
    reason: str | None = None
    answered_by: str | None = None  # None and pick_manager: the chosen manager
    pick_manager: bool = False
    ring: bool = False
    talk: bool = False
    max_ring: float = 19.0  # the template's Dial timeout is 20 s
    timeout: str | None = None  # the router's Dial timeout, rewritten from the ring time


KINDS: dict[str, CallSpec] = {
    "answered": CallSpec("01_answered_simple", "answered", pick_manager=True, ring=True, talk=True),
    "no_answer": CallSpec(
        "03_missed_no_answer",
        "missed",
        "no_answer",
        pick_manager=True,
        ring=True,
        max_ring=300.0,
        timeout="10",
    ),
    "abandoned": CallSpec("04_missed_caller_abandon", "missed", "abandoned", ring=True),
    "busy": CallSpec("05_busy_all", "missed", "busy"),
    "ringgroup": CallSpec("06_ringgroup", "answered", answered_by="102", ring=True, talk=True),
    "queue": CallSpec("07_queue_answered", "answered", answered_by="102", talk=True),
}
TEMPLATE_MANAGER = "101"
MIN_RING = 1.0
_UNIQUEID = re.compile(r"(?<![\w.])\d{9,11}\.\d+(?!\w)")
CHANNEL = re.compile(r"IAX2/([A-Za-z0-9]+)-\d+(?!\w)")
_BRIDGE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MS_PAIRED = ("ANSWEREDTIME", "DIALEDTIME")

Segments = str | tuple[str | int, ...]


@dataclass
class CallTemplate:
    """A kind's capture cut into literal text and tokens, and its ringing and talk."""

    kind: str
    spec: CallSpec
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
def template_of(kind: str) -> CallTemplate:
    """The capture of `kind`, read once."""
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
    return CallTemplate(
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
            for kind, regex in (("uid", _UNIQUEID), ("chan", CHANNEL), ("bridge", _BRIDGE)):
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
