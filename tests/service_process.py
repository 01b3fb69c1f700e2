"""`pbx-tracker run` as systemd runs it: a subprocess on the traces' config, its settings
from the environment."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import IO

from traces import TRACE_CONFIG


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


async def start(env: dict[str, str], output: IO[bytes] | None = None) -> asyncio.subprocess.Process:
    """`python -m pbx_tracker run`; its output piped, or written to ``output``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pbx_tracker",
        "run",
        "--config",
        str(TRACE_CONFIG),
        env=env,
        stdout=asyncio.subprocess.PIPE if output is None else output,
        stderr=asyncio.subprocess.STDOUT,
    )
