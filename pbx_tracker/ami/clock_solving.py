"""Times for the messages of a capture from what they say about each other (`solve`).

How it combines them
--------------------
Every fact is a difference constraint `t[b] - t[a] >= w`, and messages arrive
in order, `t[i + 1] >= t[i]`.  Three steps, each a bounded number of sweeps
(order carried at C speed by `itertools.accumulate`, links visited one by one):

1. the least solution, every message as early as the facts allow.  Where a
   message ends up past its upper anchor, or values still climb after `SWEEPS`
   sweeps, facts contradict: the chain of constraints that raised it is
   rebuilt from the values and one link on it is dropped (the least trusted
   kind: guess < Cdr < whole seconds < ms; of those, the one that pushed
   furthest forward), at most `ROUNDS` rounds;
2. the greatest solution of the same facts, the last message kept where step 1
   put it: how late each message could be;
3. bursts.  Asterisk sends a call's messages in bursts, each started by
   something outside it: a new call, a called phone ringing or answering after
   its dial was announced, a caller's or talking phone's first hang-up, a key,
   a dial or queue timer running out, a dialplan application or AGI command
   that plays or listens, a queue ringing again, a Cdr sent before what ended
   its record.  Any other message belongs to the burst of the message of its
   call (Linkedid) before it, so each message is pulled up to the next one of
   its call, never past its greatest time, and step 1's sweeps run again to
   keep every link (`GLUE_ROUNDS` times).
A last pass makes times non-decreasing, whatever the input.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence

from pbx_tracker.ami.clock_facts import Facts

SWEEPS = 12
"""Most forward+backward sweeps per solution (the captures settle in five to seven)."""
ROUNDS = 10
"""Most rounds of dropping contradicting links."""
GLUE_ROUNDS = 2
"""Most rounds of gluing bursts and keeping the links after it."""
_NEVER = -math.inf
_ALWAYS = math.inf
_TINY = 1e-6


def solve(facts: Facts) -> list[float]:
    """Times for every message from its facts (steps 1-3 of the module doc)."""
    if not facts.low:
        return []
    graph = _Graph(facts)
    times = graph.settle_least()
    if not math.isfinite(times[-1]):
        return _non_decreasing(times)  # nothing in the capture dates anything
    highest = graph.greatest(times)
    for _ in range(GLUE_ROUNDS):
        glued = _glued(times, highest, facts)
        if glued == times:
            break
        times, _ = graph.least(glued)
    return _non_decreasing(times)


def _glued(times: Sequence[float], highest: Sequence[float], facts: Facts) -> list[float]:
    """Each message pulled up to the next message of its call unless that one may
    start a burst, never past its greatest time (one backward pass).

    Bursts are a call's: another call's messages in between (a busy PBX
    interleaves them) neither cut nor join them.
    """
    glued = list(times)
    following, pause_before = facts.next_of_call, facts.pause_before
    for index in range(len(glued) - 1, -1, -1):
        after = following[index]
        if after >= 0 and not pause_before[after]:
            pulled = min(glued[after], highest[index])
            if pulled > glued[index]:
                glued[index] = pulled
    return glued


class _Graph:
    """The facts' constraints, indexed for sweeps, with the links that still count.

    Order is carried by `itertools.accumulate` over the stretches between link
    ends; only the links are visited one by one.
    """

    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.count = len(facts.low)
        self.active = [True] * len(facts.links)
        self.ending_at: dict[int, list[int]] = {}
        self.starting_at: dict[int, list[int]] = {}
        for number, link in enumerate(facts.links):
            if 0 <= link.earlier < link.later < self.count:
                self.ending_at.setdefault(link.later, []).append(number)
                self.starting_at.setdefault(link.earlier, []).append(number)
        self.ends = sorted(self.ending_at)
        self.starts = sorted(self.starting_at, reverse=True)

    # -- step 1 ----------------------------------------------------------------------

    def settle_least(self) -> list[float]:
        """The least solution, dropping links that contradict (at most `ROUNDS` times)."""
        times, climbing = self.least(self.facts.low)
        for _ in range(ROUNDS):
            blamed = self._blame(times, climbing)
            if not blamed:
                break
            for number in blamed:
                self.active[number] = False
            times, climbing = self.least(self.facts.low)
        return times

    def least(self, start: Sequence[float]) -> tuple[list[float], list[int]]:
        """Sweeps from `start` up to the least solution above it, at most `SWEEPS`;
        also the messages the last sweep still raised (none: settled)."""
        times = list(start)
        climbing: list[int] = []
        for _ in range(SWEEPS):
            self._forward(times)
            climbing = self._backward(times)
            if not climbing:
                break
        else:
            self._forward(times)
        return times, climbing

    def _forward(self, times: list[float]) -> None:
        """Order, and the lower side of every link (`later >= earlier + low`)."""
        links, active = self.facts.links, self.active
        running, start = _NEVER, 0
        for later in self.ends:
            running = _carry_max(times, start, later, running)
            value = max(times[later], running)
            for number in self.ending_at[later]:
                link = links[number]
                if active[number]:
                    value = max(value, times[link.earlier] + link.low)
            times[later] = running = value
            start = later + 1
        _carry_max(times, start, self.count, running)

    def _backward(self, times: list[float]) -> list[int]:
        """The upper side of every link (`earlier >= later - high`); what it raised."""
        links, active = self.facts.links, self.active
        raised: list[int] = []
        for earlier in self.starts:
            value = times[earlier]
            for number in self.starting_at[earlier]:
                link = links[number]
                if active[number]:
                    value = max(value, times[link.later] - link.high)
            if value > times[earlier] + _TINY:
                times[earlier] = value
                raised.append(earlier)
        return raised

    def _blame(self, times: list[float], climbing: list[int]) -> set[int]:
        """Links to drop: one on each chain of raises that took a message past its upper
        anchor, or that kept raising it (a contradiction's cycle)."""
        high = self.facts.high
        late = [i for i, (t, h) in enumerate(zip(times, high, strict=True)) if t > h + _TINY]
        late = [i for i in late if i == 0 or times[i - 1] <= high[i - 1] + _TINY] + climbing
        blamed = (self._culprit(times, index) for index in late)
        return {number for number in blamed if number is not None}

    def _culprit(self, times: list[float], index: int) -> int | None:
        """The link to drop on the chain of raises that ends at `index`.

        Which link of a contradiction is wrong the capture cannot say: the least
        trusted kind goes first, and of those the one that pushed a message furthest
        forward (a misread duration is more often too long than a reference wrong).
        """
        links = self.facts.links
        chain: list[tuple[int, float]] = []
        for _ in range(64):  # a chain, or a contradiction's cycle, walked a bounded way
            step = self._raised_by(times, index)
            if step is None:
                break
            number, index = step
            if number is not None:
                link = links[number]
                chain.append((number, link.low if index == link.earlier else _NEVER))
        if not chain:
            return None
        least = min(links[number].trust for number, _ in chain)
        candidates = [
            (push, -place, number)
            for place, (number, push) in enumerate(chain)
            if links[number].trust == least
        ]
        return max(candidates)[2]

    def _raised_by(self, times: list[float], index: int) -> tuple[int | None, int] | None:
        """What set `times[index]`: (a link or None for the order, where from); None:
        its own anchor."""
        value = times[index] - _TINY
        if self.facts.low[index] >= value:
            return None
        links, active = self.facts.links, self.active
        for number in self.ending_at.get(index, ()):
            link = links[number]
            if active[number] and times[link.earlier] + link.low >= value:
                return number, link.earlier
        for number in self.starting_at.get(index, ()):
            link = links[number]
            if active[number] and times[link.later] - link.high >= value:
                return number, link.later
        if index > 0 and times[index - 1] >= value:
            return None, bisect.bisect_left(times, value, 0, index)
        return None

    # -- step 2 ----------------------------------------------------------------------

    def greatest(self, lowest: Sequence[float]) -> list[float]:
        """Every message as late as the facts allow, the last one where `lowest` has it."""
        times = list(self.facts.high)
        times[-1] = min(times[-1], lowest[-1])
        for _ in range(SWEEPS):
            self._backward_greatest(times)
            if not self._forward_greatest(times):
                break
        return times

    def _backward_greatest(self, times: list[float]) -> None:
        """Order from the end, and `earlier <= later - low`."""
        links, active = self.facts.links, self.active
        running, stop = _ALWAYS, self.count
        for earlier in self.starts:
            running = _carry_min(times, earlier + 1, stop, running)
            value = min(times[earlier], running)
            for number in self.starting_at[earlier]:
                link = links[number]
                if active[number]:
                    value = min(value, times[link.later] - link.low)
            times[earlier] = running = value
            stop = earlier
        _carry_min(times, 0, stop, running)

    def _forward_greatest(self, times: list[float]) -> bool:
        """`later <= earlier + high`; whether anything came down."""
        links, active = self.facts.links, self.active
        lowered = False
        for later in self.ends:
            value = times[later]
            for number in self.ending_at[later]:
                link = links[number]
                if active[number]:
                    value = min(value, times[link.earlier] + link.high)
            if value < times[later] - _TINY:
                times[later] = value
                lowered = True
        return lowered


def _carry_max(times: list[float], start: int, stop: int, running: float) -> float:
    """`times[start:stop]` raised to their running maximum from `running`; the last one."""
    if start >= stop:
        return running
    if times[start] < running:
        times[start] = running
    times[start:stop] = itertools.accumulate(times[start:stop], max)
    return times[stop - 1]


def _carry_min(times: list[float], start: int, stop: int, running: float) -> float:
    """`times[start:stop]` lowered to the running minimum from the end; the first one."""
    if start >= stop:
        return running
    if times[stop - 1] > running:
        times[stop - 1] = running
    carried = list(itertools.accumulate(reversed(times[start:stop]), min))
    carried.reverse()
    times[start:stop] = carried
    return carried[0]


def _non_decreasing(times: Iterable[float]) -> list[float]:
    """Finite, non-decreasing times: unknown ones take the next known one (else 0)."""
    values = list(times)
    following = 0.0
    for index in range(len(values) - 1, -1, -1):
        if math.isfinite(values[index]):
            following = values[index]
        else:
            values[index] = following
    latest = _NEVER
    for index, value in enumerate(values):
        latest = max(latest, value)
        values[index] = latest
    return values
