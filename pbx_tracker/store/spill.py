"""The spill file: JSON Lines of call records waiting for the database, each append fsync'd.

`CallWriter` moves its queue here when the database is away longer than the
queue holds, leaves here what is pending at `stop()`, and reads it back first
at the next `start()`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from pbx_tracker.calls.records import CallRecord, record_from_json

__all__ = ["SpillFile", "Taken", "encode"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Taken:
    """A record the writer took: from the queue, or from the spill file up to `spill_end`."""

    record: CallRecord
    spill_end: int | None = None


class SpillFile:
    """JSON Lines of records waiting for the database; every append is fsync'd.

    The methods do blocking I/O and change no counters: the writer runs them
    in a thread, one at a time, and updates `unread` and the offsets itself.
    Lines that cannot be parsed go to `<path>.rejected`, as do records the
    database refuses, so nothing is dropped silently.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected_path = path.with_name(path.name + ".rejected")
        self.unread = 0
        self.read_offset = 0
        self.done_offset = 0

    def open_existing(self) -> int:
        """Count the records an earlier run left; end a torn last line."""
        try:
            data = self.path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return 0
        if data and not data.endswith(b"\n"):
            self.append([b"\n"])
        return sum(1 for line in data.splitlines() if line.strip())

    def append(self, lines: list[bytes]) -> None:
        _append_synced(self.path, b"".join(lines))

    def read(self, offset: int, limit: int) -> tuple[list[Taken], int, int]:
        """Up to `limit` records from `offset`: (records, lines consumed, new offset)."""
        taken: list[Taken] = []
        consumed = 0
        with self.path.open("rb") as file:
            file.seek(offset)
            while len(taken) < limit and (line := file.readline()):
                offset = file.tell()
                if line.strip():
                    consumed += 1
                    self._parse_into(taken, line, offset)
        return taken, consumed, offset

    def truncate(self) -> None:
        with self.path.open("r+b") as file:
            file.truncate(0)
            os.fsync(file.fileno())

    def rewrite(self, head: list[bytes], keep_from: int, tail: list[bytes]) -> int:
        """Replace the file with head + the unwritten rest + tail; count its records."""
        rest = b""
        if self.path.exists():
            with self.path.open("rb") as file:
                file.seek(keep_from)
                rest = file.read()
        if rest and not rest.endswith(b"\n"):
            rest += b"\n"
        data = b"".join(head) + rest + b"".join(tail)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.unlink(missing_ok=True)
        _append_synced(temporary, data)
        os.replace(temporary, self.path)
        _fsync_folder(self.path.parent)
        return sum(1 for line in data.splitlines() if line.strip())

    def reject(self, line: bytes) -> None:
        _append_synced(self.rejected_path, line if line.endswith(b"\n") else line + b"\n")

    def _parse_into(self, taken: list[Taken], line: bytes, end: int) -> None:
        try:
            taken.append(Taken(record_from_json(json.loads(line)), end))
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            log.error("store.spill_line_unreadable", path=str(self.path), error=str(error))
            self.reject(line)


def encode(record: CallRecord) -> bytes:
    # default=str: a stray non-JSON value in `variables` must not stop the spill
    text = json.dumps(record.to_json(), ensure_ascii=False, separators=(",", ":"), default=str)
    return text.encode() + b"\n"


def _append_synced(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    with path.open("ab") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    if created:
        _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
