"""A simulated day: who calls which tracked number when, and the calls it makes.

`generate_day` makes a day of overlapping calls of every kind (`sim.scenarios`);
`call_slots` only the callers and their times, for a day whose calls are routed
as they come (`sim.routed`).  Some callers call again.  Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pbx_tracker.sim.call_template import KINDS, TEMPLATE_MANAGER
from pbx_tracker.sim.ids import DEFAULT_EPOCH, IdAllocator
from pbx_tracker.sim.scenarios import SimCall, make_call

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
