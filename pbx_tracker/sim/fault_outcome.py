"""What one fault run played and what the daemon kept of it, for people and for machines."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field

from pbx_tracker.sim.daemon_watch import POLL

_EXAMPLES = 5


@dataclass
class Outcome:
    """What one run played and what the daemon kept of it."""

    database: str
    calls: int = 0
    records: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    cut_by_restart: int = 0
    recovered_from_cel: int = 0
    incomplete: int = 0
    tasks_expected: int = 0
    tasks_opened: int = 0
    tasks_lost: list[str] = field(default_factory=list)
    tasks_duplicated: list[str] = field(default_factory=list)
    reminders_expected: int = 0
    reminders_sent: int = 0
    reminders_missing: list[str] = field(default_factory=list)
    reminders_repeated: list[str] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    not_seen_stored: int = 0
    faults: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)  # the kinds, in order
    known: dict[str, list[str]] = field(default_factory=dict)  # explained classes
    gap_customers: set[str] = field(default_factory=set)  # callers of GAP_LOST calls
    log_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    daemon_exit: int | None = None

    @property
    def clean(self) -> bool:
        problems = (self.lost, self.duplicated, self.wrong, self.tasks_lost)
        more = (self.tasks_duplicated, self.reminders_missing, self.reminders_repeated)
        return not any(problems) and not any(more)

    def lines(self) -> list[str]:
        """The figures, for people."""
        delays = sorted(self.delays)
        worst = f"{delays[-1]:.1f} s" if delays else "-"
        typical = f"median {statistics.median(delays):.2f} s" if delays else ""
        p95 = f", 95% {delays[int(0.95 * (len(delays) - 1))]:.1f} s" if delays else ""
        out = [
            f"[{self.database}] {self.calls:,} calls played, {self.records:,} records written"
            f" ({self.recovered_from_cel:,} from CEL, {self.incomplete:,} incomplete,"
            f" {self.cut_by_restart:,} cut by an Asterisk restart) in {self.seconds:.0f} s",
            f"  lost {len(self.lost)}, duplicated {len(self.duplicated)}, wrong {len(self.wrong)}",
            f"  callback tasks: expected {self.tasks_expected:,}, opened {self.tasks_opened:,}"
            f" (lost {len(self.tasks_lost)}, twice {len(self.tasks_duplicated)})",
            f"  reminders: expected {self.reminders_expected:,}, sent {self.reminders_sent:,}"
            f" (missing {len(self.reminders_missing)}, repeated {len(self.reminders_repeated)})",
            f"  call end -> record stored: worst {worst} ({typical}{p95}; polled every"
            f" {POLL} s; {self.not_seen_stored} never seen)",
            "  daemon log: " + ", ".join(f"{k} {v}" for k, v in self.log_counts.items()),
            f"  daemon exit code at the end: {self.daemon_exit}",
        ]
        out += [f"  fault {fault}" for fault in self.faults]
        for name, items in self.known.items():
            out.append(f"  known class ({len(items)}): {name}")
            out += [f"    {item}" for item in items[:_EXAMPLES]]
        for name, items in (
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("wrong", self.wrong),
            ("task lost", self.tasks_lost),
            ("task twice", self.tasks_duplicated),
            ("reminder missing", self.reminders_missing),
            ("reminder repeated", self.reminders_repeated),
        ):
            out += [f"    {name}: {item}" for item in items[:_EXAMPLES]]
            if len(items) > _EXAMPLES:
                out.append(f"    {name}: … {len(items) - _EXAMPLES} more")
        return out


def outcome_json(outcome: Outcome) -> str:
    """The outcome as one JSON object (for machines)."""
    data = dict(outcome.__dict__)
    data["delays"] = sorted(outcome.delays)[-1:] if outcome.delays else []
    return json.dumps(data, ensure_ascii=False, default=str)
