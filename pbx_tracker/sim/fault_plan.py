"""The fault run's day of calls and the faults fired into it, both seeded.

`faults_day`: the simulator's call kinds, every caller a new customer, so each
missed call must open exactly one callback task and get exactly one reminder.
`fault_plan`: each kind of fault at seeded random moments, one at a time, with
quiet time after each (see `sim.faults` for what each kind does).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pbx_tracker.sim.call_template import KINDS
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import SimCall, make_call

FAULT_KINDS = ("ami_drop", "asterisk_restart", "db_outage", "daemon_kill", "spill_disk_full")
DIDS = (
    ("74951110001", "yandex-direct"),
    ("74951110002", "google-ads"),
    ("74951110003", "offline-flyer"),
)
MANAGERS = ("101", "102", "103")
_WEIGHTS = {"answered": 35, "ringgroup": 15, "queue": 15, "no_answer": 12, "abandoned": 12}
_WEIGHTS["busy"] = 11


@dataclass(frozen=True)
class Shape:
    """How busy the day is and how long its faults last (seconds)."""

    calls: int = 5000
    mean_gap: float = 0.12  # between two calls' starts: 5,000 calls in about 10 minutes
    longest_talk: float = 60.0
    no_answer_rings: tuple[float, ...] = (10.0, 15.0, 20.0, 30.0)
    rounds: int = 2  # each kind of fault this many times
    shortest_outage: float = 5.0
    longest_outage: float = 60.0
    longest_kill: float = 15.0
    longest_restart: float = 5.0
    queue_size: int = 50  # the writer's in-memory queue: small, so outages spill
    settle: float = 240.0  # s after the play for everything to be stored and sent


def faults_day(shape: Shape, *, seed: int, epoch: float) -> list[SimCall]:
    """``shape.calls`` overlapping calls of every kind, each from a caller of its own."""
    rng = random.Random(f"pbx-tracker-faults-day-{seed}")
    ids = IdAllocator(epoch, seed=seed)
    kinds = list(KINDS)
    rng.shuffle(kinds)
    kinds = kinds[: shape.calls]
    rest = shape.calls - len(kinds)
    kinds += rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()), k=rest)
    calls, start = [], 1.0
    for number, kind in enumerate(kinds):
        did, source = rng.choice(DIDS)
        spec = KINDS[kind]
        ring: float | None = None
        if kind == "no_answer":
            ring = rng.choice(shape.no_answer_rings)
        elif spec.ring:
            ring = round(rng.uniform(1.5, 12.0), 1)
        talk = round(rng.uniform(3.0, shape.longest_talk), 1) if spec.talk else None
        call = make_call(
            kind,
            start=start,
            did=did,
            caller=f"7917{number:07d}",
            caller_name="",
            source=source,
            manager=rng.choice(MANAGERS),
            ring=ring,
            talk=talk,
            ids=ids,
        )
        calls.append(call)
        start = round(start + rng.expovariate(1.0 / shape.mean_gap), 3)
    return calls


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, when (seconds after the play's start) and how long."""

    kind: str
    at: float
    seconds: float

    def describe(self) -> str:
        length = "" if self.kind == "ami_drop" else f" for {self.seconds:.1f} s"
        return f"{self.at:7.1f} s  {self.kind}{length}"


def fault_plan(play_seconds: float, shape: Shape, *, seed: int) -> list[Fault]:
    """Each kind ``shape.rounds`` times in seeded order at seeded moments, one at a time:
    the play is cut in equal slots, a fault takes at most 90 % of its slot (the next one
    waits for it to be undone)."""
    rng = random.Random(f"pbx-tracker-faults-{seed}")
    kinds = [kind for kind in FAULT_KINDS for _ in range(shape.rounds)]
    rng.shuffle(kinds)
    if not kinds:  # rounds=0: the same day without faults, for comparison
        return []
    slot = play_seconds / len(kinds)
    plan = []
    for number, kind in enumerate(kinds):
        outage = rng.uniform(shape.shortest_outage, shape.longest_outage)
        seconds = {
            "ami_drop": 0.0,
            "asterisk_restart": rng.uniform(1.0, shape.longest_restart),
            "db_outage": outage,
            "daemon_kill": rng.uniform(1.0, shape.longest_kill),
            "spill_disk_full": outage,
        }[kind]
        seconds = min(seconds, slot * 0.9)
        at = number * slot + rng.uniform(0.05, 0.1) * slot
        plan.append(Fault(kind, round(at, 1), round(seconds, 1)))
    return plan
