"""`pbx-tracker run` as systemd runs it: a subprocess on the traces' config, its settings
from the environment."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from traces import TRACE_CONFIG

WAIT = 15.0


def service_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    """The daemon's environment: SQLite and spill file in ``tmp_path``, the fake Asterisk on
    ``port``, JSON logs; ``extra``: more ``PBX_TRACKER_...`` settings."""
    return {
        **os.environ,
        "PBX_TRACKER_DATABASE__URL": f"sqlite:///{tmp_path / 'calls.sqlite3'}",
        "PBX_TRACKER_DATABASE__SPILL_PATH": str(tmp_path / "spill.jsonl"),
        "PBX_TRACKER_AMI__PORT": str(port),
        "PBX_TRACKER_AGI__PORT": "0",
        "PBX_TRACKER_LOGGING__FORMAT": "json",
        **extra,
    }


async def start(
    env: dict[str, str], output: IO[bytes] | None = None, *, config: Path = TRACE_CONFIG
) -> asyncio.subprocess.Process:
    """`python -m pbx_tracker run` on ``config``; its output piped, or written to ``output``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pbx_tracker",
        "run",
        "--config",
        str(config),
        env=env,
        stdout=asyncio.subprocess.PIPE if output is None else output,
        stderr=asyncio.subprocess.STDOUT,
    )


class ServiceLog:
    """The JSON log lines of a daemon started with its output piped, read as they come, so
    a test waits (bounded) for what the daemon says instead of looking again and again."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None, "start the daemon with its output piped"
        self.entries: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(process.stdout))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", errors="replace").strip()
            try:
                entry = json.loads(text)
            except ValueError:  # a line not from structlog (a library's own print)
                entry = {"event": text}
            self.entries.append(entry if isinstance(entry, dict) else {"event": text})
            self._changed.set()
        self._changed.set()

    def find(self, event: str, **fields: object) -> dict[str, Any] | None:
        """The first entry of ``event`` whose ``fields`` are as given."""
        for entry in self.entries:
            if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
                return entry
        return None

    async def wait_for(self, event: str, timeout: float = WAIT, **fields: object) -> dict[str, Any]:  # noqa: ASYNC109
        """The first entry of ``event`` (with ``fields``), waiting for it (bounded)."""
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()  # before looking, so a line in between is not lost
                found = self.find(event, **fields)
                if found is not None:
                    return found
                if self._reader.done():
                    raise AssertionError(f"the daemon's output ended before {event!r}")
                await self._changed.wait()

    async def close(self) -> None:
        """Stop reading (the process is gone or about to be)."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
