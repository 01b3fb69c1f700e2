"""Recovering, in the daemon, the calls Asterisk logged while pbx-tracker did not listen.

At start and before each AMI resync (after every (re)connect), `CelRecovery`
reads the CEL log from the saved position (in a worker thread: the event loop
never waits on the disk), hands each finished call to the daemon's pipeline
(the same path as a live call: labels, store, callbacks, CRM), and keeps the
rows of the calls still going for the daemon to start them in its live
correlator with their true beginning.  The read position is saved only once
the records are stored (or kept in the spill file): a crash in between reads
the same lines again, and the store keeps each call once (node, linkedid).

The very first read (no position saved yet: a new install) starts at the
log's end: the calls of the PBX's past are not imported on their own (and no
callback task opens for a missed call of last month); `pbx-tracker replay`
imports a CEL file on purpose.  A long log is read a part at a time
(`Chunk.more`), each part stored before the next is read; the rows of the
calls going at a part's end are carried into the next, so a call longer than a
part is whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import structlog

from pbx_tracker.calls.correlator import Topology
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.cel.log import CelRow
from pbx_tracker.cel.reading import NOT_WRITTEN_YET, Chunk, Position, end_of, read_since
from pbx_tracker.cel.recovery import Recovered, recover
from pbx_tracker.cel.settings import CelSettings

__all__ = ["CelRecovery", "Positions"]

log = structlog.get_logger(__name__)

_REPORTED_LINES = 20  # unreadable lines logged one by one per read; the rest are counted


Read = Callable[[Position | None], Awaitable[Chunk]]
End = Callable[[], Awaitable[Position | None]]


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
        finished: Callable[[CallRecord], object],
        stored: Callable[[], Awaitable[bool]],
        read: Read | None = None,
        end: End | None = None,
    ) -> None:
        """``read``: the log's reader, ``end``: where it ends now (default: the CSV file, in
        a worker thread)."""
        self.settings = settings
        self.topology = topology
        self.monitor_dir = monitor_dir
        self.positions = positions
        self.finished = finished
        self.stored = stored
        self.read = read or self._read_file
        self.end = end or self._file_end
        self.state = RecoveryState()
        self._lock = asyncio.Lock()

    async def run(
        self, live: Collection[str] | None = None, live_at: float = 0.0
    ) -> dict[str, list[CelRow]]:
        """Recover what was logged since the last read; the rows of calls still going.

        ``live``: the Linkedids of Asterisk's channels at a (re)connect, at ``live_at``
        (a call going in CEL with none of them left was cut by a crash: given up).
        """
        async with self._lock:
            self.state.problem = None
            try:
                return await self._read_all(live, live_at)
            except Exception as error:  # never the end of the daemon: the next read retries
                self.state.status, self.state.problem = "failed", f"{type(error).__name__}: {error}"
                log.exception("cel.recovery_failed", file=self.settings.source)
                return {}

    async def _read_all(
        self, live: Collection[str] | None, live_at: float
    ) -> dict[str, list[CelRow]]:
        position = await self.positions.load()
        if position is None:
            return await self._first_read()
        self.state.calls = 0
        carried: list[tuple[Position, CelRow]] = []  # the calls going at a part's end
        while True:
            started = time.monotonic()
            chunk, result = await self._read(position, carried, live, live_at)
            if not await self._hand_over(result, time.monotonic() - started):
                return result.going
            if not chunk.more or chunk.end in (None, position):
                return result.going
            carried = [(at, row) for at, row in chunk.rows if row.linkedid in result.going]
            position = chunk.end

    async def _first_read(self) -> dict[str, list[CelRow]]:
        """A new install: start at the log's end (its past is `replay`'s to import)."""
        end = await self.end()
        if end is None:  # the first record Asterisk writes is the first to recover
            self.state.problem = f"{self.settings.source} does not exist (is CEL set up?)"
            end = NOT_WRITTEN_YET
        await self.positions.save(end)
        self.state.status, self.state.last_run = "ok", time.time()
        log.info("cel.first_read", source=self.settings.source, starts_at=end.offset)
        return {}

    async def _read_file(self, position: Position | None) -> Chunk:
        return await asyncio.to_thread(read_since, self.settings.file, position)

    async def _file_end(self) -> Position | None:
        return await asyncio.to_thread(end_of, self.settings.file)

    async def _read(
        self,
        position: Position,
        carried: list[tuple[Position, CelRow]],
        live: Collection[str] | None,
        live_at: float,
    ) -> tuple[Chunk, Recovered]:
        """The next part of the log, after the rows ``carried`` over from the last part."""
        chunk = await self.read(position)
        chunk.rows[:0] = carried
        for line in chunk.bad_lines[:_REPORTED_LINES]:
            log.warning("cel.line_unreadable", line=line)
        for loss in chunk.lost:
            log.warning("cel.rotated_file_gone", problem=loss)
        if chunk.missing:
            self.state.problem = f"{self.settings.source} does not exist (is CEL set up?)"
            log.warning("cel.log_missing", source=self.settings.source)
        longest = self.settings.longest_call_hours * 3600
        result = await asyncio.to_thread(
            partial(recover, longest_call=longest, live=live, live_at=live_at),
            chunk,
            self.topology,
            self.monitor_dir,
        )
        if len(chunk.bad_lines) > _REPORTED_LINES:
            log.warning("cel.lines_unreadable", count=len(chunk.bad_lines))
        return chunk, result

    async def _hand_over(self, result: Recovered, seconds: float) -> bool:
        """Pass the records on; save the position once they are stored (False: not)."""
        for record in result.records:
            self.finished(record)
        saved = await self.stored()
        if saved:
            await self.positions.save(result.position)
        self.state.status = "ok" if saved else "waiting for the database"
        self.state.last_run = time.time()
        self.state.calls += len(result.records)
        log.info(
            "cel.recovered",
            calls=len(result.records),
            going=len(result.going),
            given_up=len(result.given_up),
            lines=result.lines,
            seconds=round(seconds, 3),
            position_saved=saved,
        )
        return saved
