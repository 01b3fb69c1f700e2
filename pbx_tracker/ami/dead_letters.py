"""Dead letters: AMI events the correlator could not apply, never lost in silence.

Each one is logged as a warning (``calls.event_failed`` with the event's name
``ami_event``, its ``linkedid`` and the ``error``'s type; never its fields, which
hold callers' numbers and names) and kept in a JSON Lines file in the capture format
(`pbx_tracker.ami.capture`), so `pbx-tracker replay FILE` plays it again: the
message's headers as Asterisk sent them, a ``Timestamp`` (the time the daemon
gave the event, when Asterisk sent none) and ``_error`` (the error's type;
readers skip ``_`` keys).

Bounded by rotation: when the file holds half of ``max_events`` it becomes
``FILE.1`` (replacing the one before) and a new file starts, so the two files
hold at most ``max_events`` events together, the newest ones (with
``max_events`` 1 there is no ``.1``: each event replaces the last).

One worker thread writes, in order, so the event loop never waits on the
disk.  A write that fails (disk full, a folder that cannot be written) is
logged once with the reason, not once per event; the daemon goes on, and the
first write that works again logs how many events were not kept meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import structlog

from pbx_tracker.calls.correlator import FailedEvent

__all__ = ["DeadLetters", "dead_letter_line"]

log = structlog.get_logger(__name__)


def dead_letter_line(failure: FailedEvent) -> str:
    """One JSON line of the capture format: the error's type, then the event's headers."""
    fields = dict(failure.event.fields)
    fields.setdefault("Timestamp", f"{failure.event.time:.6f}")
    return json.dumps({"_error": failure.error, **fields}, ensure_ascii=False) + "\n"


class DeadLetters:
    """Logs the events the correlator could not apply and keeps them in a bounded file."""

    def __init__(self, path: Path, max_events: int) -> None:
        self.path = path
        self._file = _RotatingFile(path, max_events)
        self._worker: ThreadPoolExecutor | None = None
        self._last: Future[None] | None = None

    def keep(self, failures: Iterable[FailedEvent]) -> None:
        """Log each failure and hand it to the writing thread; returns at once."""
        lines = []
        for failure in failures:
            log.warning(
                "calls.event_failed",
                ami_event=failure.event.name,
                linkedid=failure.linkedid,
                error=failure.error,
            )
            lines.append(dead_letter_line(failure))
        if not lines:
            return
        if self._worker is None:  # no thread at all while nothing fails
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="dead-letters")
        self._last = self._worker.submit(self._file.append, lines)

    async def flush(self) -> None:
        """Wait until every event kept so far is written (or could not be)."""
        if self._last is not None:
            await asyncio.wrap_future(self._last)


class _RotatingFile:
    """The dead-letter file and its ``.1``; blocking I/O, used by one thread only."""

    def __init__(self, path: Path, max_events: int) -> None:
        self.path = path
        self.previous = path.with_name(path.name + ".1")
        self.keeps_previous = max_events > 1
        self.limit = max(1, max_events // 2) if self.keeps_previous else 1
        self.count: int | None = None  # lines in the file, read at the first write
        self.lost = 0  # events not kept since writing started to fail

    def append(self, lines: list[str]) -> None:
        try:
            self._write(lines)
        except OSError as error:
            self.count = None  # read again at the next try
            if not self.lost:
                log.error(
                    "calls.dead_letters_failed",
                    path=str(self.path),
                    reason=error.strerror or str(error),
                )
            self.lost += len(lines)
            return
        if self.lost:
            log.warning("calls.dead_letters_written_again", path=str(self.path), lost=self.lost)
            self.lost = 0

    def _write(self, lines: list[str]) -> None:
        if self.count is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.count = _count_lines(self.path)
        while lines:
            if self.count >= self.limit:
                self._rotate()
            room = self.limit - self.count
            chunk, lines = lines[:room], lines[room:]
            with self.path.open("a", encoding="utf-8") as file:
                file.write("".join(chunk))
            self.count += len(chunk)

    def _rotate(self) -> None:
        if self.keeps_previous:
            os.replace(self.path, self.previous)
        else:
            self.path.unlink(missing_ok=True)
        self.count = 0


def _count_lines(path: Path) -> int:
    """Lines already in the file (an earlier run's); a torn last line is ended."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if data and not data.endswith(b"\n"):
        with path.open("ab") as file:
            file.write(b"\n")
    return sum(1 for line in data.splitlines() if line.strip())
