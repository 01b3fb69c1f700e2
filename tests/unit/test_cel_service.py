"""The daemon's CEL recovery: the calls logged since the last read go down the daemon's
pipeline, and the read position moves on only once they are stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pbx_tracker.calls.correlator import Topology
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.cel.reading import Chunk, Position, read_since
from pbx_tracker.cel.service import CelRecovery
from pbx_tracker.cel.settings import CelSettings
from traces import TRACES

CEL = TRACES / "cel"


class Kept:
    """A position store in memory (the daemon's is the database)."""

    def __init__(self) -> None:
        self.position: Position | None = None
        self.saves = 0

    async def load(self) -> Position | None:
        return self.position

    async def save(self, position: Position | None) -> None:
        self.position = position
        self.saves += 1


def recovery(
    log: Path, kept: Kept, found: list[CallRecord], *, stores: bool = True, limit: int = 0
) -> CelRecovery:
    """The daemon's recovery of ``log``; ``limit``: bytes per read (0: the default)."""

    async def stored() -> bool:
        return stores

    async def read(position: Position | None) -> Chunk:
        return await asyncio.to_thread(read_since, log, position, limit)

    settings = CelSettings(file=log)
    return CelRecovery(
        settings,
        Topology(node="pbx"),
        "/monitor",
        kept,
        found.append,
        stored,
        read if limit else None,
    )


def append(log: Path, *stems: str) -> None:
    with log.open("ab") as stream:
        for stem in stems:
            stream.write((CEL / f"{stem}.cel.csv").read_bytes())


async def started(log: Path, kept: Kept, found: list[CallRecord]) -> CelRecovery:
    """A service that has made its first read of an empty log (the daemon's first start)."""
    log.write_bytes(b"")  # noqa: ASYNC240 - a test's setup
    service = recovery(log, kept, found)
    await service.run()
    return service


async def test_calls_logged_while_away_go_down_the_pipeline_once(tmp_path: Path) -> None:
    """Two reads of a log that grew in between: each call handed over once, marked cel."""
    log, kept, found = tmp_path / "Master.csv", Kept(), []
    service = await started(log, kept, found)
    append(log, "01_answered_simple")
    await service.run()
    append(log, "04_missed_caller_abandon")
    await service.run()
    await service.run()
    assert [(r.caller, r.status, r.recovered_from) for r in found] == [
        ("79161234501", "answered", "cel"),
        ("79161234504", "missed", "cel"),
    ]
    assert (service.state.status, kept.saves) == ("ok", 4)


async def test_a_new_install_does_not_import_the_pbx_past(tmp_path: Path) -> None:
    """The first start begins at the log's end: last month's missed calls open no
    callback task; what is logged after it is recovered."""
    log, kept, found = tmp_path / "Master.csv", Kept(), []
    append(log, "01_answered_simple", "03_missed_no_answer")
    service = recovery(log, kept, found)
    await service.run()
    append(log, "04_missed_caller_abandon")
    await service.run()
    assert [r.caller for r in found] == ["79161234504"]


async def test_a_long_log_is_read_part_by_part_each_call_once(tmp_path: Path) -> None:
    """After a long downtime the log is read a few kilobytes at a time here (megabytes in
    the daemon), each part stored before the next: every call comes once."""
    log, kept, found = tmp_path / "Master.csv", Kept(), []
    await started(log, kept, found)
    stems = ("11_concurrent", "06_ringgroup", "07_queue_answered", "05_busy_all")
    append(log, *stems)
    service = recovery(log, kept, found, limit=4096)
    await service.run()
    assert len(found) == 8 and len({r.linkedid for r in found}) == 8
    assert kept.saves > 3 and service.state.calls == 8


async def test_the_position_stays_until_the_calls_are_stored(tmp_path: Path) -> None:
    """With the database away the position is not moved: the next read hands the same
    calls over again (the store keeps each once)."""
    log, kept, found = tmp_path / "Master.csv", Kept(), []
    await started(log, kept, found)
    append(log, "03_missed_no_answer")
    await recovery(log, kept, found, stores=False).run()
    await recovery(log, kept, found, stores=True).run()
    assert [r.caller for r in found] == ["79161234503", "79161234503"]
    assert kept.saves == 2


async def test_a_call_still_going_comes_back_as_rows(tmp_path: Path) -> None:
    """The rows of a call without its end yet are given back, for the live correlator."""
    lines = (CEL / "06_ringgroup.cel.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    log, kept, found = tmp_path / "Master.csv", Kept(), []
    service = await started(log, kept, found)
    log.write_text("".join(lines[:15]), encoding="utf-8")
    going = await service.run()
    assert found == []
    assert list(going) == ["1796615898.13"] and len(going["1796615898.13"]) == 15


async def test_no_log_yet_is_a_problem_to_show_not_an_error(tmp_path: Path) -> None:
    """CEL not set up (no file): nothing recovered, the state says what to check; once
    Asterisk writes the log, its first calls are recovered and the problem is gone."""
    kept, found = Kept(), []
    log = tmp_path / "cel-custom" / "Master.csv"
    service = recovery(log, kept, found)
    assert await service.run() == {}
    problem = service.state.problem
    log.parent.mkdir()
    append(log, "03_missed_no_answer")
    await service.run()
    assert problem is not None and "is CEL set up" in problem
    assert [r.caller for r in found] == ["79161234503"] and service.state.problem is None
