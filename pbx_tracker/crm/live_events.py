"""`LiveEvents`: what a CRM must know while a call is still going on — whose phones began
to ring for it, who answered — written to the outbox as it happens.

Bitrix24 pops a call's card up for the managers whose phones ring and hides it when
one of them answers; it learns of that from ``call.ringing`` and ``call.answered``
events (`pbx_tracker.crm.platform`).  The daemon calls `changed` after each AMI
event it takes in; the loop reads the calls in progress at most ten times a
second (a burst of events is one look), compares them with what it saw last, and
writes one event per change: each manager rings once per call, a call is answered
once.  Only inbound calls to a tracked number count.  Nothing here waits on the
CRM: a slow or dead CRM only lets its outbox grow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.calls.live import LiveCall
from pbx_tracker.calls.records import Direction, format_time, from_epoch
from pbx_tracker.crm.outbox import enqueue_event
from pbx_tracker.phones import normalize_number
from pbx_tracker.staff import Directory

__all__ = ["LiveEvents"]

log = structlog.get_logger(__name__)

LOOK_SECONDS = 0.1  # at most ten looks a second, however many events arrive


@dataclass
class _Seen:
    rung: set[str] = field(default_factory=set)
    answered: bool = False


class LiveEvents:
    """Turns the calls in progress into ``call.ringing`` / ``call.answered`` outbox events
    for ``targets``; ``written`` is called after events were added (wake the deliveries)."""

    def __init__(
        self,
        engine: AsyncEngine,
        live_calls: Callable[[], Iterable[LiveCall]],
        directory: Directory,
        *,
        node: str,
        targets: Sequence[str],
        written: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._live_calls = live_calls
        self._directory = directory
        self._node = node
        self._targets = tuple(targets)
        self._written = written
        self._clock = clock
        self._seen: dict[str, _Seen] = {}
        self._changed = asyncio.Event()
        self.looked = asyncio.Event()  # set after each look (tests wait on it)

    def changed(self) -> None:
        self._changed.set()

    async def run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                await self.look()
            except Exception as error:  # the database is down: the next change looks again
                log.warning("crm.live_events_failed", error=str(error) or type(error).__name__)
            self.looked.set()
            await asyncio.sleep(LOOK_SECONDS)

    async def look(self) -> int:
        """Write the events of what changed since the last look; how many were written."""
        events = self._events(list(self._live_calls()))
        if not events:
            return 0
        now = self._clock()
        added = 0
        async with self._engine.begin() as conn:
            for target in self._targets:
                for call_key, kind, key, payload in events:
                    added += await enqueue_event(
                        conn,
                        target=target,
                        call_key=call_key,
                        kind=kind,
                        key=f"{target}:{key}",
                        payload=payload,
                        now=now,
                    )
        if added:
            self._written()
        return added

    def _events(self, calls: list[LiveCall]) -> list[tuple[str, str, str, dict[str, Any]]]:
        events = []
        live = set()
        for call in calls:
            if call.direction is not Direction.INBOUND or not self._tracked(call):
                continue
            live.add(call.linkedid)
            seen = self._seen.setdefault(call.linkedid, _Seen())
            call_key = f"{self._node}:{call.linkedid}"
            facts = self._facts(call)
            rings = [ext for ext in call.ringing if ext not in seen.rung and self._manager(ext)]
            if rings:
                seen.rung.update(rings)
                key = f"{call_key}:ringing:{','.join(rings)}"
                events.append((call_key, "call.ringing", key, {"call": facts, "managers": rings}))
            talking = call.talking_to
            if not seen.answered and talking is not None and self._manager(talking):
                seen.answered = True
                key = f"{call_key}:answered:{talking}"
                events.append((call_key, "call.answered", key, {"call": facts, "manager": talking}))
        for gone in set(self._seen) - live:
            del self._seen[gone]
        return events

    def _tracked(self, call: LiveCall) -> bool:
        return self._directory.find_number(call.did) is not None

    def _manager(self, extension: str) -> bool:
        return self._directory.manager_for_extension(extension) is not None

    def _facts(self, call: LiveCall) -> dict[str, Any]:
        """The call as the records tell it: the caller in E.164, the tracked number's form."""
        labels = self._directory.find_number(call.did)
        return {
            "node": self._node,
            "linkedid": call.linkedid,
            "caller": normalize_number(call.caller, self._directory.region),
            "caller_name": call.caller_name,
            "did": labels.did if labels is not None else call.did,
            "source": call.source,
            "started_at": format_time(from_epoch(call.started_at)),
        }
