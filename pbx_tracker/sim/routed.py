"""A simulated day in which Asterisk asks the router whom to ring, for every call.

At each call's start the simulated Asterisk opens a FastAGI session to the
daemon's ``route`` script exactly as the shipped dialplan does (the trunk
channel's ``agi_*`` header; arguments DID, caller, Linkedid, step 1), reads the
``ROUTE_*`` answer, and plays the call's AMI events with the phone the router
chose: the manager picks up most of the time, else it rings out; a queue
answer plays a queue call; a missed answer (nobody free) plays as every phone
busy.  Managers are busy while on these calls and free afterwards, so later
calls go elsewhere; `break_for` takes one manager's phone off for a while.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pbx_tracker.sim.agi_client import env_for_call, run_agi_session
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.call_template import TEMPLATE_MANAGER
from pbx_tracker.sim.generated_day import CallSlot
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import SimCall, make_call

_CAPTURED_STATES = frozenset({"DeviceStateChange", "ExtensionStatus", "QueueMemberStatus"})

__all__ = ["DayClock", "ManagerBreak", "RoutedCall", "RoutedDay"]


class DayClock:
    """The simulated day's time in epoch seconds: it starts now and runs `speed` times faster.

    Give the same clock to the daemon (its router) and to `RoutedDay`, so that
    AMI `Timestamp`s, reservations and idle times all agree.
    """

    def __init__(self, speed: float | None) -> None:
        self.speed = speed or 1.0
        self.start = time.time()
        self._began = time.monotonic()

    def __call__(self) -> float:
        return self.start + (time.monotonic() - self._began) * self.speed

    def seconds_until(self, day_offset: float) -> float:
        """Real seconds to wait until `day_offset` seconds after the day's start."""
        return max(0.0, (self.start + day_offset - self()) / self.speed)


@dataclass(frozen=True)
class RoutedCall:
    """One call: when and who, what the router said, and the call as it was played."""

    slot: CallSlot
    answer: dict[str, str]  # the ROUTE_* (and TRACK_*) variables the router set
    kind: str
    call: SimCall


@dataclass(frozen=True)
class _Outcome:
    kind: str
    manager: str = TEMPLATE_MANAGER
    ring: float | None = None
    talk: float | None = None


@dataclass(frozen=True)
class ManagerBreak:
    """A manager's phone is off (UNAVAILABLE) between two moments of the day."""

    device: str
    start: float
    end: float


class RoutedDay:
    """Plays call slots against a daemon: route over FastAGI, then the call over AMI."""

    def __init__(
        self,
        asterisk: FakeAsterisk,
        agi_port: int,
        *,
        speed: float | None,
        clock: DayClock | None = None,
        seed: int = 1,
        answer_rate: float = 0.8,
        on_routed: Callable[[RoutedCall], None] | None = None,
        on_break: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.asterisk = asterisk
        self.agi_port = agi_port
        self.speed = speed
        self.answer_rate = answer_rate
        self.on_routed = on_routed or (lambda call: None)
        self.on_break = on_break or (lambda device, off: None)
        self._rng = random.Random(f"pbx-tracker-routed-{seed}")
        self._ids = IdAllocator(seed=seed)
        self.clock = clock or DayClock(speed)

    async def play(
        self, slots: Sequence[CallSlot], breaks: Sequence[ManagerBreak] = ()
    ) -> list[RoutedCall]:
        """Every slot routed and played (concurrently, on the day's clock)."""
        playing: list[asyncio.Task[None]] = []
        routed: list[RoutedCall] = []
        moments = sorted(
            [(s.start, "call", s) for s in slots]
            + [(b.start, "off", b) for b in breaks]
            + [(b.end, "on", b) for b in breaks],
            key=lambda moment: moment[0],
        )
        for start, what, item in moments:
            if self.speed:
                await asyncio.sleep(self.clock.seconds_until(start))
            if isinstance(item, ManagerBreak):
                await self.asterisk.set_device_state(
                    item.device, "UNAVAILABLE" if what == "off" else "NOT_INUSE"
                )
                self.on_break(item.device, what == "off")
                continue
            call = await self._route(item)
            routed.append(call)
            self.on_routed(call)
            playing.append(asyncio.create_task(self._play_call(call)))
        await asyncio.gather(*playing)
        return routed

    async def _route(self, slot: CallSlot) -> RoutedCall:
        linkedid = self._ids.peek_uniqueid(self._ids.epoch + slot.start)
        env = env_for_call(
            did=slot.did,
            caller=slot.caller,
            uniqueid=linkedid,
            channel="IAX2/carrier-0",
            caller_name=slot.caller_name,
            args=[slot.did, slot.caller, linkedid, "1"],
        )
        session = await run_agi_session("127.0.0.1", self.agi_port, env)
        answer = {k: v for k, v in session.variables.items() if k.lstrip("_").startswith("ROUTE_")}
        outcome = self._outcome(answer)
        call = make_call(
            outcome.kind,
            start=slot.start,
            did=slot.did,
            caller=slot.caller,
            caller_name=slot.caller_name,
            source=slot.source,
            manager=outcome.manager,
            ring=outcome.ring,
            talk=outcome.talk,
            ids=self._ids,
        )
        if call.expected.linkedid != linkedid:
            raise RuntimeError(f"routed {linkedid} but played {call.expected.linkedid}")
        return RoutedCall(slot, answer, outcome.kind, call)

    def _outcome(self, answer: dict[str, str]) -> _Outcome:
        """How the call goes, given the router's answer."""
        if answer.get("ROUTE_STATUS") != "OK":
            return _Outcome("busy")
        if answer.get("ROUTE_QUEUE"):
            return _Outcome("queue", talk=round(self._rng.uniform(5, 60), 1))
        managers = [m for m in answer.get("ROUTE_MANAGER", "").split("&") if m]
        manager = self._rng.choice(managers) if managers else TEMPLATE_MANAGER
        if self._rng.random() < self.answer_rate:
            ring, talk = round(self._rng.uniform(2, 10), 1), round(self._rng.uniform(10, 60), 1)
            return _Outcome("answered", manager, ring, talk)
        timeout = float(answer.get("ROUTE_TIMEOUT") or 20)
        return _Outcome("no_answer", manager, ring=min(max(timeout, 5.0), 60.0))

    async def _play_call(self, routed: RoutedCall) -> None:
        """The call's events on the day's clock: Timestamps are the day's start + `_ts`.

        The phone states the template's capture happened to carry (another
        manager's phone going idle, a peer flapping) are left out: here phones
        change state only as this day says (`breaks`), and calls show as calls.
        """
        messages = [m for m in routed.call.messages if m.get("Event") not in _CAPTURED_STATES]
        await self.asterisk.play(messages, self.speed, epoch=self.clock.start)
