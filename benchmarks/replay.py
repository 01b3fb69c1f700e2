"""Replay speed: AMI events per second through the correlator, next to reading the
same capture alone.

    .venv/bin/python benchmarks/replay.py [--copies 32] [--every 1] [--runs 3]

The busy day of `pbx_tracker.sim.busy_day` (every capture of tests/data/asterisk-traces, ours
and FreePBX's: IVR, ring groups and queue members as Local channels, follow-me to
mobiles with call confirmation, transfers; all events of an unfiltered AMI user,
copies overlapping) is written as JSON Lines and measured, median of ``--runs``:

1. reading it (`read_capture`): the baseline;
2. correlating the events already read, the correlator alone;
3. reading and correlating (`Correlator.feed_all`), what `pbx-tracker run` does
   with each event after parsing it;
4. what `pbx-tracker replay --dry-run` does before printing: correlating,
   labelling with the FreePBX capture's config, first-time callers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from raw_clock import TRACES, day_from_arguments, median_seconds, write_both

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.config import load_settings
from pbx_tracker.replay import replay_files, topology_of


def main() -> None:
    args, messages, real = day_from_arguments(__doc__.split("\n\n")[0])
    settings = load_settings(TRACES / "freepbx" / "pbx-tracker.yaml", environ={})
    with tempfile.TemporaryDirectory() as name:
        capture = Path(name) / "day.jsonl"
        write_both(Path(name), messages, real)
        records = Correlator(topology_of(settings)).feed_all(read_capture(capture))
        print(f"{len(messages):,} AMI messages, {len(records):,} call records")

        events = list(read_capture(capture))

        def read() -> object:
            return sum(1 for _ in read_capture(capture))

        def correlate_only() -> object:
            return Correlator(topology_of(settings)).feed_all(events)

        def correlate() -> object:
            correlator = Correlator(topology_of(settings))
            found = correlator.feed_all(read_capture(capture))
            assert correlator.events_failed == 0 and len(found) == len(records)
            return found

        def replay() -> object:
            return replay_files([capture], settings, lambda record: None)

        for label, work in (
            ("read the capture", read),
            ("correlate (read)", correlate_only),
            ("read + correlate", correlate),
            ("replay (+ labels)", replay),
        ):
            seconds = median_seconds(work, args.runs)
            rate, calls = len(messages) / seconds, len(records) / seconds
            print(f"{label:18} {rate:10,.0f} events/s {calls:8,.0f} calls/s  ({seconds:.2f} s)")


if __name__ == "__main__":
    main()
