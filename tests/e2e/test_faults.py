"""The short version of ``benchmarks/faults.py``: calls played into `pbx-tracker run` (its own
process) while the AMI link drops, Asterisk restarts, the database goes away, the daemon is
killed with SIGKILL and the spill file's disk is full (`pbx_tracker.sim.faults`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mailserver import Mailbox

from pbx_tracker.sim.faults import FAULT_KINDS, Shape, run_with_faults

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

# about 40 s of calls; outages longer than SQLite's busy timeout (5 s), so writes fail
SHORT = Shape(
    calls=110,
    mean_gap=0.35,
    longest_talk=10.0,
    no_answer_rings=(10.0,),
    rounds=1,
    shortest_outage=7.0,
    longest_outage=8.0,
    longest_kill=2.0,
    longest_restart=2.0,
    queue_size=3,
    settle=40.0,
)


async def test_no_call_callback_or_reminder_is_lost_or_doubled_by_faults(
    database_url: str, mailbox: Mailbox, tmp_path: Path
) -> None:
    """Whatever breaks during a day (AMI link, Asterisk, the database, the daemon, the disk),
    every call is in the call log once and true, and every missed customer has one callback
    task and one reminder."""

    def reminder_tasks() -> list[str]:
        return [str(message["X-PBX-Tracker-Task"]) for message in mailbox.messages]

    outcome = await run_with_faults(
        "sqlite" if database_url.startswith("sqlite") else "postgres",
        database_url,
        tmp_path,
        shape=SHORT,
        seed=7,
        smtp_port=mailbox.port,
        reminder_tasks=reminder_tasks,
    )
    report = "\n".join(outcome.lines())
    assert sorted(outcome.fired) == sorted(FAULT_KINDS), report
    assert outcome.log_counts["database unavailable"] >= 1, report
    assert outcome.log_counts["spill ENOSPC"] >= 1, report
    assert outcome.cut_by_restart > 0 and outcome.recovered_from_cel > 0, report
    assert (outcome.lost, outcome.duplicated, outcome.wrong) == ([], [], []), report
    assert (outcome.tasks_lost, outcome.tasks_duplicated) == ([], []), report
    assert outcome.tasks_opened == outcome.tasks_expected > 0, report
    assert (outcome.reminders_missing, outcome.reminders_repeated) == ([], []), report
    assert outcome.known == {}, report  # no explained class either: none is left
    assert outcome.records == outcome.calls and outcome.daemon_exit == 0, report
