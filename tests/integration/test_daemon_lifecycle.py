"""The daemon's lifecycle: a background loop that fails stops the whole daemon (for systemd
to start it again), and a start that fails half-way stops what had started."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from daemons import trace_settings
from structlog.testing import capture_logs
from waiting import WAIT, until

from pbx_tracker.calls.records import CallRecord
from pbx_tracker.daemon import Daemon
from pbx_tracker.pipeline import open_writer
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from stored import stored_calls
from traces import TRACES


def refuses(port: int) -> bool:
    """Nothing listens on ``port`` of the loopback any more."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_a_background_loop_that_crashes_stops_the_daemon_with_exit_code_1(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """When one of the daemon's loops fails, the log says which and why in one line, the
    call already taken in is still stored, the router's port closes and the exit code is 1,
    so systemd starts the daemon again instead of it running on half alive."""
    settings = trace_settings(migrated_url, asterisk.port, tmp_path)
    written: list[CallRecord] = []
    record_written = asyncio.Event()
    breaks = asyncio.Event()

    def on_written(record: CallRecord, new: bool) -> None:
        written.append(record)
        record_written.set()

    async def breaks_down() -> None:
        await breaks.wait()
        raise RuntimeError("the disk is full")

    async with open_writer(settings, on_written=on_written) as writer:
        daemon = Daemon(settings, writer)
        daemon.background.append(("report-mailer", breaks_down))
        assert daemon.agi is not None
        with capture_logs() as logs:
            running = asyncio.create_task(daemon.run(asyncio.Event()))
            await asyncio.wait_for(daemon.resynced.wait(), WAIT)
            await asterisk.play(trace_events(TRACES / "01_answered_simple.jsonl"))
            await until(lambda: len(written) == 1, record_written)
            breaks.set()
            code = await asyncio.wait_for(running, WAIT)
    assert code == 1
    events = [entry["event"] for entry in logs]
    crashed = [entry for entry in logs if entry["event"] == "daemon.loop_crashed"]
    assert [(entry["loop"], entry["error"]) for entry in crashed] == [
        ("report-mailer", "RuntimeError: the disk is full")
    ]
    assert events.index("daemon.loop_crashed") < events.index("daemon.stopped")
    assert refuses(daemon.agi.port)
    assert [row.linkedid for row in await stored_calls(migrated_url)] == [written[0].linkedid]


async def test_an_http_port_in_use_closes_the_router_port_already_opened(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A daemon whose HTTP port is taken exits with code 1 and does not leave the FastAGI port
    it had opened just before listening: Asterisk's route requests fall back at once."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        environ = {
            "PBX_TRACKER_HTTP__ENABLED": "true",
            "PBX_TRACKER_HTTP__PORT": str(taken.getsockname()[1]),
        }
        settings = trace_settings(migrated_url, asterisk.port, tmp_path, **environ)
        async with open_writer(settings) as writer:
            daemon = Daemon(settings, writer)
            assert daemon.agi is not None
            code = await asyncio.wait_for(daemon.run(asyncio.Event()), WAIT)
    assert code == 1
    assert daemon.agi.port != 0 and refuses(daemon.agi.port)
