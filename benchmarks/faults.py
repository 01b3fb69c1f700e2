"""Nothing lost, nothing twice: a busy day of calls played into the real daemon (its own
process) while the AMI link drops, Asterisk restarts, the database goes away, the daemon
is killed with SIGKILL and the spill file's disk is full; every record, callback task
and reminder compared with what was played.

    .venv/bin/python benchmarks/faults.py [--calls 5000] [--seed 1] [--database both]

See `pbx_tracker.sim.faults` for the day, the fault plan and what counts as true.
PostgreSQL: a throw-away database on $PBX_TRACKER_TEST_PG_URL (default
postgresql://postgres@127.0.0.1:5432/postgres), reached through a loopback TCP proxy
that the outages cut; SQLite: a file in a temporary folder, made unwritable by another
connection holding its write lock.  The disk full for the spill file is a symlink to
/dev/full swapped in for a database outage.  Reminders go by email to an SMTP server
(aiosmtpd) on loopback.  Prints, per database: calls played, records written, lost,
duplicated, wrong (field by field), callback tasks and reminders expected and sent,
and the worst delay from a call's end to its record in the database.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import socket
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.engine import make_url

from pbx_tracker.sim.faults import Outcome, Shape, run_with_faults

PG_SERVER = os.environ.get(
    "PBX_TRACKER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class Reminders:
    """An SMTP server on loopback keeping each message's X-PBX-Tracker-Task header."""

    def __init__(self) -> None:
        self.tasks: list[str] = []
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        header, _, _ = content.partition(b"\r\n\r\n")
        task = ""
        for line in header.decode("utf-8", "replace").splitlines():
            if line.lower().startswith("x-pbx-tracker-task:"):
                task = line.split(":", 1)[1].strip()
        with self._lock:
            self.tasks.append(task)
        return "250 Message accepted for delivery"

    def received(self) -> list[str]:
        with self._lock:
            return list(self.tasks)

    def __enter__(self) -> Reminders:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return int(self.controller.port)


def free_port() -> int:
    """A port nobody listens on now (aiosmtpd's Controller cannot take port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def admin(statement: str) -> None:
    url = make_url(PG_SERVER).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


async def one(database: str, shape: Shape, seed: int, folder: Path) -> Outcome:
    with Reminders() as mail:
        if database == "sqlite":
            url = f"sqlite:///{folder / 'calls.sqlite3'}"
            return await run_with_faults(
                "sqlite", url, folder, shape=shape, seed=seed, smtp_port=mail.port,
                reminder_tasks=mail.received, progress=print,
            )  # fmt: skip
        name = f"pbx_tracker_faults_{uuid.uuid4().hex[:12]}"
        admin(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(PG_SERVER).set(drivername="postgresql", database=name)
            return await run_with_faults(
                "postgres", url.render_as_string(hide_password=False), folder, shape=shape,
                seed=seed, smtp_port=mail.port, reminder_tasks=mail.received, progress=print,
            )  # fmt: skip
        finally:
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=Shape.calls)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--mean-gap", type=float, default=Shape.mean_gap, help="s between calls")
    parser.add_argument("--rounds", type=int, default=Shape.rounds, help="each fault this often")
    parser.add_argument("--keep", type=Path, help="keep the daemon's logs in this folder")
    args = parser.parse_args()
    shape = dataclasses.replace(
        Shape(), calls=args.calls, mean_gap=args.mean_gap, rounds=args.rounds
    )
    databases = ("sqlite", "postgres") if args.database == "both" else (args.database,)
    outcomes = []
    for database in databases:
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            if args.keep:
                folder = args.keep / database
                folder.mkdir(parents=True, exist_ok=True)
            outcome = asyncio.run(one(database, shape, args.seed, folder))
        outcomes.append(outcome)
        print("\n".join(outcome.lines()), flush=True)
    print()
    for outcome in outcomes:
        print("\n".join(outcome.lines()))
    return 0 if all(outcome.clean for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
