"""Recovering, in the daemon, the calls Asterisk logged while pbx-tracker did not listen.

At start and before each AMI resync (after every (re)connect), `CelRecovery`
reads the CEL log from the saved position (in a worker thread: the event loop
never waits on the disk), hands each finished call to the daemon's pipeline
(the same path as a live call: labels, store, callbacks, CRM), and keeps the
rows of the calls still going for the daemon to start them in its live
correlator with their true beginning.  The read position is saved only once
the records are stored (or kept in the spill file): a crash in between reads
the same lines again, and the store keeps each call once (node, linkedid).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from pbx_tracker.calls.correlator import Topology
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.cel.log import CelRow
from pbx_tracker.cel.reading import Chunk, Position, read_since
from pbx_tracker.cel.recovery import Recovered, recover
from pbx_tracker.cel.settings import CelSettings

__all__ = ["CelRecovery", "Positions"]

log = structlog.get_logger(__name__)

_REPORTED_LINES = 20  # unreadable lines logged one by one per read; the rest are counted


Read = Callable[[Position | None], Awaitable[Chunk]]


class Positions(Protocol):
    """Where the last read stopped, kept durably (the database)."""

    async def load(self) -> Position | None: ...

    async def save(self, position: Position | None) -> None: ...


@dataclass
class RecoveryState:
    """What /healthz shows of the recovery."""

    status: str = "not run yet"
    last_run: float | None = None
    calls: int = 0
    problem: str | None = None


class CelRecovery:
    """Reads the CEL log since the last read; one read at a time."""

    def __init__(
        self,
        settings: CelSettings,
        topology: Topology,
        monitor_dir: str,
        positions: Positions,
        finished: Callable[[CallRecord], None],
        stored: Callable[[], Awaitable[bool]],
        read: Read | None = None,
    ) -> None:
        """``read``: the log's reader (default: the CSV file, in a worker thread)."""
        self.settings = settings
        self.topology = topology
        self.monitor_dir = monitor_dir
        self.positions = positions
        self.finished = finished
        self.stored = stored
        self.read = read or self._read_file
        self.state = RecoveryState()
        self._lock = asyncio.Lock()

    async def run(self) -> dict[str, list[CelRow]]:
        """Recover what was logged since the last read; the rows of calls still going."""
        async with self._lock:
            started = time.monotonic()
            try:
                result = await self._read()
            except Exception as error:  # never the end of the daemon: the next read retries
                self.state.status, self.state.problem = "failed", f"{type(error).__name__}: {error}"
                log.exception("cel.recovery_failed", file=self.settings.source)
                return {}
            await self._hand_over(result, time.monotonic() - started)
            return result.going

    async def _read_file(self, position: Position | None) -> Chunk:
        return await asyncio.to_thread(read_since, self.settings.file, position)

    async def _read(self) -> Recovered:
        position = await self.positions.load()
        chunk = await self.read(position)
        for line in chunk.bad_lines[:_REPORTED_LINES]:
            log.warning("cel.line_unreadable", line=line)
        for loss in chunk.lost:
            log.warning("cel.rotated_file_gone", problem=loss)
        longest = self.settings.longest_call_hours * 3600
        result = await asyncio.to_thread(
            recover, chunk, self.topology, self.monitor_dir, longest_call=longest
        )
        if len(chunk.bad_lines) > _REPORTED_LINES:
            log.warning("cel.lines_unreadable", count=len(chunk.bad_lines))
        if chunk.end is None and position is None:
            self.state.problem = f"{self.settings.source} does not exist (is CEL set up?)"
        return result

    async def _hand_over(self, result: Recovered, seconds: float) -> None:
        for record in result.records:
            self.finished(record)
        saved = await self.stored()
        if saved:
            await self.positions.save(result.position)
        self.state.status = "ok" if saved else "waiting for the database"
        self.state.last_run, self.state.calls = time.time(), len(result.records)
        log.info(
            "cel.recovered",
            calls=len(result.records),
            going=len(result.going),
            given_up=len(result.given_up),
            lines=result.lines,
            seconds=round(seconds, 3),
            position_saved=saved,
        )
