"""The daemon's CEL recovery: the calls logged since the last read go down the daemon's
pipeline, and the read position moves on only once they are stored."""

from __future__ import annotations

from pathlib import Path

from pbx_tracker.calls.correlator import Topology
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.cel.reading import Position
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


def recovery(log: Path, kept: Kept, found: list[CallRecord], *, stores: bool = True) -> CelRecovery:
    async def stored() -> bool:
        return stores

    settings = CelSettings(file=log)
    return CelRecovery(settings, Topology(node="pbx"), "/monitor", kept, found.append, stored)


async def test_calls_logged_while_away_go_down_the_pipeline_once(tmp_path: Path) -> None:
    """Two reads of a log that grew in between: each call handed over once, marked cel."""
    log = tmp_path / "Master.csv"
    log.write_bytes((CEL / "01_answered_simple.cel.csv").read_bytes())
    kept, found = Kept(), []
    service = recovery(log, kept, found)
    await service.run()
    with log.open("ab") as stream:
        stream.write((CEL / "04_missed_caller_abandon.cel.csv").read_bytes())
    await service.run()
    await service.run()
    assert [(r.caller, r.status, r.recovered_from) for r in found] == [
        ("79161234501", "answered", "cel"),
        ("79161234504", "missed", "cel"),
    ]
    assert (service.state.status, kept.saves) == ("ok", 3)


async def test_the_position_stays_until_the_calls_are_stored(tmp_path: Path) -> None:
    """With the database away the position is not moved: the next read hands the same
    calls over again (the store keeps each once)."""
    log = tmp_path / "Master.csv"
    log.write_bytes((CEL / "03_missed_no_answer.cel.csv").read_bytes())
    kept, found = Kept(), []
    await recovery(log, kept, found, stores=False).run()
    await recovery(log, kept, found, stores=True).run()
    assert [r.caller for r in found] == ["79161234503", "79161234503"]
    assert kept.saves == 1


async def test_a_call_still_going_comes_back_as_rows(tmp_path: Path) -> None:
    """The rows of a call without its end yet are given back, for the live correlator."""
    lines = (CEL / "06_ringgroup.cel.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    log = tmp_path / "Master.csv"
    log.write_text("".join(lines[:15]), encoding="utf-8")
    kept, found = Kept(), []
    going = await recovery(log, kept, found).run()
    assert found == []
    assert list(going) == ["1796615898.13"] and len(going["1796615898.13"]) == 15


async def test_no_log_yet_is_a_problem_to_show_not_an_error(tmp_path: Path) -> None:
    """CEL not set up (no file): nothing recovered, the state says what to check."""
    kept, found = Kept(), []
    service = recovery(tmp_path / "cel-custom" / "Master.csv", kept, found)
    assert await service.run() == {}
    assert service.state.problem is not None and "is CEL set up" in service.state.problem
