"""The fault run's player: the day's messages in real time into `FakeAsterisk`; an
Asterisk restart holds it and cuts the calls going at that moment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.scenarios import SimCall, merge


@dataclass
class Cut:
    """Calls cut by one Asterisk restart: when, on which clock, and when the daemon was back."""

    at: float  # simulated seconds (the calls' `_ts` clock) of the restart
    shift: float  # the player's shift when they were cut (their events' clock)
    relogin: float | None = None  # when the daemon was logged in again (same clock)


class Player:
    """Plays the day's messages in real time; a restart holds it and cuts the calls going."""

    def __init__(self, asterisk: FakeAsterisk, calls: Sequence[SimCall]) -> None:
        self.asterisk = asterisk
        self.calls = calls
        self.messages = merge(calls)
        self._owner = {id(m): number for number, call in enumerate(calls) for m in call.messages}
        self.sent = [0] * len(calls)
        self.ended_wall: dict[int, float] = {}  # call → wall time its last event was played
        self.cut: dict[int, Cut] = {}
        self.across_drop: set[int] = set()  # calls going when the AMI link was cut
        self.base = time.time()  # wall time of `_ts` 0 (`run` sets it again)
        self.shift = 0.0  # seconds the play was held (restarts)
        self.playing = asyncio.Event()
        self.playing.set()
        self.done = asyncio.Event()

    def now(self) -> float:
        """The simulated time (the calls' `_ts` clock)."""
        return time.time() - self.base - self.shift

    def going(self) -> list[int]:
        return [
            number
            for number, call in enumerate(self.calls)
            if 0 < self.sent[number] < len(call.messages) and number not in self.cut
        ]

    async def run(self) -> None:
        """Play every message; `base` is the wall time of `_ts` 0 (set just before)."""
        try:
            for message in self.messages:
                number = self._owner[id(message)]
                await self._until(float(message["_ts"]))
                if number in self.cut:
                    continue
                await self.asterisk.play([message], None, epoch=self.base + self.shift)
                self.sent[number] += 1
                if self.sent[number] == len(self.calls[number].messages):
                    self.ended_wall[number] = time.time()
        finally:
            self.done.set()

    async def _until(self, at: float) -> None:
        while True:
            await self.playing.wait()
            left = at - self.now()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05) if left > 0.05 else left)

    async def restart(self, asterisk_down: float) -> Cut:
        """Asterisk restarts: the calls going are cut, the play holds while it is down."""
        self.playing.clear()
        held = time.time()
        cut = Cut(self.now(), self.shift)
        for number in self.going():
            self.cut[number] = cut
            self.ended_wall[number] = held
        try:
            await self.asterisk.restart(down_for=asterisk_down)
        finally:
            self.shift += time.time() - held
            self.playing.set()
        return cut
