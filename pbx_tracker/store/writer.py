"""The single writer between the correlator and the database.

`CallWriter.submit()` never waits and never raises: the AMI reader hands a
finished call over and goes back to reading. One task writes the records in
order, each once. While the database is down the records wait in a bounded
in-memory queue; when it overflows, the queue moves to a JSON Lines spill
file (fsync'd), which is also where `stop()` leaves whatever is still
pending and where the next `start()` picks it up. Order of writing: the
record in hand, then the spill file, then the queue.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import ParamSpec, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx_tracker.calls.records import CallRecord, Direction
from pbx_tracker.store.calls import save_call, save_calls
from pbx_tracker.store.engine import describe_error, is_transient_error, mask_url
from pbx_tracker.store.first_callers import caller_has_earlier_call, mark_first_time_callers
from pbx_tracker.store.spill import SpillFile, Taken, encode

log = structlog.get_logger(__name__)

OnWritten = Callable[[CallRecord, bool], object]
# fills what the stored facts say about calls (the visits a pool number was shown to)
Attribute = Callable[[AsyncConnection, Sequence[CallRecord]], Awaitable[list[CallRecord]]]
# fills `spam` on the records about to be stored (the spam rules)
Classify = Attribute
# writes more in the same transaction, e.g. the CRM outbox's events: (record, was new)
AfterSave = Callable[[AsyncConnection, Sequence[tuple[CallRecord, bool]]], Awaitable[object]]
SPILL_BATCH = 100
WRITE_BATCH = 100
_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Backoff:
    """Capped exponential delays with a little jitter (several daemons may share a database)."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._initial = initial
        self._maximum = maximum
        self._delay = initial

    def next(self) -> float:
        delay = self._delay
        self._delay = min(self._delay * 2, self._maximum)
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self._delay = self._initial


class CallWriter:
    """Writes finished calls to the database in order, surviving its outages."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        spill_path: Path | str,
        queue_size: int = 1000,
        first_time_window: timedelta | None = None,
        on_written: OnWritten | None = None,
        attribute: Attribute | None = None,
        classify: Classify | None = None,
        after_save: AfterSave | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.on_written = on_written
        self._attribute = attribute
        self._classify = classify
        self._after_save = after_save
        self._engine = engine
        self._queue_size = queue_size
        self._first_time_window = first_time_window
        self._queue: deque[CallRecord] = deque()
        self._held: deque[Taken] = deque()
        self._spill = SpillFile(Path(spill_path))
        self._spilling = 0
        self._file_lock = asyncio.Lock()
        self._work = asyncio.Event()
        self._overflow = asyncio.Event()
        self._progress = asyncio.Event()
        self._stopping = asyncio.Event()
        self._closed = False
        self._outage = False
        self._spill_failing = False
        self._backoff = _Backoff(retry_initial, retry_max)
        self._spill_backoff = _Backoff(retry_initial, retry_max)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def engine(self) -> AsyncEngine:
        """The database the records go to (other services read it through the same pool)."""
        return self._engine

    @property
    def pending(self) -> int:
        """Records not written yet: queued, being spilled, in the spill file, in hand."""
        return len(self._queue) + self._spilling + self._spill.unread + len(self._held)

    def submit(self, record: CallRecord) -> None:
        """Hand a finished call over; returns at once and never raises."""
        if self._closed:
            self._spill_after_stop(record)
            return
        self._queue.append(record)
        self._work.set()
        if len(self._queue) > self._queue_size:
            self._overflow.set()

    async def start(self) -> None:
        """Pick up a spill file left by an earlier run and start writing."""
        if self._tasks:
            raise RuntimeError("CallWriter already started")
        self._closed = False
        self._stopping.clear()
        self._spill.unread = await self._file_op(self._spill.open_existing)
        if self._spill.unread:
            log.info("store.spill_found", count=self._spill.unread, path=self._path)
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="call-writer"),
            asyncio.create_task(self._spill_loop(), name="call-writer-spill"),
        ]
        self._overflow.set()

    async def drain(self, timeout: float) -> int:  # noqa: ASYNC109 (returns what is left, never raises)
        """Wait up to `timeout` seconds for everything pending; return how many are left."""
        try:
            async with asyncio.timeout(timeout):
                while self.pending or self._spill.read_offset:  # written, not yet truncated
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            pass
        return self.pending

    async def stop(self, grace: float = 10.0) -> None:
        """Stop writing (a write in flight gets `grace` seconds to finish).

        Whatever is still pending goes to the spill file for the next start;
        call `drain()` first to write as much as possible.
        """
        self._stopping.set()
        self._work.set()
        self._overflow.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self._persist_leftovers()
            while self._queue:  # submitted while the leftovers were being written
                await self._persist_leftovers()
        except OSError as error:
            log.error("store.records_not_kept", pending=self.pending, error=str(error))
        self._closed = True

    @property
    def _path(self) -> str:
        return str(self._spill.path)

    async def _write_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._write_next()
            except Exception:  # an unreadable spill file or a bug: keep the writer alive
                log.exception("store.writer_failed")
                await self._pause(self._backoff.next())

    async def _write_next(self) -> None:
        if not self._held:
            self._held.extend(await self._take())
        if len(self._held) > 1 and await self._write_batch():
            return
        while self._held and not self._stopping.is_set():
            taken = self._held[0]
            if not await self._write(taken.record):
                return
            self._held.popleft()
            if taken.spill_end is not None:
                self._spill.done_offset = taken.spill_end
            self._progress.set()

    async def _take(self) -> list[Taken]:
        """The next records in order: spill file first, then the queue."""
        if self._spilling or self._spill.unread:
            return await self._read_spill()
        if self._spill.read_offset:
            await self._truncate_spill()
            return []
        if self._queue:
            return [Taken(self._queue.popleft()) for _ in range(self._batch_size())]
        self._progress.set()
        self._work.clear()
        await self._work.wait()
        return []

    async def _read_spill(self) -> list[Taken]:
        async with self._file_lock:  # waits for a spill in progress
            if not self._spill.unread:
                return []
            self._spill.done_offset = self._spill.read_offset
            taken, consumed, offset = await _finish_in_thread(
                self._spill.read, self._spill.read_offset, SPILL_BATCH
            )
        self._spill.unread -= consumed
        self._spill.read_offset = offset
        return taken

    async def _truncate_spill(self) -> None:
        async with self._file_lock:
            if self._spill.unread or self._spilling:
                return
            await _finish_in_thread(self._spill.truncate)
            self._spill.read_offset = self._spill.done_offset = 0
        log.info("store.spill_emptied", path=self._path)

    async def _write(self, record: CallRecord) -> bool:
        """Write one record, retrying while the database is down; False when stopping."""
        while not self._stopping.is_set():
            try:
                saved, new = await self._save(record)
            except Exception as error:
                if not is_transient_error(error):
                    await self._reject(record, error)
                    return True
                self._note_outage(error)
                await self._pause(self._backoff.next())
                continue
            self._note_recovery()
            if new is not None:  # None: the stored row was kept, nothing changed
                self._notify(saved, new)
            return True
        return False

    def _batch_size(self) -> int:
        """Up to WRITE_BATCH queued records at once; one at a time through an outage
        (and with a first-time window, which the batch query does not apply)."""
        if self._outage or self._first_time_window is not None:
            return 1
        return min(len(self._queue), WRITE_BATCH)

    async def _write_batch(self) -> bool:
        """Several queued records in one transaction (the usual case under load).

        On any error nothing of the batch is kept: all but the first record go
        back to the front of the queue, and the one-by-one path takes over
        (retries, rejects, spills).
        """
        if any(taken.spill_end is not None for taken in self._held):
            return False
        try:
            async with self._engine.begin() as conn:
                records = await self._attributed(conn, [t.record for t in self._held])
                records = await mark_first_time_callers(conn, records)
                records = await self._classified(conn, records)
                results = zip(records, await save_calls(conn, records), strict=True)
                saved = [(record, new) for record, new in results if new is not None]
                if self._after_save is not None:
                    await self._after_save(conn, saved)
        except Exception:
            first = self._held.popleft()
            self._queue.extendleft(reversed([taken.record for taken in self._held]))
            self._held.clear()
            self._held.append(first)
            if len(self._queue) > self._queue_size:
                self._overflow.set()
            return False
        self._held.clear()
        self._note_recovery()
        for record, new in saved:
            self._notify(record, new)
        self._progress.set()
        return True

    async def _save(self, record: CallRecord) -> tuple[CallRecord, bool | None]:
        """Store one record: (as stored, new) — new is None when the stored row was kept."""
        async with self._engine.begin() as conn:
            (record,) = await self._attributed(conn, [record])
            record = await self._with_first_time(conn, record)
            (record,) = await self._classified(conn, [record])
            new = await save_call(conn, record)
            if self._after_save is not None and new is not None:
                await self._after_save(conn, [(record, new)])
            return record, new

    async def _attributed(
        self, conn: AsyncConnection, records: list[CallRecord]
    ) -> list[CallRecord]:
        if self._attribute is None:
            return records
        return await self._attribute(conn, records)

    async def _classified(
        self, conn: AsyncConnection, records: list[CallRecord]
    ) -> list[CallRecord]:
        if self._classify is None:
            return records
        return await self._classify(conn, records)

    async def _with_first_time(self, conn: AsyncConnection, record: CallRecord) -> CallRecord:
        if record.first_time_caller is not None or record.caller is None:
            return record
        if record.direction is Direction.OUTBOUND:
            return record
        window = self._first_time_window
        earlier = await caller_has_earlier_call(
            conn,
            record.caller,
            record.started_at,
            (record.node, record.linkedid),
            since=record.started_at - window if window else None,
        )
        return record.replace(first_time_caller=not earlier)

    async def _reject(self, record: CallRecord, error: Exception) -> None:
        log.error(
            "store.record_rejected",
            linkedid=record.linkedid,
            node=record.node,
            error=describe_error(error),
            path=str(self._spill.rejected_path),
        )
        await self._file_op(self._spill.reject, encode(record))

    def _note_outage(self, error: Exception) -> None:
        if self._outage:
            return
        self._outage = True
        log.warning(
            "store.database_unavailable",
            url=mask_url(self._engine.url),
            error=describe_error(error),
            pending=self.pending,
            queue_size=self._queue_size,
            spill_path=self._path,
        )

    def _note_recovery(self) -> None:
        self._backoff.reset()
        if self._outage:
            self._outage = False
            log.info(
                "store.database_available", url=mask_url(self._engine.url), pending=self.pending
            )

    def _notify(self, record: CallRecord, new: bool) -> None:
        if self.on_written is None:
            return
        try:
            self.on_written(record, new)
        except Exception:
            log.exception("store.on_written_failed", linkedid=record.linkedid)

    async def _spill_loop(self) -> None:
        while not self._stopping.is_set():
            await self._overflow.wait()
            self._overflow.clear()
            if len(self._queue) > self._queue_size and not self._stopping.is_set():
                await self._spill_queue()

    async def _spill_queue(self) -> None:
        batch = list(self._queue)
        lines = [encode(record) for record in batch]
        self._queue.clear()
        self._spilling = len(batch)
        try:
            await self._file_op(self._spill.append, lines)
            self._spill.unread += len(batch)
            self._spill_failing = False
        except OSError as error:
            self._queue.extendleft(reversed(batch))
            self._note_spill_failure(error)
        finally:
            self._spilling = 0
        if self._spill_failing:
            await self._pause(self._spill_backoff.next())
            self._overflow.set()

    def _note_spill_failure(self, error: Exception) -> None:
        if not self._spill_failing:
            log.error(
                "store.spill_write_failed",
                path=self._path,
                error=str(error),
                pending=self.pending,
            )
        self._spill_failing = True

    async def _persist_leftovers(self) -> None:
        """Rewrite the spill file as: record in hand, unwritten spill, queue."""
        head = [t.record for t in self._held if t.spill_end is None]
        tail = list(self._queue)
        if head or tail or self._spill.done_offset:
            lines = ([encode(r) for r in head], [encode(r) for r in tail])
            keep_from = self._spill.done_offset
            count = await self._file_op(self._spill.rewrite, lines[0], keep_from, lines[1])
            self._spill.unread, self._spill.read_offset, self._spill.done_offset = count, 0, 0
        self._held.clear()
        for _ in tail:  # records submitted meanwhile stay queued for the next round
            self._queue.popleft()
        if self._spill.unread:
            log.info("store.records_kept_for_next_start", count=self.pending, path=self._path)

    def _spill_after_stop(self, record: CallRecord) -> None:
        try:
            self._spill.append([encode(record)])
            self._spill.unread += 1
        except Exception as error:  # submit() never raises
            log.error("store.record_lost_after_stop", linkedid=record.linkedid, error=str(error))

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when stopping."""
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass

    async def _file_op(self, run: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a blocking spill-file call in a thread, under the file lock."""
        async with self._file_lock:
            return await _finish_in_thread(run, *args, **kwargs)


async def _finish_in_thread(run: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run `run` in a thread; when cancelled, let it finish first (files stay consistent)."""
    future = asyncio.ensure_future(asyncio.to_thread(run, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise
