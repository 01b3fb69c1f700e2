"""How a group picks among its free managers (``strategy:`` of a routing group).

Each strategy gets the free members in the group's order (config order) and
returns the managers to ring with a short reason.  Ties always go to the one
listed first, so the same state gives the same choice.

- ``longest_idle``: the manager whose last call ended longest ago; managers
  with no call yet come first (app_queue's ``leastrecent``);
- ``round_robin``: the next free manager after the one this group offered last
  (app_queue's ``rrmemory``; the memory lives in the router);
- ``ring_all``: every free manager at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pick:
    managers: tuple[str, ...]
    reason: str


def longest_idle(
    free: Sequence[str],
    last_call_end: Callable[[str], float | None],
    clock_time: Callable[[float], str],
) -> Pick:
    """The free manager idle longest; ``clock_time`` shows an epoch time to people."""

    def idle_order(extension: str) -> tuple[bool, float]:
        ended = last_call_end(extension)
        return ended is not None, ended or 0.0

    chosen = min(free, key=idle_order)
    ended = last_call_end(chosen)
    why = "has had no call yet" if ended is None else f"idle since {clock_time(ended)}"
    return Pick((chosen,), f"{chosen} {why} ({len(free)} free)")


def round_robin(members: Sequence[str], free: Sequence[str], previous: str | None) -> Pick:
    """The first free member after ``previous`` in the group's order, wrapping around."""
    start = members.index(previous) + 1 if previous in members else 0
    free_set = set(free)
    turn = [*members[start:], *members[:start]]
    chosen = next(extension for extension in turn if extension in free_set)
    why = f"is next after {previous}" if previous in members else "is first in turn"
    return Pick((chosen,), f"{chosen} {why} ({len(free)} free)")


def ring_all(free: Sequence[str]) -> Pick:
    return Pick(tuple(free), f"{', '.join(free)} free")
