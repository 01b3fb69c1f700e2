"""Judging a fault run: every stored record, callback task and reminder against what was
played, and which differences the daemon's log explains (known classes).

A call cut by an Asterisk restart is judged as Asterisk's own CEL would tell it after
a crash (see `sim.faults`): answered or missed and by whom as of the restart,
``complete: false``, its ring or talk ending between the restart and the next login.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Sequence

from pbx_tracker.callbacks.tasks import CallbackTask
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.sim.fault_outcome import Outcome
from pbx_tracker.sim.fault_player import Player
from pbx_tracker.sim.scenarios import SimCall

SLACK = 1.0  # s: records count whole seconds
CUT_SLACK = 1.5  # s: a cut call's end is between the restart and the next login
LOGGED = {
    "database unavailable": "store.database_unavailable",
    "spill ENOSPC": "store.spill_write_failed",
    "spill emptied": "store.spill_emptied",
    "CEL recovered": "cel.recovered",
    "event failed": "calls.event_failed",
    "errors": '"level": "error"',
}

GAP_LOST = (
    "AMI gap: a call going when the AMI link was cut, whose events during the gap (its"
    " answer) the daemon never heard; its live record stays complete=true, so the CEL"
    " record (right) never replaces it"
)
GAP_TASK = "AMI gap: a callback task opened for such a call, answered but stored as missed"
RESENT = (
    "reminder sent again: the email went out while the database was down, recording it"
    " failed (callbacks.job_failed) and the sweep scheduled the reminder again"
)
RESENT_CUT = (
    "reminder sent again: its job was cut after the email went out (callbacks.job_cut)"
    " when the leader stepped down (callbacks.leadership_lost), and it ran again later"
)


def _answered_at(call: SimCall) -> float | None:
    """`_ts` of the call's answer (None: never answered)."""
    expected = call.expected
    if expected.status != "answered":
        return None
    return float(call.messages[0]["_ts"]) + expected.ring_seconds


def _truth_status(number: int, call: SimCall, player: Player) -> str:
    cut = player.cut.get(number)
    if cut is None:
        return call.expected.status
    answered = _answered_at(call)
    return "answered" if answered is not None and answered <= cut.at else "missed"


def expected_missed(calls: Sequence[SimCall], player: Player) -> set[str]:
    """The customers who must have a callback task: every missed call's caller."""
    return {
        "+" + call.expected.caller
        for number, call in enumerate(calls)
        if _truth_status(number, call, player) == "missed"
    }


def judge_calls(
    outcome: Outcome, calls: Sequence[SimCall], player: Player, records: list[CallRecord]
) -> None:
    by_linkedid: dict[str, list[CallRecord]] = {}
    for record in records:
        by_linkedid.setdefault(record.linkedid, []).append(record)
    played = {call.expected.linkedid for call in calls}
    for linkedid, found in by_linkedid.items():
        if len(found) > 1:
            outcome.duplicated.append(f"{linkedid}: {len(found)} records")
        if linkedid not in played:
            outcome.wrong.append(f"{linkedid}: a record of a call never played")
    outcome.cut_by_restart = len(player.cut)
    outcome.recovered_from_cel = sum(1 for r in records if r.recovered_from == "cel")
    outcome.incomplete = sum(1 for r in records if not r.complete)
    for number, call in enumerate(calls):
        expected = call.expected
        found = by_linkedid.get(expected.linkedid, [])
        if not found:
            outcome.lost.append(f"{expected.linkedid} ({expected.kind}, {_fate(number, player)})")
            continue
        problems = _differences(number, call, player, found[0])
        if not problems:
            continue
        text = (
            f"{expected.linkedid} ({expected.kind}, {_fate(number, player)},"
            f" recovered_from={found[0].recovered_from}, complete={found[0].complete}): "
            + "; ".join(problems)
        )
        if number in player.across_drop and found[0].recovered_from is None:
            outcome.known.setdefault(GAP_LOST, []).append(text)
            outcome.gap_customers.add("+" + expected.caller)
        else:
            outcome.wrong.append(text)


def _fate(number: int, player: Player) -> str:
    cut = player.cut.get(number)
    return "played whole" if cut is None else f"cut by the restart at {cut.at:.1f} s"


def _differences(number: int, call: SimCall, player: Player, record: CallRecord) -> list[str]:
    expected = call.expected
    problems = []

    def differ(name: str, got: object, want: object) -> None:
        if got != want:
            problems.append(f"{name} {got!r} != {want!r}")

    differ("did", (record.did or "").lstrip("+"), expected.did)
    differ("caller", (record.caller or "").lstrip("+"), expected.caller)
    differ("source", record.source, expected.source)
    cut = player.cut.get(number)
    if cut is None:
        differ("status", str(record.status), expected.status)
        differ("missed_reason", record.missed_reason and str(record.missed_reason),
               expected.missed_reason)  # fmt: skip
        differ("answered_by", record.answered_by, expected.answered_by)
        if abs(record.ring_seconds - expected.ring_seconds) > SLACK:
            problems.append(f"ring {record.ring_seconds} != {expected.ring_seconds:.1f}")
        if abs(record.talk_seconds - expected.talk_seconds) > SLACK:
            problems.append(f"talk {record.talk_seconds} != {expected.talk_seconds:.1f}")
        differ("recording_path", record.recording_path, expected.recording_path)
        return problems
    status = _truth_status(number, call, player)
    differ("status", str(record.status), status)
    differ(
        "answered_by", record.answered_by, expected.answered_by if status == "answered" else None
    )
    differ("complete", record.complete, False)
    relogin = cut.relogin if cut.relogin is not None else cut.at
    start = float(call.messages[0]["_ts"])
    answered = _answered_at(call)
    if status == "answered" and answered is not None:
        low, high, got, what = cut.at - answered, relogin - answered, record.talk_seconds, "talk"
    else:
        low, high, got, what = cut.at - start, relogin - start, record.ring_seconds, "ring"
    if not low - CUT_SLACK <= got <= high + CUT_SLACK:
        problems.append(f"{what} {got} not in [{low:.1f}, {high:.1f}]")
    return problems


def judge_tasks(
    outcome: Outcome, expected: set[str], tasks: list[CallbackTask], reminders: list[str]
) -> None:
    outcome.tasks_expected = len(expected)
    outcome.tasks_opened = len(tasks)
    per_customer = Counter(task.customer or "" for task in tasks)
    outcome.tasks_lost = sorted(expected - per_customer.keys())
    outcome.tasks_duplicated = [f"{c}: {n} tasks" for c, n in per_customer.items() if n > 1]
    for task in tasks:
        if task.customer in expected:
            continue
        text = f"{task.customer}: task #{task.id} for a customer who never missed a call"
        if task.customer in outcome.gap_customers:
            outcome.known.setdefault(GAP_TASK, []).append(text)
        else:
            outcome.tasks_duplicated.append(text)
    outcome.tasks_duplicated += [
        f"{task.customer}: task #{task.id} counts {task.tries} missed calls (one was made)"
        for task in tasks
        if task.tries != 1
    ]
    outcome.reminders_expected = len(tasks)
    outcome.reminders_sent = len(reminders)
    sent = Counter(reminders)
    for task in tasks:
        count = sent.get(str(task.id), 0)
        if count == 0:
            outcome.reminders_missing.append(f"task #{task.id} ({task.customer})")
        elif count > 1:
            outcome.reminders_repeated.append(f"task #{task.id} ({task.customer}): {count}")
        if task.reminders_sent != count == 1:
            outcome.reminders_repeated.append(
                f"task #{task.id}: {count} emails, the task says {task.reminders_sent}"
            )
    known = {str(task.id) for task in tasks}
    outcome.reminders_repeated += [f"email for unknown task {t}" for t in sent if t not in known]


def judge_log(outcome: Outcome, log_text: str) -> None:
    """The daemon log's counts of what the run is about, and the repeats it explains."""
    outcome.log_counts = {name: log_text.count(needle) for name, needle in LOGGED.items()}
    explain_repeats(outcome, log_text)


def explain_repeats(outcome: Outcome, log_text: str) -> None:
    """Move the repeats the daemon's log explains (a reminder job that failed or was cut
    after its email went out) from `reminders_repeated` to known classes."""
    why: dict[str, str] = {}
    for line in log_text.splitlines():
        for event, name in (("callbacks.job_failed", RESENT), ("callbacks.job_cut", RESENT_CUT)):
            if f'"{event}"' not in line:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("kind") == "remind":
                    why.setdefault(str(entry.get("task_id")), name)
    rest: list[str] = []
    for item in outcome.reminders_repeated:
        task = item.split("#", 1)[1].split(" ", 1)[0].rstrip(":") if "#" in item else ""
        if task in why:
            outcome.known.setdefault(why[task], []).append(item)
        else:
            rest.append(item)
    outcome.reminders_repeated = rest
