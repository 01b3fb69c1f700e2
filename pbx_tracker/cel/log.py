"""CEL records as `cel_custom` writes them (config/asterisk/cel_custom_pbx_tracker.conf).

One CSV line per record, twenty double-quoted columns in the order of the
shipped mapping: eventtype, eventtime, caller-ID name, number, ANI, RDNIS,
DNID, exten, context, channel, application, its data, AMA flags, account
code, Uniqueid, Linkedid, bridge peer, userfield, user event type, extra
(JSON).  The time is ``<epoch>.<microseconds>``, or a date-time when
`cel.conf` sets a ``dateformat`` (read in the local time zone of this
machine, which is Asterisk's when pbx-tracker runs beside it).  A line that
cannot be read is reported in `CelLog.bad_lines` and skipped.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "COLUMNS",
    "CelLog",
    "CelRow",
    "is_cel_file",
    "looks_like_cel",
    "parse_extra",
    "parse_line",
    "parse_time",
]

COLUMNS = 20
_EVENT = re.compile(r"[A-Z][A-Z_]+")
_SNIFFED_LINES = 5
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f%z")


@dataclass(frozen=True, slots=True)
class CelRow:
    """One CEL record (the columns pbx-tracker reads)."""

    event: str
    time: float
    caller_name: str
    caller_number: str
    exten: str
    context: str
    channel: str
    app: str
    app_data: str
    uniqueid: str
    linkedid: str
    peer: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_columns(cls, columns: list[str]) -> CelRow:
        """ValueError when the line is not a CEL record."""
        if len(columns) < COLUMNS or not _EVENT.fullmatch(columns[0]):
            raise ValueError(f"not a CEL record ({len(columns)} columns)")
        if not columns[14] or not columns[15]:
            raise ValueError("no Uniqueid or Linkedid")
        return cls(
            event=columns[0],
            time=parse_time(columns[1]),
            caller_name=columns[2],
            caller_number=columns[3],
            exten=columns[7],
            context=columns[8],
            channel=columns[9],
            app=columns[10],
            app_data=columns[11],
            uniqueid=columns[14],
            linkedid=columns[15],
            peer=columns[16],
            extra=parse_extra(columns[19]),
        )


def parse_line(text: str) -> CelRow | None:
    """One CEL line as a row; None for a blank line; ValueError when it is not a record."""
    columns = next(csv.reader([text]), [])
    if not any(columns):
        return None
    return CelRow.from_columns(columns)


def parse_time(text: str) -> float:
    """``1796615844.746223`` or a date-time (local time unless it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        pass
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), pattern).timestamp()
        except ValueError:
            continue
    raise ValueError(f"unreadable event time {text[:40]!r}")


def parse_extra(text: str | None) -> dict[str, Any]:
    """The record's extra JSON as a dict (empty when there is none or it is not JSON)."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def looks_like_cel(head: bytes) -> bool:
    """True when one of the first lines of ``head`` is a CEL record of the shipped mapping
    (a first line that is damaged does not hide a CEL log)."""
    text = head.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if len(lines) > 1 and not text.endswith("\n"):
        lines.pop()  # cut short by the read
    for line in [line for line in lines if line.strip()][:_SNIFFED_LINES]:
        columns = next(csv.reader([line]), [])
        if len(columns) >= COLUMNS and _EVENT.fullmatch(columns[0]) is not None:
            return True
    return False


@dataclass
class CelLog:
    """Reads CEL lines; what cannot be read is counted and kept for the report, never fatal."""

    source: str = "CEL"
    bad_lines: list[str] = field(default_factory=list)

    def rows(self, lines: Iterable[str], first_line: int = 1) -> Iterator[CelRow]:
        """The records of ``lines``, each line on its own (cel_custom writes one record a
        line, so a line torn by a crash costs itself only, never the next one)."""
        for number, line in enumerate(lines, first_line):
            try:
                row = parse_line(line)
            except ValueError as error:
                self.bad_lines.append(f"{self.source}:{number}: {error}")
                continue
            if row is not None:
                yield row


def is_cel_file(path: str | Path) -> bool:
    """True when the file at ``path`` starts with a CEL record (told by content)."""
    with Path(path).open("rb") as stream:
        return looks_like_cel(stream.read(8192))
