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
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from pbx_tracker.ami.capture import parse_raw, read_capture
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.sim.asterisk import encode_message

TRACES = Path(__file__).parents[1] / "tests" / "data" / "asterisk-traces"
CALL_EVENTS = {
    "BridgeEnter", "BridgeLeave", "DialBegin", "DialEnd", "Hangup", "QueueCallerJoin",
    "QueueCallerLeave", "QueueCallerAbandon", "AgentConnect",
}  # fmt: skip
_ID = re.compile(r"^(.*?)(\d{9,11})\.(\d+)$")
_CDR_TIME = "%Y-%m-%d %H:%M:%S"
_CHANNEL_ID = re.compile(r"-([0-9a-zA-Z]+)((?:;[12])?)$")  # IAX2/101-1228, Local/…-0000000e;1


def busy_day(copies: int, every: int) -> tuple[list[dict[str, str]], list[float]]:
    """The repeated captures merged by real receive time: messages and those times."""
    paths = sorted([*TRACES.glob("*.jsonl"), *TRACES.glob("freepbx/*.jsonl")])
    captures = [list(read_capture(path)) for path in paths]
    items: list[tuple[float, int, dict[str, str]]] = []
    number = 0
    for _ in range(copies):
        for events in captures:
            shift = every * number
            for event in events:
                if number and event.name in ("", "FullyBooted", "SuccessfulAuth"):
                    continue  # one login is enough
                items.append((event.time + shift, len(items), moved(event.fields, shift, number)))
            number += 1
    items.sort()
    return [fields for _, _, fields in items], [moment for moment, _, _ in items]


def moved(fields: Mapping[str, str], shift: int, number: int) -> dict[str, str]:
    """A message as copy `number` of its call, `shift` whole seconds later, would read it."""
    result = {}
    for key, value in fields.items():
        match = _ID.match(value)
        if match and key.lower().endswith(("uniqueid", "linkedid")):
            sequence = int(match.group(3)) + 1000 * number
            value = f"{match.group(1)}{int(match.group(2)) + shift}.{sequence}"
        elif key.endswith("Channel") and value:
            value = _CHANNEL_ID.sub(lambda m: f"-{m.group(1)}x{number}{m.group(2)}", value)
        elif key in ("StartTime", "AnswerTime", "EndTime") and value:
            moment = datetime.strptime(value, _CDR_TIME) + timedelta(seconds=shift)
            value = moment.strftime(_CDR_TIME)
        elif key in ("LastCall", "LastPause", "LoginTime") and value not in ("", "0"):
            value = str(int(value) + shift)
        result[key] = value
    return result


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


def offset_errors(events: Sequence[AmiEvent], real: Sequence[float]) -> list[float]:
    """Seconds off of each call event's time from its call's first Newchannel."""
    starts: dict[str, int] = {}
    errors = []
    for index, event in enumerate(events):
        linkedid = event.get("Linkedid")
        if event.name == "Newchannel" and event.get("Uniqueid") == linkedid:
            starts[linkedid] = index
        start = starts.get(linkedid)
        if start is not None and event.name in CALL_EVENTS:
            guess = event.time - events[start].time
            errors.append(abs(guess - (real[index] - real[start])))
    return sorted(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=32)
    parser.add_argument("--every", type=int, default=1, help="seconds between new calls")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    messages, real = busy_day(args.copies, args.every)
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
        errors = offset_errors(list(read_capture(folder / "day.raw.txt")), real)
    p95 = errors[int(0.95 * len(errors))]
    print(
        f"clock error over {len(errors):,} call events: median {statistics.median(errors):.3f} s,"
        f" 95% {p95:.3f} s, max {errors[-1]:.3f} s"
    )


if __name__ == "__main__":
    main()
