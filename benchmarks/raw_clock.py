"""Reading raw AMI text with its estimated clock: messages per second, next to the same
messages read as JSON Lines (receive times in `_ts`) and to parsing the raw text alone.

    .venv/bin/python benchmarks/raw_clock.py [--copies 32] [--every 1] [--runs 3]

Every capture of tests/data/asterisk-traces (ours and FreePBX's: 16 calls, IVR,
ring groups, queues, follow-me, transfers) is repeated ``--copies`` times, a new
call every ``--every`` seconds so that calls overlap, each copy with its own
Uniqueids and channel names and its times moved by whole seconds (Uniqueid
epochs, Cdr times, queue members' LastCall), merged by real receive time: a busy
PBX's day (32 copies: about 200,000 messages).  Written once as JSON Lines with
`_ts` and once as raw text with no times, then measured, median of ``--runs``:

1. `read_capture` on the JSON Lines file: the baseline, every time given;
2. `parse_raw` on the raw text alone: the messages, no times;
3. `read_capture` on the raw text: parsing plus the clock (`ami.clock`);

and how far the clock's times are from the real ones: each call event's time
from its call's first Newchannel (median, 95th percentile, maximum).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pbx_tracker.ami.capture import parse_raw, read_capture
from pbx_tracker.sim.busy_day import busy_day, offset_errors, summary
from pbx_tracker.sim.wire import encode_message

TRACES = Path(__file__).parents[1] / "tests" / "data" / "asterisk-traces"


def write_both(folder: Path, messages: Sequence[Mapping[str, str]], real: Sequence[float]) -> None:
    start = real[0]
    with (folder / "day.jsonl").open("w", encoding="utf-8") as out:
        for fields, moment in zip(messages, real, strict=True):
            out.write(json.dumps({"_ts": round(moment - start, 6), **fields}) + "\n")
    raw = b"".join(encode_message(fields) for fields in messages)
    (folder / "day.raw.txt").write_bytes(b"Asterisk Call Manager/7.0.3\r\n" + raw)


def median_seconds(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def day_from_arguments(
    description: str,
) -> tuple[argparse.Namespace, list[dict[str, str]], list[float]]:
    """The command line (--copies, --every, --runs) and the busy day of every capture."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--copies", type=int, default=32)
    parser.add_argument("--every", type=int, default=1, help="seconds between new calls")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    paths = sorted([*TRACES.glob("*.jsonl"), *TRACES.glob("freepbx/*.jsonl")])
    messages, real = busy_day(paths, args.copies, args.every)
    return args, messages, real


def main() -> None:
    args, messages, real = day_from_arguments(__doc__.split("\n\n")[0])
    calls = sum(
        1 for m in messages if m.get("Event") == "Newchannel" and m["Uniqueid"] == m["Linkedid"]
    )
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_both(folder, messages, real)
        raw = (folder / "day.raw.txt").read_bytes()
        print(f"{len(messages):,} AMI messages, {calls:,} calls ({len(raw) / 2**20:.0f} MiB raw)")
        for label, work in (
            ("JSON Lines, _ts", lambda: sum(1 for _ in read_capture(folder / "day.jsonl"))),
            ("raw, parse only", lambda: sum(1 for _ in parse_raw(raw))),
            ("raw + clock", lambda: sum(1 for _ in read_capture(folder / "day.raw.txt"))),
        ):
            seconds = median_seconds(work, args.runs)
            print(f"{label:16} {len(messages) / seconds:10,.0f} messages/s  ({seconds:.2f} s)")
        times = [event.time for event in read_capture(folder / "day.raw.txt")]
    errors = offset_errors(messages, real, times)
    print(f"clock error over {len(errors):,} call events: {summary(errors)}")


if __name__ == "__main__":
    main()
