"""A daemon on the traces' config, started in the test's loop with its own writer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from waiting import WAIT, until

from pbx_tracker.calls.records import CallRecord
from pbx_tracker.config import Settings, load_settings
from pbx_tracker.daemon import Daemon
from pbx_tracker.pipeline import open_writer
from traces import TRACE_CONFIG


def trace_settings(
    url: str, port: int, tmp_path: Path, *, config: Path = TRACE_CONFIG, **environ: str
) -> Settings:
    """The traces' config (or ``config``) on ``url`` and the fake Asterisk's ``port``, the
    spill, dead-letter and CEL files in ``tmp_path``; ``environ``: more ``PBX_TRACKER_...``
    overrides (dead-letter and CEL files of their own too)."""
    return load_settings(
        config,
        environ={
            "PBX_TRACKER_CALLS__DEAD_LETTERS": str(tmp_path / "dead-letters.jsonl"),
            "PBX_TRACKER_CEL__FILE": str(tmp_path / "cel-custom" / "Master.csv"),
            **environ,
            "PBX_TRACKER_DATABASE__URL": url,
            "PBX_TRACKER_AMI__PORT": str(port),
            "PBX_TRACKER_AGI__PORT": "0",
            "PBX_TRACKER_AMI__RECONNECT_INITIAL": "0.05",
            "PBX_TRACKER_AMI__RECONNECT_MAX": "0.2",
            "PBX_TRACKER_DATABASE__SPILL_PATH": str(tmp_path / "spill.jsonl"),
        },
    )


def http_environ(**more: str) -> dict[str, str]:
    """``trace_settings`` overrides for the daemon's HTTP server on a port the system picks."""
    return {"PBX_TRACKER_HTTP__ENABLED": "true", "PBX_TRACKER_HTTP__PORT": "0", **more}


class RunningDaemon:
    def __init__(self, daemon: Daemon, written: list[CallRecord]) -> None:
        self.daemon = daemon
        self.written = written
        self.changed = asyncio.Event()

    async def wait_for_records(self, count: int) -> None:
        await until(lambda: len(self.written) >= count, self.changed)


@asynccontextmanager
async def start_daemon(
    settings: Settings, stop: asyncio.Event, *, prepare: Callable[[Daemon], None] | None = None
) -> AsyncIterator[RunningDaemon]:
    """The daemon running in this loop (logged in to Asterisk and resynced) until the block
    ends, then stopped and exited with code 0; ``prepare`` sees it before it runs (e.g. to
    make its callbacks look for the leader more often)."""
    written: list[CallRecord] = []
    running: RunningDaemon | None = None

    def on_written(record: CallRecord, new: bool) -> None:
        written.append(record)
        if running is not None:
            running.changed.set()

    async with open_writer(settings, on_written=on_written) as writer:
        daemon = Daemon(settings, writer)
        running = RunningDaemon(daemon, written)
        if prepare is not None:
            prepare(daemon)
        task = asyncio.create_task(daemon.run(stop))
        await asyncio.wait_for(daemon.ready.wait(), WAIT)
        await asyncio.wait_for(daemon.resynced.wait(), WAIT)
        try:
            yield running
        finally:
            stop.set()
            assert await asyncio.wait_for(task, WAIT) == 0
