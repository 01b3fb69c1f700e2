"""Whom to ring for a call, one ask at a time (the FastAGI ``route`` handler asks).

The router keeps no state per call: the dialplan carries it between asks
(``ROUTE_GROUP``, ``ROUTE_TRIED``, ``ROUTE_STEP``) and sends it back in the
`RouteRequest`.

- First ask (no group yet): the number's group (``routing.numbers`` rule, else
  the default group).  In a group with ``crm_owner``, a caller whose owner in
  the CRM is a manager and FREE rings that owner alone first (for the group's
  ring time, even outside the group); else a returning caller whose last
  manager is FREE rings that manager alone first (sticky, even outside the
  group).  Either decision has no group, so the next ask starts from the
  number's group again, with that manager among the tried.
- Otherwise the group's strategy picks among its FREE members not tried yet; a
  group with nobody free (or whose queue was already tried) hands over to its
  overflow group, and so on (each group once); at the end of the chain, or past
  ``max_steps``, the missed-call path.

Choosing and reserving happen with no ``await`` between them, so two calls
arriving together never get the same free manager; the lookups that wait (the
caller's CRM owner, within its deadline, then the sticky history) come first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import structlog

from pbx_tracker.phones import is_dialable, normalize_number
from pbx_tracker.routing.availability import ManagerBoard, ManagerStatus
from pbx_tracker.routing.owners import OwnerLookup
from pbx_tracker.routing.plan import Group
from pbx_tracker.routing.settings import MissedSettings
from pbx_tracker.routing.sticky import CallerHistory, LastTalk
from pbx_tracker.routing.strategies import Pick, longest_idle, ring_all, round_robin

__all__ = ["RouteDecision", "RouteRequest", "Router"]

log = structlog.get_logger(__name__)

Action = Literal["dial", "queue", "missed"]
_TRIED = "tried"


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One ask: the call, and what the previous asks for it decided.

    ``group`` is the group of the previous decision (None on the first ask and
    after a CRM owner's or sticky ring), ``tried`` every extension rung so far,
    ``step`` 1 on the first ask.
    """

    did: str
    caller: str | None
    call_id: str
    group: str | None = None
    tried: tuple[str, ...] = ()
    step: int = 1


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """What the dialplan does now.

    ``action`` "dial": ring ``dial`` (``managers``' dial strings joined by
    ``&``) for ``timeout`` seconds; "queue": ``Queue(queue)`` for ``timeout``
    seconds; "missed": the ``missed`` path.  ``group`` goes back in the next
    ask; ``strategy`` is crm_owner, sticky, longest_idle, round_robin,
    ring_all, queue or missed; ``reason`` says in one line why; ``source`` is
    the number's source.
    """

    action: Action
    managers: tuple[str, ...]
    dial: str
    queue: str | None
    timeout: int
    group: str | None
    strategy: str
    reason: str
    source: str | None
    missed: MissedSettings | None


@dataclass(frozen=True, slots=True)
class _Ask:
    """One ask being decided: the request, the moment, the number's source, and the managers
    it may ring first (the caller's CRM owner, their last manager)."""

    request: RouteRequest
    now: float
    source: str | None
    owner: str | None = None
    last_talk: LastTalk | None = None


class Router:
    """Decides each ask from the config, the board, the callers' history and the CRM's owners."""

    def __init__(
        self,
        board: ManagerBoard,
        sticky: CallerHistory | None = None,
        clock: Callable[[], float] = time.time,
        owners: OwnerLookup | None = None,
    ) -> None:
        self._board = board
        self._plan = board.plan
        self._routing = board.plan.routing
        self.directory = board.plan.directory
        self._sticky = sticky
        self._owners = owners
        self._clock = clock
        self._last_offered: dict[str, str] = {}  # group -> extension (round robin)

    async def route(self, request: RouteRequest) -> RouteDecision:
        labels = self.directory.find_number(request.did)
        source = labels.source if labels is not None else None
        if request.step > self._routing.max_steps:
            why = f"step {request.step} is over max_steps ({self._routing.max_steps})"
            return self._missed(why, source)
        start = self._plan.groups.get(request.group or "")
        first = start is None
        if start is None:
            start = self._plan.group_for_number(request.did)
        owner = await self._crm_owner(request, start) if first else None
        last_talk = await self._last_talk(request, start) if first else None
        # no await from here on: the choice and its reservation are one step
        ask = _Ask(request, self._clock(), source, owner, last_talk)
        return self._decide(ask, start, first)

    async def _crm_owner(self, request: RouteRequest, group: Group) -> str | None:
        caller = self._caller(request.caller)
        if caller is None or request.tried or not group.crm_owner or self._owners is None:
            return None
        return await self._owners.owner_of(caller)  # None past its deadline, never raises

    async def _last_talk(self, request: RouteRequest, group: Group) -> LastTalk | None:
        caller = self._caller(request.caller)
        if caller is None or request.tried or group.sticky_days == 0 or self._sticky is None:
            return None
        since = datetime.fromtimestamp(self._clock(), UTC) - timedelta(days=group.sticky_days)
        try:
            return await self._sticky.last_manager(caller, since)
        except Exception as error:  # never let the history stop a call from ringing
            log.warning("routing.sticky_failed", error=str(error) or type(error).__name__)
            return None

    def _caller(self, caller: str | None) -> str | None:
        number = normalize_number(caller, self.directory.region)
        return number if is_dialable(number) else None

    # --- the decision (synchronous) -----------------------------------------------

    def _decide(self, ask: _Ask, start: Group, first: bool) -> RouteDecision:
        notes: list[str] = []
        alone = self._owner_ring(ask, start, notes) or self._sticky_ring(ask, start, notes)
        if alone is not None:
            return alone
        chain = self._plan.chain(start)
        if not first and start.strategy == "queue":
            notes.append(f"queue {start.queue} of {start.name} was tried")
            chain = chain[1:]
        nobody: list[str] = []
        for group in chain:
            decision = self._try_group(ask, group, [*notes, *_nobody_free(nobody)])
            if isinstance(decision, RouteDecision):
                return decision
            nobody.append(decision)
        return self._missed("; ".join([*notes, *_nobody_free(nobody)]), ask.source)

    def _owner_ring(self, ask: _Ask, start: Group, notes: list[str]) -> RouteDecision | None:
        """The caller's CRM owner alone, when a manager here and free (else a note why not)."""
        owner = ask.owner
        if owner is None:
            return None
        if self._plan.manager(owner) is None:
            notes.append(f"CRM owner {owner} is no manager here")
            return None
        status = self._board.status(owner, ask.now)
        if status is not ManagerStatus.FREE:
            notes.append(f"CRM owner {owner} is {status}")
            return None
        pick = Pick((owner,), f"{owner} owns this caller in the CRM")
        return self._offer(ask, pick, None, "crm_owner", start.ring_seconds)

    def _sticky_ring(self, ask: _Ask, start: Group, notes: list[str]) -> RouteDecision | None:
        """The caller's last manager alone, when free (else a note why not)."""
        if ask.last_talk is None:
            return None
        extension, when = ask.last_talk
        status = self._board.status(extension, ask.now)
        if status is ManagerStatus.FREE and self._plan.manager(extension) is not None:
            day = self._plan.local_time(when.timestamp()).date().isoformat()
            pick = Pick((extension,), f"{extension} talked with this caller on {day}")
            return self._offer(ask, pick, None, "sticky", start.sticky_seconds, notes)
        notes.append(f"last manager {extension} is {status}")
        return None

    def _try_group(self, ask: _Ask, group: Group, notes: list[str]) -> RouteDecision | str:
        """A decision in ``group``, or why nobody there can take the call."""
        if group.strategy == "queue":
            if not self._plan.is_open(group.hours, ask.now):
                return f"{group.name} (closed)"
            pick = Pick((), f"queue {group.queue} of {group.name}")
            return self._offer(ask, pick, group, "queue", group.ring_seconds, notes)
        statuses = {
            extension: _TRIED
            if extension in ask.request.tried
            else str(self._board.status(extension, ask.now, group.name))
            for extension in group.members
        }
        free = [extension for extension, status in statuses.items() if status == ManagerStatus.FREE]
        if not free:
            shown = ", ".join(f"{ext} {status}" for ext, status in statuses.items())
            return f"{group.name} ({shown or 'no members'})"
        pick = self._pick(group, free)
        return self._offer(ask, pick, group, group.strategy, group.ring_seconds, notes)

    def _pick(self, group: Group, free: list[str]) -> Pick:
        if group.strategy == "ring_all":
            return ring_all(free)
        if group.strategy == "round_robin":
            pick = round_robin(group.members, free, self._last_offered.get(group.name))
            self._last_offered[group.name] = pick.managers[0]
            return pick
        return longest_idle(free, self._board.last_call_end, self._clock_time)

    def _clock_time(self, moment: float) -> str:
        return self._plan.local_time(moment).strftime("%H:%M")

    def _offer(
        self,
        ask: _Ask,
        pick: Pick,
        group: Group | None,
        strategy: str,
        timeout: int,
        notes: Sequence[str] = (),
    ) -> RouteDecision:
        """Reserve the picked managers for this call and say so."""
        until = ask.now + timeout + self._routing.reservation_seconds
        self._board.reserve(pick.managers, ask.request.call_id, until)
        queue = group.queue if group is not None and strategy == "queue" else None
        where = f" in {group.name}" if group is not None and queue is None else ""
        return RouteDecision(
            action="dial" if queue is None else "queue",
            managers=pick.managers,
            dial="&".join(self._plan.dial_string(extension) for extension in pick.managers),
            queue=queue,
            timeout=timeout,
            group=group.name if group is not None else None,
            strategy=strategy,
            reason="; ".join([*notes, f"{strategy}{where}: {pick.reason}"]),
            source=ask.source,
            missed=None,
        )

    def _missed(self, why: str, source: str | None) -> RouteDecision:
        missed = self._routing.missed
        return RouteDecision(
            action="missed",
            managers=(),
            dial="",
            queue=None,
            timeout=0,
            group=None,
            strategy="missed",
            reason=f"{why}; missed-call path: {missed.action}",
            source=source,
            missed=missed,
        )


def _nobody_free(groups: list[str]) -> list[str]:
    return [f"nobody free in {', '.join(groups)}"] if groups else []
