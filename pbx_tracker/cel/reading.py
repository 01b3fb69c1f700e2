"""Reading the CEL file from where the last read stopped, across rotation and truncation.

A `Position` is a file's identity (device and inode), the byte offset of the
next line to read and a fingerprint of the file's first line (so a new file
that reuses the inode is not taken for the old one).  `read_since` reads
whole lines only (a line Asterisk is still writing waits for the next read):

- same file, at least as long as the offset: from the offset;
- same file, shorter than the offset (truncated in place): from the start;
- another file at the path (rotated: renamed away and a new one created, or
  copied away and truncated): the rest of the old one, found beside it
  (``Master.csv.1``, ``Master.csv-20261207``, …) by its identity or its first
  line, then the new one from the start; an old file that is gone is reported.

Every row comes with the position of its own line, so the caller can save, as
the place to start next time, the line of the earliest call not finished yet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pbx_tracker.cel.log import CelRow, parse_line

__all__ = ["Chunk", "Position", "identity_of", "read_since"]

_FINGERPRINT_BYTES = 512


@dataclass(frozen=True, slots=True)
class Position:
    """Where to read next: a file (identity, first-line fingerprint) and a byte offset."""

    identity: str
    offset: int
    fingerprint: str


@dataclass
class Chunk:
    """What one read found: rows with the position of their line, and where it ended."""

    rows: list[tuple[Position, CelRow]] = field(default_factory=list)
    end: Position | None = None
    bad_lines: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # rotated remainders that were gone


def identity_of(path: Path) -> tuple[str, str] | None:
    """(device:inode, fingerprint of the first line), or None when there is no file."""
    try:
        status = path.stat()
        with path.open("rb") as stream:
            head = stream.read(_FINGERPRINT_BYTES).split(b"\n", 1)[0]
    except OSError:
        return None
    return f"{status.st_dev}:{status.st_ino}", hashlib.sha256(head).hexdigest()[:16]


def read_since(path: Path, position: Position | None) -> Chunk:
    """The CEL rows of ``path`` after ``position`` (None: the whole file)."""
    chunk = Chunk()
    current = identity_of(path)
    if current is None:
        chunk.end = position
        return chunk
    identity, fingerprint = current
    start = 0
    if position is not None and (position.identity, position.fingerprint) == current:
        size = path.stat().st_size
        start = position.offset if position.offset <= size else 0
    elif position is not None:
        _read_rotated(path, position, chunk)
    end = _read_file(path, Position(identity, start, fingerprint), chunk)
    chunk.end = end
    return chunk


def _read_rotated(path: Path, position: Position, chunk: Chunk) -> None:
    """The rest of the file that was at ``path`` before it was rotated away: renamed (the
    same identity) or copied before being truncated (``copytruncate``: the same first line)."""
    siblings = [p for p in sorted(path.parent.glob(path.name + "*")) if p != path]
    found = {sibling: identity_of(sibling) for sibling in siblings}
    renamed = [p for p, i in found.items() if i == (position.identity, position.fingerprint)]
    copied = [p for p, i in found.items() if i is not None and i[1] == position.fingerprint]
    for sibling in renamed or copied[-1:]:
        if sibling.stat().st_size >= position.offset:
            _read_file(sibling, position, chunk)
            return
    chunk.lost.append(f"{path}: the rotated file it was read from is gone ({position.identity})")


def _read_file(path: Path, start: Position, chunk: Chunk) -> Position:
    """Append the rows of the whole lines from ``start.offset``; the position after them."""
    offset = start.offset
    with path.open("rb") as stream:
        stream.seek(offset)
        data = stream.read()
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
