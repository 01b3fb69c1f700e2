"""Captured AMI traffic: the JSON Lines format of the shared traces, and raw AMI text.

JSON Lines: one AMI message per line, every value a string, header order kept,
plus an optional leading `"_ts"` (seconds since the first message of the
capture).  Raw text: `Key: Value` lines, a blank line between messages, an
optional `Asterisk Call Manager/x.y` banner first.

Absolute times come from the messages themselves: a `Timestamp:` header
(manager.conf `timestampevents = yes`) wins; otherwise the capture's start is
anchored on an `EventTV` header (security events such as `SuccessfulAuth` carry
one, with milliseconds) or on the epoch embedded in a channel's Uniqueid.
Raw text without `Timestamp:` headers has no clock at all: its times are
estimated from what the messages say about each other (`pbx_tracker.ami.clock`:
durations Asterisk reports, Uniqueid epochs, order) and marked `estimated`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pbx_tracker.ami.clock import estimate_times
from pbx_tracker.ami.messages import parse_message
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.state import uniqueid_epoch

_BANNER = re.compile(rb"^Asterisk Call Manager/[^\r\n]*\r?\n")


class CaptureError(ValueError):
    """A capture file that cannot be read; the message names the file and line."""


def read_capture(path: str | Path) -> Iterator[AmiEvent]:
    """Every message of a capture file, JSON Lines or raw AMI text."""
    data = Path(path).read_bytes()
    if data.lstrip()[:1] == b"{":
        yield from _timed(_json_lines(data, str(path)))
    else:
        yield from _timed(_raw_messages(data))


def _json_lines(data: bytes, name: str) -> Iterator[tuple[dict[str, str], float | None]]:
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise CaptureError(f"{name}:{number}: not a JSON line ({error.msg})") from None
        if not isinstance(item, dict):
            raise CaptureError(f"{name}:{number}: expected a JSON object")
        offset = item.pop("_ts", None)  # other "_" keys are notes, e.g. a dead letter's "_error"
        yield {k: _text(v) for k, v in item.items() if not k.startswith("_")}, _float(offset)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return "" if value is None else str(value)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_raw(data: bytes) -> Iterator[dict[str, str]]:
    """Split raw AMI bytes into header dicts; repeated headers are joined by newlines."""
    data = _BANNER.sub(b"", data, count=1)
    for block in re.split(rb"\r?\n\r?\n", data):
        fields = parse_message(block.decode("utf-8", errors="replace"))
        if fields:
            yield fields


def _raw_messages(data: bytes) -> Iterator[tuple[dict[str, str], float | None]]:
    for fields in parse_raw(data):
        yield fields, None


def _timed(messages: Iterable[tuple[dict[str, str], float | None]]) -> Iterator[AmiEvent]:
    items = list(messages)
    base = _capture_start(items)
    exact = [_exact_time(fields, offset, base) for fields, offset in items]
    if None not in exact:
        guessed: list[float] = []
    elif base is None and any(offset is not None for _, offset in items):
        guessed = _relative(items)
    else:
        guessed = estimate_times([fields for fields, _ in items], exact)
    for index, (fields, _) in enumerate(items):
        moment = exact[index]
        if moment is not None:
            yield AmiEvent(fields, moment)
        else:
            yield AmiEvent(fields, guessed[index], estimated=True)


def _exact_time(
    fields: Mapping[str, str], offset: float | None, base: float | None
) -> float | None:
    """A message's own `Timestamp:`, else its JSON `_ts` from a dated capture start."""
    stamp = _float(fields.get("Timestamp"))
    if stamp is not None:
        return stamp
    return base + offset if offset is not None and base is not None else None


def _relative(items: list[tuple[dict[str, str], float | None]]) -> list[float]:
    """JSON Lines whose start nothing dates: `_ts` as it is, never decreasing."""
    times: list[float] = []
    last = 0.0
    for _, offset in items:
        last = max(last, offset or 0.0)
        times.append(last)
    return times


def _capture_start(items: list[tuple[dict[str, str], float | None]]) -> float | None:
    """Epoch time of `_ts == 0`, from the first message that dates itself."""
    for fields, offset in items:
        anchor = _anchor(fields)
        if offset is not None and anchor is not None:
            return anchor - offset
    return None


def _anchor(fields: Mapping[str, str]) -> float | None:
    """A lower bound of this message's time found in its own headers."""
    event_tv = fields.get("EventTV")
    if event_tv:
        try:
            return datetime.strptime(event_tv, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        except ValueError:
            pass
    if fields.get("Event") == "Newchannel":
        return uniqueid_epoch(fields.get("Uniqueid", ""))
    return None


class CaptureWriter:
    """Writes AMI messages in the JSON Lines capture format, flushing each line."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._start: float | None = None
        self.count = 0

    def write(self, event: AmiEvent) -> None:
        if self._start is None:
            self._start = event.time
        line = {"_ts": round(event.time - self._start, 6), **event.fields}
        self._stream.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._stream.flush()
        self.count += 1
