"""`pbx-tracker replay`: captured AMI traffic through the same correlator as the daemon."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.attribution.sources import CallLabeler, FirstTimeCallers
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.calls.topology import Topology
from pbx_tracker.cel.events import ami_events
from pbx_tracker.cel.log import CelLog, is_cel_file
from pbx_tracker.phones import canonical_number, is_dialable
from pbx_tracker.pipeline import CallPipeline, open_writer

if TYPE_CHECKING:
    from pbx_tracker.config import Manager, Settings


def topology_of(settings: Settings) -> Topology:
    """What the correlator needs from the config: contexts, the DID variable, Local-channel
    patterns, how phone numbers read, and whose devices, extensions and external numbers
    are whose.  Without managers, Topology's defaults (a device named by digits is that
    extension's manager)."""
    region = settings.phone_region

    def phone_number(text: str) -> str | None:
        number = canonical_number(text, region)
        return number if is_dialable(number) else None

    def extension_of(lookup: Callable[[str], Manager | None]) -> Callable[[str], str | None]:
        def extension(text: str) -> str | None:
            manager = lookup(text)
            return manager.extension if manager is not None else None

        return extension

    topology = Topology(
        node=settings.node,
        inbound_contexts=frozenset(settings.calls.inbound_contexts),
        did_variable=settings.calls.did_variable,
        phone_number=phone_number,
        local_channels=tuple(settings.calls.local_channels),
    )
    if not settings.managers:
        return topology
    return replace(
        topology,
        manager_for_channel=extension_of(settings.manager_for_channel),
        manager_for_extension=extension_of(settings.manager_for_extension),
        manager_for_number=extension_of(settings.manager_for_number),
    )


@dataclass
class ReplaySummary:
    """What a replay went through; ``failed``: the AMI messages the correlator could not
    apply, counted by event and error (``"Hangup: KeyError"``); ``bad_lines``: CEL lines
    that could not be read (``file:line: why``); ``cel_rows``: the CEL records read
    (their calls are told to the correlator as ``events``); ``empty``: files in which
    neither an AMI message nor a CEL record was found."""

    files: int = 0
    events: int = 0
    cel_rows: int = 0
    empty: list[str] = field(default_factory=list)
    records: int = 0
    untracked: int = 0
    unfinished: dict[str, int] = field(default_factory=dict)
    failed: Counter[str] = field(default_factory=Counter)
    bad_lines: list[str] = field(default_factory=list)


def replay_files(
    paths: Iterable[Path],
    settings: Settings,
    emit: Callable[[CallRecord], None],
    *,
    first_time: FirstTimeCallers | None = None,
) -> ReplaySummary:
    """Correlate each file (one capture each) and take its calls down the daemon's
    pipeline: labels (``first_time``: a dry run's first-time callers), then `emit`."""
    labeler = CallLabeler(settings.directory, settings.calls.target_seconds)
    labels = [labeler.label] if first_time is None else [labeler.label, first_time.mark]
    pipeline = CallPipeline(labels, emit)
    summary = ReplaySummary()
    for path in paths:
        correlator = Correlator(topology_of(settings))
        records = _correlate(correlator, path, summary, str(settings.recordings_dir))
        summary.files += 1
        summary.events += correlator.events_seen
        if correlator.events_seen == 0:
            summary.empty.append(str(path))
        if correlator.calls_in_progress:
            summary.unfinished[str(path)] = correlator.calls_in_progress
        summary.records += sum(pipeline.finished(record) is not None for record in records)
    summary.untracked = sum(labeler.untracked.values())
    return summary


def _correlate(
    correlator: Correlator, path: Path, summary: ReplaySummary, monitor_dir: str
) -> list[CallRecord]:
    """The records of one capture (AMI or CEL); what could not be applied or read is
    counted in the summary."""
    records: list[CallRecord] = []
    events, recovered_from = _events_of(path, summary, monitor_dir)
    for event in events:
        records.extend(correlator.feed(event))
        summary.failed.update(f"{f.event.name}: {f.error}" for f in correlator.take_failures())
    if recovered_from is not None:
        records = [record.replace(recovered_from=recovered_from) for record in records]
    return records


def _events_of(
    path: Path, summary: ReplaySummary, monitor_dir: str
) -> tuple[Iterable[AmiEvent], str | None]:
    """The AMI events of a capture file, or of a CEL log (told by content: then "cel")."""
    if not is_cel_file(path):
        return read_capture(path), None
    log = CelLog(str(path))
    with path.open(encoding="utf-8", errors="replace", newline="") as lines:
        rows = list(log.rows(lines))
    summary.cel_rows += len(rows)
    summary.bad_lines.extend(log.bad_lines)
    return ami_events(rows, monitor_dir), "cel"


def record_json_line(record: CallRecord) -> str:
    return json.dumps(record.to_json(), ensure_ascii=False)


def replay_to_stdout(paths: Iterable[Path], settings: Settings) -> ReplaySummary:
    """`--dry-run`: one JSON record per line on stdout, nothing written anywhere."""
    return replay_files(
        paths,
        settings,
        lambda record: print(record_json_line(record), flush=True),
        first_time=FirstTimeCallers(),
    )


async def replay_into_database(paths: Iterable[Path], settings: Settings) -> ReplaySummary:
    """Write the records like the daemon does; replaying a file twice changes nothing."""
    async with open_writer(settings) as writer:
        summary = replay_files(paths, settings, writer.submit)
    return summary
