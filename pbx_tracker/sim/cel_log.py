"""The CEL file Asterisk writes for the calls the simulator plays: its lines and Master.csv.

The records come from `sim.cel_recorder` (Asterisk's CEL engine redone over the
calls' AMI events), each written as `sim.cel_record` shows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

from pbx_tracker.sim.cel_apps import DEFAULT_APPS
from pbx_tracker.sim.cel_record import Message
from pbx_tracker.sim.cel_recorder import CelRecorder

__all__ = ["CelFile", "cel_rows", "message_time", "write_cel"]


def message_time(message: Message, epoch: float = 0.0) -> float:
    """When a message happened: its ``Timestamp``, else ``epoch + _ts``, else ``epoch``."""
    for value, base in ((message.get("Timestamp"), 0.0), (message.get("_ts"), epoch)):
        if value:
            try:
                return base + float(value)
            except ValueError:
                continue
    return epoch


def cel_rows(
    messages: Sequence[Message],
    times: Sequence[float] | None = None,
    *,
    epoch: float = 0.0,
    apps: Collection[str] = DEFAULT_APPS,
) -> list[str]:
    """The CEL lines of an AMI stream (no newlines), in the order of the messages.

    ``times``: each message's epoch time; by default `message_time` with ``epoch``
    (the epoch of ``_ts == 0``: a capture's start, `IdAllocator.epoch` for `make_call`).
    """
    moments = times if times is not None else [message_time(m, epoch) for m in messages]
    recorder = CelRecorder(apps)
    return [
        record.line()
        for message, moment in zip(messages, moments, strict=True)
        for record in recorder.feed(message, moment)
    ]


class CelFile:
    """Master.csv as cel_custom writes it: the file is opened, appended and closed for
    every record, so renaming it (log rotation) loses nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, lines: Iterable[str]) -> int:
        """Append each line (and its newline); the number written."""
        count = 0
        for line in lines:
            with self.path.open("a", encoding="utf-8") as stream:
                stream.write(line + "\n")
            count += 1
        return count


def write_cel(
    path: str | Path,
    messages: Sequence[Message],
    times: Sequence[float] | None = None,
    *,
    epoch: float = 0.0,
    apps: Collection[str] = DEFAULT_APPS,
) -> int:
    """Append the CEL of ``messages`` to ``path`` (see `cel_rows`); the lines written."""
    return CelFile(path).append(cel_rows(messages, times, epoch=epoch, apps=apps))
