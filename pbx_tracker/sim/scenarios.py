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

The captures are read by `sim.call_template` and rewritten message by message
by `sim.call_rewrites`; `sim.generated_day` makes a day of such calls.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from pbx_tracker.sim.call_rewrites import CallPlan, Timing, render_message
from pbx_tracker.sim.call_template import (
    CHANNEL,
    KINDS,
    MIN_RING,
    TEMPLATE_MANAGER,
    CallTemplate,
    template_of,
)
from pbx_tracker.sim.cel_apps import DEFAULT_APPS
from pbx_tracker.sim.cel_log import cel_rows
from pbx_tracker.sim.ids import DEFAULT_EPOCH, IdAllocator

MONITOR_DIR = "/var/spool/asterisk/monitor/"


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
    template = template_of(kind)
    timing = _timing(template, ring, talk)
    base = ids.epoch + start
    times = [base + t + timing.shift(i) for i, t in enumerate(template.times)]
    call = CallPlan(
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
    messages = [render_message(call, i, table, ids) for i in range(len(template.fields))]
    return SimCall(_expected(call, messages, table, manager, start), messages, ids.epoch)


def _timing(template: CallTemplate, ring: float | None, talk: float | None) -> Timing:
    times = template.times
    template_ring = times[template.ring_end] - times[0]
    ring_delta = _delta(template, "ring", ring, template.ring_gap, template_ring)
    talk_delta = 0.0
    if template.answer is not None and template.talk_end is not None:
        template_talk = times[template.talk_end] - times[template.answer]
        talk_delta = _delta(template, "talk", talk, template.talk_gap, template_talk)
    elif talk is not None:
        raise ValueError(f"a {template.kind!r} call has no talk time")
    return Timing(template.ring_gap, ring_delta, template.talk_gap, talk_delta)


def _delta(
    template: CallTemplate, what: str, wanted: float | None, gap: int | None, current: float
) -> float:
    if wanted is None:
        return 0.0
    if gap is None:
        raise ValueError(f"the {what} time of a {template.kind!r} call is fixed by its template")
    silence = template.times[gap] - template.times[gap - 1]
    low = max(current - silence, MIN_RING if what == "ring" else 0.0)
    high = template.spec.max_ring if what == "ring" else float("inf")
    if not low <= wanted <= high:
        raise ValueError(f"{what} time of a {template.kind!r} call must be in [{low:.3f}, {high}]")
    return wanted - current


def _dial_timeout(template: CallTemplate, timing: Timing) -> str | None:
    if template.spec.timeout is None or timing.ring_delta == 0.0:
        return None
    return str(max(1, round(int(template.spec.timeout) + timing.ring_delta)))


def _token_table(
    template: CallTemplate,
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
            peer = CHANNEL.fullmatch(token)
            name = peer.group(1) if peer else "carrier"
            name = manager if name == TEMPLATE_MANAGER else name
            table.append(f"IAX2/{name}-{ids.callno()}")
        elif kind == "bridge":
            table.append(ids.bridge_id())
        else:
            table.append(fixed[kind])
    return table


def _expected(
    call: CallPlan, messages: list[dict[str, str]], table: list[str], manager: str, start: float
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


def merge(calls: Iterable[SimCall]) -> list[dict[str, str]]:
    """All messages of `calls` in time order (stable: a call's own order is kept)."""
    messages = [message for call in calls for message in call.messages]
    return sorted(messages, key=lambda message: float(message["_ts"]))
