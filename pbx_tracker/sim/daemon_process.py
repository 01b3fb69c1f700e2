"""The daemon as the fault run starts it: `pbx-tracker run` in its own process, and its
config (the simulator's PBX, email reminders at once, the CEL file in the run's folder)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import IO, Any

import yaml

from pbx_tracker.sim.fault_plan import DIDS, MANAGERS

AMI_USER, AMI_SECRET = "tracker", "tracker-secret"


class DaemonProcess:
    """`pbx-tracker run --config CONFIG` in its own process, output to ``log``."""

    def __init__(self, config: Path, log: IO[bytes]) -> None:
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PBX_TRACKER_") and key != "NOTIFY_SOCKET"
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pbx_tracker", "run", "--config", str(self.config),
            env=env, stdout=self.log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self.starts += 1

    async def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            await self.process.wait()
            self.process = None

    async def stop(self, timeout: float = 60.0) -> int | None:  # noqa: ASYNC109
        """SIGTERM and wait (SIGKILL after ``timeout``): the exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            return await process.wait()


def write_config(
    folder: Path, *, ami_port: int, database_url: str, smtp_port: int, queue_size: int
) -> Path:
    """The daemon's config: the simulator's PBX, email reminders at once, CEL file here."""
    config: dict[str, Any] = {
        "node": "pbx",
        "phone_region": "RU",
        "ami": {
            "host": "127.0.0.1",
            "port": ami_port,
            "username": AMI_USER,
            "secret": AMI_SECRET,
            "reconnect_initial": 0.2,
            "reconnect_max": 2.0,
        },
        "database": {
            "url": database_url,
            "spill_path": str(folder / "spill.jsonl"),
            "queue_size": queue_size,
        },
        "calls": {
            "inbound_contexts": ["from-trunk"],
            "did_variable": "TRACK_DID",
            "target_seconds": 30,
            "dead_letters": str(folder / "dead-letters.jsonl"),
        },
        "recordings_dir": "/var/spool/asterisk/monitor",
        "tracked_numbers": [{"did": did, "source": source} for did, source in DIDS],
        "managers": [
            {"name": f"M{ext}", "extension": ext, "group": "sales", "email": f"m{ext}@example.ru"}
            for ext in MANAGERS
        ],
        "agi": {"enabled": False},
        "cel": {"file": str(folder / "cel-custom" / "Master.csv")},
        "callbacks": {
            "notify": ["email"],
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "sender": "tracker@example.ru"},
            "remind_after_minutes": [0.0],
            "sla_minutes": 1440,
        },
        "logging": {"level": "info", "format": "json"},
    }
    path = folder / "pbx-tracker.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
