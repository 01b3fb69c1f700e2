"""Recovering a day from Asterisk's CEL log: CEL lines and calls per second, next to the
same calls correlated from their AMI events.

    .venv/bin/python benchmarks/cel_recovery.py [--copies 32] [--every 1] [--runs 3]

The busy day of `pbx_tracker.sim.busy_day` (every capture of tests/data/asterisk-traces,
ours and FreePBX's, repeated ``--copies`` times, a new call every ``--every`` seconds)
is written as JSON Lines (`_ts`) and as the CEL file Asterisk would have logged for it
(`pbx_tracker.sim.cel_log.cel_rows` at the real times, the shipped cel_custom columns),
with the FreePBX capture's config for the topology.  Measured, median of ``--runs``:

1. `read_capture` + `Correlator.feed_all` on the JSON Lines file: the baseline, what
   the live path does with the same calls;
2. reading the CEL file (`read_since`, the whole file in one read): CEL lines/s, MiB/s;
3. recovering the rows already read (`recover`: the finished calls rebuilt through a
   correlator of their own), then reading and recovering: CEL lines/s and calls/s; the
   same calls (Linkedids) as the AMI path gives, none failed, none going or given up at
   the day's end;
4. the daemon's whole recovery (`CelRecovery.run` from the file's start, in `READ_LIMIT` parts):
   each call labelled as the daemon labels it and handed to a real call writer on a
   fresh SQLite database, each part waited for until stored (how long each waited,
   next to the daemon's limit).  ONE run, not a median (it needs a fresh database; the
   migrations and the writer's start are not timed).

Also: the CEL file's bytes and lines per call, with a week of this day's traffic as a
stated extrapolation (the same calls at the same rate; not measured).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from raw_clock import TRACES, day_from_arguments, median_seconds, write_both

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.attribution.sources import CallLabeler
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.cel.reading import READ_LIMIT, Chunk, Position, identity_of, read_since
from pbx_tracker.cel.recovery import Recovered, recover
from pbx_tracker.cel.service import CelRecovery
from pbx_tracker.config import load_settings
from pbx_tracker.daemon import CEL_STORE_SECONDS
from pbx_tracker.logging import configure_logging
from pbx_tracker.pipeline import CallPipeline, open_writer
from pbx_tracker.replay import topology_of
from pbx_tracker.sim.cel_log import cel_rows
from pbx_tracker.store.migrate import upgrade_to_head

if TYPE_CHECKING:
    from pbx_tracker.config import Settings

MiB = 2**20
STORE_WAIT = 3600.0  # `stored` waits for everything (the daemon: CEL_STORE_SECONDS a part)


class MemoryPositions:
    """The read position in memory (the daemon keeps it in the database)."""

    def __init__(self, start: Position) -> None:
        self.position: Position | None = start
        self.saved = 0

    async def load(self) -> Position | None:
        return self.position

    async def save(self, position: Position | None) -> None:
        self.position, self.saved = position, self.saved + 1


def settings_in(folder: Path) -> Settings:
    """The FreePBX capture's config, its database, spill and dead letters in ``folder``."""
    return load_settings(
        TRACES / "freepbx" / "pbx-tracker.yaml",
        environ={
            "PBX_TRACKER_DATABASE__URL": f"sqlite:///{folder / 'calls.sqlite3'}",
            "PBX_TRACKER_DATABASE__SPILL_PATH": str(folder / "spill.jsonl"),
            "PBX_TRACKER_CALLS__DEAD_LETTERS": str(folder / "dead-letters.jsonl"),
            "PBX_TRACKER_CEL__FILE": str(folder / "Master.csv"),
        },
    )


def start_of(path: Path) -> Position:
    """The position of the file's first line (a position saved by an earlier read)."""
    current = identity_of(path)
    assert current is not None
    return Position(current[0], 0, current[1])


class StoreRun:
    """What one recovery into the database took."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.stored = 0
        self.untracked = 0
        self.parts = 0
        self.waits: list[float] = []  # each part's wait until stored


async def recover_into_database(settings: Settings, start: Position) -> StoreRun:
    """`CelRecovery.run` from ``start``, the calls labelled and stored as the daemon does."""
    await asyncio.to_thread(upgrade_to_head, settings.database.url)
    run = StoreRun()
    labeler = CallLabeler(settings.directory, settings.calls.target_seconds)

    def on_written(record: CallRecord, new: bool) -> None:
        run.stored += 1

    async with open_writer(settings, on_written=on_written) as writer:
        pipeline = CallPipeline([labeler.label], writer.submit)  # the daemon's, without logs

        def finished(record: CallRecord) -> None:
            if pipeline.finished(record) is None:
                run.untracked += 1

        async def stored() -> bool:  # Daemon._stored, with a wait long enough for a day
            waited = time.perf_counter()
            left = await writer.drain(STORE_WAIT)
            run.waits.append(time.perf_counter() - waited)
            return left == 0

        positions = MemoryPositions(start)
        recovery = CelRecovery(
            settings.cel, topology_of(settings), str(settings.recordings_dir), positions,
            finished, stored,
        )  # fmt: skip
        began = time.perf_counter()
        going = await recovery.run()
        run.seconds = time.perf_counter() - began
        assert recovery.state.problem is None, recovery.state.problem
        assert not going, f"{len(going)} calls still going"
        run.parts = positions.saved
    return run


def main() -> None:
    args, messages, real = day_from_arguments(__doc__.split("\n\n")[0])
    configure_logging("error", "json")  # not a line per part and per call on the console
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        settings = settings_in(folder)
        topology, monitor_dir = topology_of(settings), str(settings.recordings_dir)
        longest = settings.cel.longest_call_hours * 3600
        capture, cel = folder / "day.jsonl", settings.cel.file
        write_both(folder, messages, real)
        began = time.perf_counter()
        lines = cel_rows(messages, times=real)
        derived = time.perf_counter() - began
        cel.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        size = cel.stat().st_size

        records = Correlator(topology).feed_all(read_capture(capture))
        calls, linkedids = len(records), {record.linkedid for record in records}
        labeler = CallLabeler(settings.directory, settings.calls.target_seconds)
        untracked = sum(1 for record in records if labeler.label(record) is None)
        jsonl = capture.stat().st_size
        print(
            f"{len(messages):,} AMI messages ({jsonl / MiB:.0f} MiB JSON Lines), {calls:,} calls;"
            f" CEL: {len(lines):,} lines, {size / MiB:.1f} MiB (derived in {derived:.1f} s)"
        )
        print(
            f"CEL per call: {size / calls:,.0f} bytes, {len(lines) / calls:.1f} lines"
            f" (AMI: {jsonl / calls:,.0f} bytes, {len(messages) / calls:.0f} messages)"
        )

        def ami() -> object:
            correlator = Correlator(topology)
            found = correlator.feed_all(read_capture(capture))
            assert correlator.events_failed == 0 and len(found) == calls
            return found

        def read() -> Chunk:
            chunk = read_since(cel, None, limit=size)  # the whole file at once
            assert len(chunk.rows) == len(lines) and not chunk.bad_lines and not chunk.more
            return chunk

        chunk = read()

        def recover_only() -> Recovered:
            return recover(chunk, topology, monitor_dir, longest_call=longest)

        def read_and_recover() -> Recovered:
            result = recover(read(), topology, monitor_dir, longest_call=longest)
            assert {record.linkedid for record in result.records} == linkedids
            assert len(result.records) == calls, (len(result.records), calls)
            assert result.failed == 0 and not result.going and not result.given_up
            return result

        for label, work, items, unit, mib in (
            ("AMI: read + correlate", ami, len(messages), "events", jsonl / MiB),
            ("CEL: read", read, len(lines), "lines", size / MiB),
            ("CEL: recover (read)", recover_only, len(lines), "lines", size / MiB),
            ("CEL: read + recover", read_and_recover, len(lines), "lines", size / MiB),
        ):
            seconds = median_seconds(work, args.runs)
            print(
                f"{label:22} {items / seconds:9,.0f} {unit + '/s':8}"
                f" {calls / seconds:7,.0f} calls/s {mib / seconds:6.1f} MiB/s  ({seconds:.2f} s)"
            )

        run = asyncio.run(recover_into_database(settings, start_of(cel)))
        assert (run.stored, run.untracked) == (calls - untracked, untracked), run.__dict__
        print(
            f"{'CEL: daemon + SQLite':22} {len(lines) / run.seconds:9,.0f} lines/s "
            f" {calls / run.seconds:7,.0f} calls/s {size / MiB / run.seconds:6.1f} MiB/s"
            f"  ({run.seconds:.2f} s, one run)"
        )
        print(
            f"  {run.parts} part(s) of at most {READ_LIMIT // MiB} MiB; waited until stored:"
            f" {', '.join(f'{wait:.1f} s' for wait in run.waits)}"
            f" (the daemon waits {CEL_STORE_SECONDS:.0f} s a part, then saves no position)"
        )
        print(
            f"a day of {calls:,} calls recovered in {run.seconds:.1f} s"
            f" ({run.stored:,} stored; {run.untracked:,} untracked by the config's labels,"
            " as on the AMI path)"
        )
        week = size * 7
        print(
            f"extrapolation, not measured: a week of this day is {week / MiB:,.0f} MiB of CEL,"
            f" {week / READ_LIMIT:.0f} parts, about {run.seconds * 7 / 60:.1f} min to recover"
            " at this run's rate"
        )


if __name__ == "__main__":
    main()
