"""The command line as a user runs it: `python -m pbx_tracker …` in a subprocess with the
test's config file, what it printed, and how it ended."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

WAIT = 60.0  # seconds any one command may take


@dataclass(frozen=True)
class Run:
    """What the user saw: exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """stderr, which must be one line and no traceback."""
        lines = self.err.strip().splitlines()
        assert "Traceback" not in self.err, self.err
        assert len(lines) == 1, self.err
        return lines[0]


async def run_process(
    argv: list[str], env: dict[str, str], what: str, stdin: str | None = None
) -> Run:
    """Run ``argv`` with ``env`` and ``stdin`` (else none); fail the test if it takes
    over `WAIT`."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    given = None if stdin is None else stdin.encode()
    try:
        out, err = await asyncio.wait_for(process.communicate(given), WAIT)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"{what}: still running after {WAIT:g} s")
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


@dataclass(frozen=True)
class Cli:
    """`python -m pbx_tracker <command…> ARGS --config CONFIG`; ``env`` on top of a clean
    environment (no PBX_TRACKER_ variables of the test run), 200 columns wide."""

    config: Path
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    async def __call__(self, *args: str, stdin: str | None = None) -> Run:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PBX_TRACKER_")}
        argv = [sys.executable, "-m", "pbx_tracker", *self.command, *args]
        argv += ["--config", str(self.config)]
        env = {**clean, "COLUMNS": "200", **self.env}
        return await run_process(argv, env, " ".join((*self.command, *args)), stdin)

    async def ok(self, *args: str, stdin: str | None = None) -> str:
        """stdout of a command that must succeed (exit 0, nothing on stderr)."""
        run = await self(*args, stdin=stdin)
        assert run.code == 0, run
        assert run.err == "", run.err
        return run.out

    async def failure(self, *args: str, stdin: str | None = None) -> Run:
        """A run that must fail with exit 1 and a one-line ``error: …``."""
        run = await self(*args, stdin=stdin)
        assert run.code == 1, run
        assert run.error_line.startswith("error: "), run.err
        return run

    async def fails(self, *args: str, stdin: str | None = None) -> str:
        """The one-line error of a command that must fail with exit 1."""
        return (await self.failure(*args, stdin=stdin)).error_line


def table_rows(out: str, columns: list[str]) -> list[dict[str, str]]:
    """The rows of a table a command printed, by column name (the header checked too)."""
    lines = out.splitlines()
    (header,) = [line for line in lines if line.startswith("┃")]
    assert [cell.strip() for cell in header.strip("┃").split("┃")] == columns, out
    rows = [line.strip("│").split("│") for line in lines if line.startswith("│")]
    return [dict(zip(columns, [cell.strip() for cell in row], strict=True)) for row in rows]
