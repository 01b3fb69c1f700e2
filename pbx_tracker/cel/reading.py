"""Reading the CEL file from where the last read stopped, across rotation and truncation.

A `Position` is a file's identity (device and inode), the byte offset of the
next line to read and a fingerprint of the file's first line (so a new file
that reuses the inode is not taken for the old one; an empty file has none
yet).  `read_since` reads
whole lines only (a line Asterisk is still writing waits for the next read):

- same file, at least as long as the offset: from the offset;
- same file, shorter than the offset (truncated in place): from the start;
- another file at the path (rotated: renamed away and a new one created, or
  copied away and truncated): the rest of the old one, found beside it
  (``Master.csv.1``, ``Master.csv-20261207``, …) by its identity or its first
  line, then the new one from the start; an old file that is gone is reported.

Every row comes with the position of its own line, so the caller can save, as
the place to start next time, the line of the earliest call not finished yet.
One read takes at most ``limit`` bytes (a week of a busy PBX's log is not read
into memory at once); `Chunk.more` says the file goes on, for the next read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pbx_tracker.cel.log import CelRow, parse_line

__all__ = [
    "NOT_WRITTEN_YET",
    "READ_LIMIT",
    "Chunk",
    "Position",
    "end_of",
    "identity_of",
    "read_since",
]

_FINGERPRINT_BYTES = 512
_TAIL_BYTES = 1024 * 1024  # where the last line of a log is looked for
READ_LIMIT = 8 * 1024 * 1024  # bytes of the log one read takes (about 450 calls)


@dataclass(frozen=True, slots=True)
class Position:
    """Where to read next: a file (identity, first-line fingerprint) and a byte offset."""

    identity: str
    offset: int
    fingerprint: str


NOT_WRITTEN_YET = Position("", 0, "")  # no log yet: the file that appears, from its start


@dataclass
class Chunk:
    """What one read found: rows with the position of their line, and where it ended."""

    rows: list[tuple[Position, CelRow]] = field(default_factory=list)
    end: Position | None = None
    bad_lines: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # rotated remainders that were gone
    more: bool = False  # the read stopped at its limit: the log goes on after ``end``
    missing: bool = False  # there is no log to read (yet)


def identity_of(path: Path) -> tuple[str, str] | None:
    """(device:inode, fingerprint of the first line), or None when there is no file."""
    try:
        status = path.stat()
        with path.open("rb") as stream:
            head = stream.read(_FINGERPRINT_BYTES)
    except OSError:
        return None
    if b"\n" not in head and len(head) < _FINGERPRINT_BYTES:
        return f"{status.st_dev}:{status.st_ino}", ""  # no first line yet: no fingerprint
    first = head.split(b"\n", 1)[0]
    return f"{status.st_dev}:{status.st_ino}", hashlib.sha256(first).hexdigest()[:16]


def _same_file(position: Position, current: tuple[str, str]) -> bool:
    """The file read last time (a position taken before its first line was written
    matches the same inode with any first line)."""
    if position.identity != current[0]:
        return False
    return position.fingerprint in ("", current[1])


def end_of(path: Path) -> Position | None:
    """The position after the last whole line of ``path`` (None: there is no file)."""
    current = identity_of(path)
    if current is None:
        return None
    with path.open("rb") as stream:
        size = stream.seek(0, 2)
        tail = max(0, size - _TAIL_BYTES)
        stream.seek(tail)
        newline = stream.read().rfind(b"\n")
    return Position(current[0], tail + newline + 1 if newline >= 0 else tail, current[1])


def read_since(path: Path, position: Position | None, limit: int = READ_LIMIT) -> Chunk:
    """The CEL rows of ``path`` after ``position`` (None: from the start), ``limit``
    bytes at most."""
    chunk = Chunk()
    current = identity_of(path)
    if current is None:
        chunk.end, chunk.missing = position, True
        return chunk
    identity, fingerprint = current
    start = 0
    if position == NOT_WRITTEN_YET:
        pass
    elif position is not None and _same_file(position, current):
        size = path.stat().st_size
        start = position.offset if position.offset <= size else 0
    elif position is not None:
        rest = _read_rotated(path, position, chunk, limit)
        if rest is not None and chunk.more:
            chunk.end = rest  # the rotated file first, to its end
            return chunk
    chunk.end = _read_file(path, Position(identity, start, fingerprint), chunk, limit)
    return chunk


def _read_rotated(path: Path, position: Position, chunk: Chunk, limit: int) -> Position | None:
    """The rest of the file that was at ``path`` before it was rotated away: renamed (the
    same identity) or copied before being truncated (``copytruncate``: the same first line)."""
    siblings = [p for p in sorted(path.parent.glob(path.name + "*")) if p != path]
    found = {sibling: identity_of(sibling) for sibling in siblings}
    renamed = [p for p, i in found.items() if i is not None and _same_file(position, i)]
    copied = [p for p, i in found.items() if i is not None and i[1] == position.fingerprint != ""]
    for sibling in renamed or copied[-1:]:
        if sibling.stat().st_size >= position.offset:
            return _read_file(sibling, position, chunk, limit)
    chunk.lost.append(f"{path}: the rotated file it was read from is gone ({position.identity})")
    return None


def _read_file(path: Path, start: Position, chunk: Chunk, limit: int) -> Position:
    """Append the rows of the whole lines from ``start.offset`` (``limit`` bytes at most);
    the position after them.  A line longer than ``limit`` is reported and skipped."""
    offset = start.offset
    with path.open("rb") as stream:
        stream.seek(offset)
        data = stream.read(limit + 1)
    if len(data) > limit:
        chunk.more, data = True, data[:limit]
        if b"\n" not in data:
            chunk.bad_lines.append(f"{path} at byte {offset}: a line longer than {limit} bytes")
            return Position(start.identity, offset + limit, start.fingerprint)
    for line in _whole_lines(data):
        here = Position(start.identity, offset, start.fingerprint)
        offset += len(line)
        try:
            row = parse_line(line.decode("utf-8", errors="replace"))
        except ValueError as error:
            chunk.bad_lines.append(f"{path} at byte {here.offset}: {error}")
            continue
        if row is not None:
            chunk.rows.append((here, row))
    return Position(start.identity, offset, start.fingerprint)


def _whole_lines(data: bytes) -> Iterator[bytes]:
    """The lines of ``data`` that end in a newline (the last one may still be written)."""
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return
        yield data[start : end + 1]
        start = end + 1
