"""What the daemon does with each item the AMI listener queues.

An event goes to the self-check, the manager board, the ring-me attempts (an
``OriginateResponse``) and the correlator; a state list (devices, queues) to
the board; a resync (after each (re)connect) first asks CEL what happened
while the link was down, then tells the board and the correlator which
channels are live.  Events the correlator cannot apply go to the dead letters;
each call it finishes goes down the pipeline (`pbx_tracker.pipeline`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from pbx_tracker.ami.connection import ListenerItem, Resync, StateList
from pbx_tracker.ami.dead_letters import DeadLetters
from pbx_tracker.callbacks.ringme import RingMe, RingMeResult
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.cel.events import ami_events
from pbx_tracker.cel.service import CelRecovery
from pbx_tracker.pipeline import CallPipeline
from pbx_tracker.routing.availability import ManagerBoard
from pbx_tracker.selfcheck.live import SelfCheckRunner

__all__ = ["AmiIntake"]

log = structlog.get_logger(__name__)


class AmiIntake:
    """Takes in the listener's items, in order, one at a time."""

    def __init__(
        self,
        items: asyncio.Queue[ListenerItem],
        correlator: Correlator,
        pipeline: CallPipeline,
        *,
        board: ManagerBoard,
        self_check: SelfCheckRunner,
        dead_letters: DeadLetters,
        ringme: RingMe | None,
        cel: CelRecovery | None,
        monitor_dir: str,
    ) -> None:
        self.items = items
        self.correlator = correlator
        self.pipeline = pipeline
        self.board = board
        self.self_check = self_check
        self.dead_letters = dead_letters
        self.ringme = ringme
        self.cel = cel
        self.monitor_dir = monitor_dir
        self._gap_filled: set[str] = set()  # Linkedids whose AMI gap CEL told (resync)
        self.resynced = asyncio.Event()  # set after each resync (tests wait on it)
        self.handled = asyncio.Event()  # set after each item is taken in (tests wait on it)
        self.on_taken: Callable[[], None] | None = None  # after each item (the live board)
        # each ring-me attempt's outcome (a click-to-call the CRM waits to see ended)
        self.on_ringme_result: Callable[[RingMeResult], None] | None = None

    async def run(self) -> None:
        """Take in the items as they come, for ever."""
        while True:
            item = await self.items.get()
            if isinstance(item, Resync):
                try:
                    await self._before_resync(item)
                except Exception:  # the resync itself must still be applied
                    log.exception("cel.gap_recovery_failed")
            try:
                self.take(item)
            except Exception:  # one bad event must not stop the tracking of all calls
                log.exception("daemon.event_failed", ami_event=getattr(item, "name", "resync"))
            if self.on_taken is not None:
                self.on_taken()
            self.handled.set()

    def take_backlog(self) -> None:
        """Take in what is queued (at stop, once the listener logged off)."""
        while not self.items.empty():
            self.take(self.items.get_nowait())

    def take(self, item: ListenerItem) -> None:
        if isinstance(item, StateList):
            self.board.resync(**{item.kind: [i.fields for i in item.items]}, time=item.time)
            return
        if isinstance(item, Resync):
            channels = [c.fields for c in item.channels]
            self.board.resync(channels=channels, time=item.time)
            records = self.correlator.resync(channels, item.time, filled=self._gap_filled)
            self._gap_filled.clear()
            self.resynced.set()
        else:
            self.self_check.observe(item.fields)
            self.board.feed(item)
            if self.ringme is not None and item.name == "OriginateResponse":
                self._ring_me_result(self.ringme, item)
            records = self.correlator.feed(item)
        self.dead_letters.keep(self.correlator.take_failures())
        for record in records:
            self.pipeline.finished(record)

    async def _before_resync(self, item: Resync) -> None:
        """After each (re)connect: the calls Asterisk logged meanwhile, first from CEL.

        Calls that ended in the gap are recovered whole; a call still going that the
        correlator never heard of starts from its true beginning (its CEL rows so far),
        and one it heard until the link dropped hears what happened in the gap (an
        answer, a transfer), so its answer, ring, talk and recording are right when it
        ends (and the resync does not mark it incomplete).
        """
        if self.cel is None:
            return
        live = {channel.fields.get("Linkedid", "") for channel in item.channels}
        going = await self.cel.run(live, item.time)
        for linkedid in sorted(live & going.keys()):
            events = ami_events(going[linkedid], self.monitor_dir)
            if self.correlator.follows(linkedid):  # heard up to the gap: the gap only
                events = self.correlator.news(linkedid, events)
            elif self.correlator.knows(linkedid):
                continue
            for event in events:
                self.correlator.feed(event)
            self._gap_filled.add(linkedid)

    def _ring_me_result(self, ringme: RingMe, event: AmiEvent) -> None:
        result = ringme.feed(event)
        if result is not None and self.on_ringme_result is not None:
            self.on_ringme_result(result)
        if result is not None:
            log.info(
                "callbacks.ringme_result",
                task_id=result.task_id,
                crm_call=result.crm_call_id,
                attempt=result.attempt,
                outcome=result.outcome,
                reason=result.reason,
            )
