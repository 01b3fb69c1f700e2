"""Reading Asterisk's CEL file bit by bit, as the daemon does at each start and reconnect:
each call once, none lost to rotation, truncation, a line still being written, or a
call still going."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pbx_tracker.calls.correlator import Topology
from pbx_tracker.cel.reading import Position, end_of, read_since
from pbx_tracker.cel.recovery import Recovered, recover
from traces import TRACES

CEL = TRACES / "cel"
TOPOLOGY = Topology(node="pbx")
HOUR = 3600.0


def lines_of(stem: str) -> list[str]:
    return (CEL / f"{stem}.cel.csv").read_text(encoding="utf-8").splitlines(keepends=True)


def write(path: Path, lines: list[str], mode: str = "w") -> None:
    with path.open(mode, encoding="utf-8") as stream:
        stream.writelines(lines)


def recovered(path: Path, position: Position | None) -> tuple[list[str], Position | None]:
    """(callers of the calls recovered, where the next read starts)."""
    result = recover(read_since(path, position), TOPOLOGY, "/monitor", longest_call=HOUR)
    return sorted(r.caller or "" for r in result.records), result.position


def test_each_call_is_read_once_across_reads(tmp_path: Path) -> None:
    """Calls logged between two reads are recovered by the second read only."""
    log = tmp_path / "Master.csv"
    write(log, lines_of("01_answered_simple"))
    first, position = recovered(log, None)
    write(log, lines_of("03_missed_no_answer"), "a")
    second, position = recovered(log, position)
    third, _ = recovered(log, position)
    assert (first, second, third) == (["79161234501"], ["79161234503"], [])


def test_a_line_still_being_written_waits_for_the_next_read(tmp_path: Path) -> None:
    """Half a line at the end of the file is neither read nor lost."""
    log = tmp_path / "Master.csv"
    lines = lines_of("01_answered_simple")
    write(log, [*lines[:-1], lines[-1][:20]])
    first, position = recovered(log, None)
    write(log, [lines[-1][20:]], "a")
    second, _ = recovered(log, position)
    assert (first, second) == ([], ["79161234501"])


def test_a_call_still_going_is_recovered_when_it_ends(tmp_path: Path) -> None:
    """A call without its LINKEDID_END yet is kept; the next read starts at its first line,
    and calls logged before it are not recovered twice."""
    log = tmp_path / "Master.csv"
    going = lines_of("04_missed_caller_abandon")
    write(log, [*lines_of("01_answered_simple"), *going[:10]])
    first, position = recovered(log, None)
    write(log, going[10:], "a")
    second, _ = recovered(log, position)
    assert (first, second) == (["79161234501"], ["79161234504"])


def test_a_call_that_never_ended_does_not_hold_the_reading_back(tmp_path: Path) -> None:
    """An unfinished call older than the longest call (Asterisk stopped mid-call) is given
    up: the reads go on past it."""
    log = tmp_path / "Master.csv"
    write(log, [*lines_of("04_missed_caller_abandon")[:10], *lines_of("11_concurrent")])
    result = recover(read_since(log, None), TOPOLOGY, "/monitor", longest_call=30.0)
    assert result.given_up == ["1796615884.6"]
    assert result.position == read_since(log, None).end
    assert len(result.records) == 5


def test_a_rotated_file_is_read_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    """logrotate renames the file and Asterisk starts a new one: the calls logged in the old
    file after the last read, and those in the new one, each once."""
    log = tmp_path / "Master.csv"
    write(log, lines_of("01_answered_simple"))
    _, position = recovered(log, None)
    write(log, lines_of("03_missed_no_answer"), "a")
    os.rename(log, tmp_path / "Master.csv.1")
    write(log, lines_of("05_busy_all"))
    callers, _ = recovered(log, position)
    assert callers == ["79161234503", "79161234505"]


def test_a_rotated_file_that_is_gone_is_reported(tmp_path: Path) -> None:
    """The old file was deleted before its end was read: the loss is said, the new file read."""
    log = tmp_path / "Master.csv"
    write(log, lines_of("01_answered_simple"))
    position = read_since(log, None).end
    log.unlink()
    write(log, lines_of("05_busy_all"))
    chunk = read_since(log, position)
    assert len(chunk.lost) == 1 and "gone" in chunk.lost[0]
    assert {row.linkedid for _, row in chunk.rows} == {"1796615892.9"}


def test_a_file_copied_and_truncated_is_read_from_the_copy_then_the_start(
    tmp_path: Path,
) -> None:
    """logrotate's copytruncate copies the file and empties it under the same name: the
    calls logged in it after the last read are read from the copy, then the new lines."""
    log = tmp_path / "Master.csv"
    write(log, lines_of("01_answered_simple"))
    _, position = recovered(log, None)
    write(log, lines_of("06_ringgroup"), "a")
    shutil.copy(log, tmp_path / "Master.csv.1")
    write(log, lines_of("03_missed_no_answer"))  # the same file, emptied and written anew
    callers, _ = recovered(log, position)
    assert callers == ["79161234503", "79161234506"]


def test_unreadable_lines_are_reported_with_their_place(tmp_path: Path) -> None:
    """A line that is no CEL record is reported by its byte offset and skipped."""
    log = tmp_path / "Master.csv"
    lines = lines_of("01_answered_simple")
    write(log, [lines[0], "garbage line\n", *lines[1:]])
    chunk = read_since(log, None)
    assert chunk.bad_lines == [f"{log} at byte {len(lines[0])}: not a CEL record (1 columns)"]
    assert len(chunk.rows) == len(lines)


def test_no_file_yet_reads_nothing(tmp_path: Path) -> None:
    """Before Asterisk writes its first record there is nothing to read, and no error."""
    chunk = read_since(tmp_path / "Master.csv", None)
    assert (chunk.rows, chunk.end, chunk.bad_lines) == ([], None, [])


def test_an_empty_log_read_before_its_first_line_is_the_same_file_after(tmp_path: Path) -> None:
    """A log that was empty at the last read (just rotated, or CEL just set up) is read
    from the start once Asterisk writes to it: its first calls are not lost."""
    log = tmp_path / "Master.csv"
    log.touch()
    position = read_since(log, None).end
    write(log, lines_of("01_answered_simple"), "a")
    callers, _ = recovered(log, position)
    assert callers == ["79161234501"]


def test_a_read_takes_at_most_its_limit_and_says_there_is_more(tmp_path: Path) -> None:
    """A big log is read a part at a time, whole lines only, and the parts together are
    the whole log."""
    log = tmp_path / "Master.csv"
    write(log, [*lines_of("11_concurrent"), *lines_of("06_ringgroup")])
    rows, position, parts = [], None, 0
    while True:
        chunk = read_since(log, position, 4096)
        rows += [row for _, row in chunk.rows]
        position, parts = chunk.end, parts + 1
        if not chunk.more:
            break
    assert rows == [row for _, row in read_since(log, None).rows]
    assert parts > 3


def test_the_end_of_a_log_is_after_its_last_whole_line(tmp_path: Path) -> None:
    """Where a first start begins: after the last whole line, before one being written."""
    log = tmp_path / "Master.csv"
    lines = lines_of("01_answered_simple")
    write(log, [*lines, lines[0][:30]])
    end = end_of(log)
    assert end is not None and end.offset == len("".join(lines).encode())
    assert end_of(tmp_path / "none.csv") is None


def test_a_call_asterisk_lost_in_a_crash_does_not_hold_the_reading_back(tmp_path: Path) -> None:
    """After Asterisk crashed mid-call, the next reconnect's channel list has none of the
    call's channels: once it logged nothing for a minute it is given up, and the next read
    starts after it (each reconnect re-read everything since the crash for 12 hours)."""
    log = tmp_path / "Master.csv"
    write(log, [*lines_of("04_missed_caller_abandon")[:10], *lines_of("11_concurrent")])
    chunk = read_since(log, None)
    cut = "1796615884.6"  # the abandoned call, logged up to its 10th line
    last = max(row.time for _, row in chunk.rows if row.linkedid == cut)

    def read(live: set[str], live_at: float) -> Recovered:
        return recover(chunk, TOPOLOGY, "/monitor", longest_call=HOUR, live=live, live_at=live_at)

    gone = read(set(), last + 61)
    assert gone.given_up == [cut] and gone.position == chunk.end
    still_live = read({cut}, last + 61)
    just_now = read(set(), last + 30)  # its end may be being written: wait
    assert still_live.given_up == just_now.given_up == []
    assert cut in still_live.going and cut in just_now.going
