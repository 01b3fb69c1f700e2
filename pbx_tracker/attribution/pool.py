"""Dynamic number insertion: which pool number a website visit is shown (pure, no I/O).

`PoolAllocator` hands the DIDs of one `NumberPool` to visits.  The clock is
passed in on every call (``now``, timezone-aware); time never goes back: an
earlier ``now`` than one already seen is taken as the latest seen.

Rules:

- a lease lives while it is kept alive and for ``hold_seconds`` after the last
  keep-alive (it is over at ``last_seen_at + hold``), or until it is released;
- a released number rests ``quarantine_seconds`` before it is handed out again;
- a visit that holds a live lease keeps its number (`assign` is a keep-alive then);
- a returning visitor (``previous_number``) gets that number back when it is free
  and rested;
- otherwise the free, rested number released longest ago (least recently used;
  never-used numbers first, in pool order);
- none free: no number (``exhausted``), the caller shows the pool's fallback
  number; `exhaustions` counts these.

State, all O(1) per operation (amortized):

- ``_live``: visit id -> live `Lease`, an ordered dict kept in order of the last
  keep-alive (a keep-alive moves the visit to the end), so the leases that run
  out are always at the front and expiry pops them one by one;
- ``_holders``: number -> visit id of its live lease;
- ``_free``: number -> when it was released (None: never used), an ordered dict
  in release order (never-used first, in pool order).  Releases happen in time
  order, so the front is the least recently used number, and when the front is
  still in quarantine every other free number is too;
- ``_history``: the last few ended leases of each number, for `holder_at`.

Expired leases end lazily, at the next call; `expire` returns the leases that
ended since its last call (each with its ``released_at``) for the caller to store.

Several daemons may serve one pool from one store, each with its allocator:
`take_over` enters a live lease another daemon gave (learnt from the store), so
the number is not handed out here until that lease runs out; a local lease it
displaces (never stored: the store refused it) is withdrawn, as never shown.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import pairwise

__all__ = [
    "MIN_POOL_SIZE",
    "Assignment",
    "Holder",
    "Lease",
    "PoolAllocator",
    "recommended_pool_size",
]

MIN_POOL_SIZE = 4
DEFAULT_HISTORY = 8


@dataclass(frozen=True, slots=True)
class Lease:
    """A number shown to one visit from ``started_at``; ``released_at`` None while live."""

    number: str
    visit_id: str
    started_at: datetime
    last_seen_at: datetime
    released_at: datetime | None = None

    def ends_at(self, hold: timedelta) -> datetime:
        """When the lease is (or was) over: its release, else the end of its hold."""
        if self.released_at is not None:
            return self.released_at
        return self.last_seen_at + hold


@dataclass(frozen=True, slots=True)
class Assignment:
    """What `PoolAllocator.assign` gave a visit.

    ``number`` None means the pool is exhausted (``exhausted`` True): show the
    fallback number.  ``reused``: the visit keeps its live number, or the
    returning visitor got their previous number back.  ``started``: a new lease
    began (store it with ``start_lease``; otherwise ``extend_lease``).
    """

    number: str | None
    reused: bool
    exhausted: bool
    started: bool = False


@dataclass(frozen=True, slots=True)
class Holder:
    """A visit that held a number at a given moment; ``in_grace``: only within the grace."""

    visit_id: str
    number: str
    started_at: datetime
    ended_at: datetime
    in_grace: bool


class PoolAllocator:
    """Leases of one number pool, in memory; see the module docstring for the rules."""

    def __init__(
        self,
        numbers: Sequence[str],
        *,
        hold_seconds: float,
        quarantine_seconds: float = 0.0,
        leases: Iterable[Lease] = (),
        history: int = DEFAULT_HISTORY,
    ) -> None:
        """``leases``: the stored leases (live ones and the last ended one of each number
        at least), so a restarted daemon keeps holders, LRU order and quarantine.
        Leases of numbers no longer in the pool are ignored.  O(n log n) in leases."""
        if not numbers:
            raise ValueError("a number pool needs at least one number")
        if len(set(numbers)) != len(numbers):
            raise ValueError("a number pool lists a number twice")
        if hold_seconds <= 0 or quarantine_seconds < 0:
            raise ValueError("hold must be positive and quarantine not negative")
        self.numbers: tuple[str, ...] = tuple(numbers)
        self.hold = timedelta(seconds=hold_seconds)
        self.quarantine = timedelta(seconds=quarantine_seconds)
        self.exhaustions = 0
        self.peak_in_use = 0
        self._live: OrderedDict[str, Lease] = OrderedDict()
        self._holders: dict[str, str] = {}
        self._free: OrderedDict[str, datetime | None] = OrderedDict()
        self._history: dict[str, deque[Lease]] = {n: deque(maxlen=history) for n in numbers}
        self._ended: list[Lease] = []
        self._now: datetime | None = None
        self._load(leases)

    # --- state ------------------------------------------------------------

    @property
    def in_use(self) -> int:
        """Numbers held by live leases (as of the last call). O(1)."""
        return len(self._live)

    def live_leases(self) -> list[Lease]:
        """The live leases, oldest keep-alive first. O(n)."""
        return list(self._live.values())

    def lease_of(self, visit_id: str) -> Lease | None:
        """The visit's live lease (as of the last call), or None. O(1)."""
        return self._live.get(visit_id)

    # --- operations -------------------------------------------------------

    def assign(
        self, visit_id: str, now: datetime, previous_number: str | None = None
    ) -> Assignment:
        """The number to show ``visit_id`` at ``now`` (see the rules). O(1) amortized."""
        now = self._advance(now)
        lease = self._live.get(visit_id)
        if lease is not None:
            self._keep(lease, now)
            return Assignment(lease.number, reused=True, exhausted=False)
        number = self._returned(previous_number, now) or self._least_recently_used(now)
        if number is None:
            self.exhaustions += 1
            return Assignment(None, reused=False, exhausted=True)
        self._start(Lease(number, visit_id, started_at=now, last_seen_at=now))
        return Assignment(number, reused=number == previous_number, exhausted=False, started=True)

    def keep_alive(self, visit_id: str, now: datetime) -> Lease | None:
        """Extend the visit's live lease to ``now``; None when it has none (it ran out:
        `assign` again). O(1) amortized."""
        now = self._advance(now)
        lease = self._live.get(visit_id)
        return None if lease is None else self._keep(lease, now)

    def release(self, visit_id: str, now: datetime) -> Lease | None:
        """End the visit's live lease at ``now`` (the page was closed); the ended lease,
        or None when it had none. O(1) amortized."""
        now = self._advance(now)
        lease = self._live.get(visit_id)
        return None if lease is None else self._end(lease, now)

    def expire(self, now: datetime) -> list[Lease]:
        """End the leases whose hold ran out by ``now``; every lease ended since the last
        call (expired or released), for the caller to store. O(ended)."""
        self._advance(now)
        ended, self._ended = self._ended, []
        return ended

    def take_over(self, lease: Lease) -> str | None:
        """Hold ``lease.number`` for ``lease.visit_id`` as ``lease`` says (a live lease of
        another daemon, from the store; a later keep-alive than known extends it).  The
        visit whose local lease on that number is withdrawn (its number is gone, not
        released: no history, no quarantine), else None.  Ignored for a number not in
        the pool or a lease that already ran out.  O(1), O(n log n) when ``lease`` is
        older than the latest keep-alive."""
        if lease.number not in self._history or (
            self._now is not None and lease.last_seen_at + self.hold <= self._now
        ):
            return None
        current = self._live.get(lease.visit_id)
        if current is not None and current.number == lease.number:
            if lease.last_seen_at > current.last_seen_at:
                self._live[lease.visit_id] = replace(current, last_seen_at=lease.last_seen_at)
                self._in_keep_alive_order()
            return None
        if current is not None:  # the store knows the visit with another number
            self._withdraw(current, free=True)
        displaced = self._holders.get(lease.number)
        if displaced is not None:
            self._withdraw(self._live[displaced], free=False)
        self._free.pop(lease.number, None)
        self._live[lease.visit_id] = replace(lease, released_at=None)
        self._holders[lease.number] = lease.visit_id
        self._in_keep_alive_order()
        self.peak_in_use = max(self.peak_in_use, len(self._live))
        return displaced

    def holder_at(self, number: str, t: datetime, grace_seconds: float = 0.0) -> list[Holder]:
        """The visits that held ``number`` at ``t``: lease interval
        ``[started_at, last_seen_at + hold]`` (or its release), plus ``grace_seconds``
        after it ended.  Holders proper first, then graced ones, newest first; more
        than one = ambiguous.  Only the last few leases of each number are kept in
        memory (``history``); older moments are answered by the store. O(history)."""
        grace = timedelta(seconds=grace_seconds)
        holders = []
        for lease in self._leases_of(number):
            end = lease.ends_at(self.hold)
            if lease.started_at <= t <= end + grace:
                holders.append(Holder(lease.visit_id, number, lease.started_at, end, t > end))
        holders.sort(key=lambda h: (h.in_grace, -h.started_at.timestamp()))
        return holders

    # --- internals --------------------------------------------------------

    def _leases_of(self, number: str) -> Iterator[Lease]:
        yield from self._history.get(number, ())
        visit_id = self._holders.get(number)
        if visit_id is not None:
            yield self._live[visit_id]

    def _advance(self, now: datetime) -> datetime:
        """Clamp ``now`` to the latest time seen and end the leases that ran out."""
        if self._now is not None and now < self._now:
            now = self._now
        self._now = now
        while self._live:
            oldest = next(iter(self._live.values()))
            end = oldest.last_seen_at + self.hold
            if end > now:
                break
            self._end(oldest, end)
        return now

    def _returned(self, number: str | None, now: datetime) -> str | None:
        if number is None or number not in self._free or not self._rested(number, now):
            return None
        return number

    def _least_recently_used(self, now: datetime) -> str | None:
        number = next(iter(self._free), None)
        if number is None or not self._rested(number, now):
            return None
        return number

    def _rested(self, number: str, now: datetime) -> bool:
        released = self._free[number]
        return released is None or released + self.quarantine <= now

    def _keep(self, lease: Lease, now: datetime) -> Lease:
        kept = replace(lease, last_seen_at=max(now, lease.last_seen_at))
        self._live[lease.visit_id] = kept
        self._live.move_to_end(lease.visit_id)
        return kept

    def _start(self, lease: Lease) -> None:
        self._free.pop(lease.number, None)
        self._live[lease.visit_id] = lease
        self._holders[lease.number] = lease.visit_id
        self.peak_in_use = max(self.peak_in_use, len(self._live))

    def _end(self, lease: Lease, at: datetime) -> Lease:
        del self._live[lease.visit_id]
        del self._holders[lease.number]
        ended = replace(lease, released_at=at)
        self._history[lease.number].append(ended)
        self._free[lease.number] = at
        self._ended.append(ended)
        return ended

    def _withdraw(self, lease: Lease, *, free: bool) -> None:
        """Take back a lease that was never shown; ``free``: its number is free again."""
        del self._live[lease.visit_id]
        del self._holders[lease.number]
        if free:
            self._free[lease.number] = None if self._now is None else self._now

    def _in_keep_alive_order(self) -> None:
        """Put `_live` back in keep-alive order after an entry out of it (`take_over`)."""
        leases = list(self._live.values())
        if any(a.last_seen_at > b.last_seen_at for a, b in pairwise(leases)):
            ordered = sorted(leases, key=lambda lease: lease.last_seen_at)
            self._live = OrderedDict((lease.visit_id, lease) for lease in ordered)

    def _load(self, leases: Iterable[Lease]) -> None:
        """Rebuild holders, history and the LRU order from stored leases."""
        released: dict[str, datetime] = {}
        live: list[Lease] = []
        for lease in sorted(leases, key=lambda item: item.started_at):
            if lease.number not in self._history:
                continue
            if lease.released_at is not None:
                self._history[lease.number].append(lease)
                released[lease.number] = lease.released_at
            else:
                live = [held for held in live if held.number != lease.number]
                live = [held for held in live if held.visit_id != lease.visit_id]
                live.append(lease)
        for lease in sorted(live, key=lambda item: item.last_seen_at):
            self._start(lease)
        self._fill_free(released)
        times = [lease.last_seen_at for lease in live] + list(released.values())
        self._now = max(times, default=None)
        self.peak_in_use = len(self._live)

    def _fill_free(self, released: dict[str, datetime]) -> None:
        order = {number: index for index, number in enumerate(self.numbers)}
        free = [n for n in self.numbers if n not in self._holders]
        never_used = [n for n in free if n not in released]
        used = sorted((n for n in free if n in released), key=lambda n: (released[n], order[n]))
        for number in never_used:
            self._free[number] = None
        for number in used:
            self._free[number] = released[number]


def recommended_pool_size(
    visits_per_hour: float, minutes_on_site: float, hold_minutes: float, headroom: float = 0.2
) -> int:
    """Numbers a pool needs for the site's traffic: concurrent visits
    ``visits_per_hour * (minutes_on_site + hold_minutes) / 60`` plus ``headroom``,
    rounded up, never below `MIN_POOL_SIZE`."""
    if min(visits_per_hour, minutes_on_site, hold_minutes, headroom) < 0:
        raise ValueError("traffic, minutes and headroom cannot be negative")
    concurrent = visits_per_hour * (minutes_on_site + hold_minutes) / 60 * (1 + headroom)
    # 100 * 20 / 60 * 1.2 is 40.000000000000007 in floating point: round that away
    return max(MIN_POOL_SIZE, math.ceil(round(concurrent, 9)))
