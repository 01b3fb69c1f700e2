"""What a CEL read gives back: the finished calls rebuilt, the ones still going, and
where to start the next read.

A call is finished in CEL when its Linkedid's LINKEDID_END is logged.  Its
rows are told as AMI events (`pbx_tracker.cel.events`) and judged by a
correlator of their own with the daemon's topology, so a recovered call gets
the same record as a call heard live (``recovered_from`` says ``cel``).  A
call without LINKEDID_END yet is still going (the live listener has it, or a
later read will): its rows are kept for that, and the next read starts at its
first line.  One whose last row is older than ``longest_call`` seconds before
the newest row read will never end (Asterisk stopped mid-call): it is given
up, so the read position cannot stay behind it for ever.  So is one of which
Asterisk had no channel left at a reconnect (``live``, the Linkedids of its
channel list then, taken at ``live_at``) and that logged nothing for
``GONE_AFTER`` seconds before it (so a call whose end is being written is not
taken for one cut): after a crash of Asterisk the reads go on at the next
reconnect, not after ``longest_call``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

from pbx_tracker.calls.correlator import Correlator, Topology
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.cel.events import ami_events
from pbx_tracker.cel.log import CelRow
from pbx_tracker.cel.reading import Chunk, Position

__all__ = ["RECOVERED_FROM_CEL", "Recovered", "recover"]

RECOVERED_FROM_CEL = "cel"
GONE_AFTER = 60.0  # seconds without a row, no channel left: a call Asterisk lost


@dataclass
class Recovered:
    """The outcome of one read."""

    records: list[CallRecord] = field(default_factory=list)
    going: dict[str, list[CelRow]] = field(default_factory=dict)  # Linkedid → rows so far
    given_up: list[str] = field(default_factory=list)
    position: Position | None = None
    lines: int = 0
    failed: int = 0


def recover(
    chunk: Chunk,
    topology: Topology,
    monitor_dir: str,
    *,
    longest_call: float,
    live: Collection[str] | None = None,
    live_at: float = 0.0,
) -> Recovered:
    """Rebuild the calls ``chunk`` finishes; keep the rest for the next read."""
    calls: dict[str, list[tuple[int, CelRow]]] = defaultdict(list)
    for index, (_, row) in enumerate(chunk.rows):
        calls[row.linkedid].append((index, row))
    newest = max((row.time for _, row in chunk.rows), default=0.0)
    done: list[CelRow] = []
    result = Recovered(lines=len(chunk.rows))
    first_kept: int | None = None
    for linkedid, rows in calls.items():
        if any(row.event == "LINKEDID_END" for _, row in rows):
            done.extend(row for _, row in rows)
        elif newest - rows[-1][1].time > longest_call or (
            live is not None and linkedid not in live and live_at - rows[-1][1].time > GONE_AFTER
        ):
            result.given_up.append(linkedid)
        else:
            result.going[linkedid] = [row for _, row in rows]
            first_kept = rows[0][0] if first_kept is None else min(first_kept, rows[0][0])
    correlator = Correlator(topology)
    records = correlator.feed_all(ami_events(done, monitor_dir))
    result.records = [record.replace(recovered_from=RECOVERED_FROM_CEL) for record in records]
    result.failed = correlator.events_failed
    result.position = chunk.end if first_kept is None else chunk.rows[first_kept][0]
    return result
