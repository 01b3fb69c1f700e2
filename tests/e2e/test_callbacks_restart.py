"""Reminders survive `kill -9`: the daemon, a subprocess, is killed with reminders pending and
started again; every reminder that came due meanwhile goes out once (coalesced), none twice,
and a task closed from the command line meanwhile gets nothing more.  Emails are counted on a
real SMTP server (aiosmtpd) on loopback; the calls come from the fake Asterisk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from mailserver import Mailbox
from service_process import start as start_service

from pbx_tracker.callbacks.schedule import JOBS_TABLE, jobs_url
from pbx_tracker.callbacks.tasks import CallbackTask, list_tasks
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from pbx_tracker.store.engine import make_async_engine
from traces import TRACE_CONFIG, TRACES

pytestmark = pytest.mark.slow

WAIT = 30.0  # seconds: no single wait in this test is longer
SCHEDULE = [0.0, 0.1, 0.15]  # minutes: at once, after 6 s, after 9 s (room for a slow machine)
FIRST = "+79161234503"  # trace 03: missed (no answer) on 74951110003, rang 101
SECOND = "+79161234504"  # trace 04: abandoned on a pool number
_REMINDER_NUMBER = re.compile(r"^Reminder:\s*#(\d+)\s*$", re.MULTILINE)


# -- the world around the daemon -------------------------------------------------------


def write_config(tmp_path: Path, ami_port: int, smtp_port: int) -> Path:
    """The captured PBX's config, with a SQLite file here, email reminders, fast schedule."""
    config: dict[str, Any] = yaml.safe_load(TRACE_CONFIG.read_text(encoding="utf-8"))
    config["ami"].update(port=ami_port, reconnect_initial=0.05)
    config["database"] = {
        "url": f"sqlite:///{tmp_path / 'calls.sqlite3'}",
        "spill_path": str(tmp_path / "spill.jsonl"),
    }
    config["agi"] = {"port": 0}
    for manager in config["managers"]:
        manager["email"] = f"m{manager['extension']}@example.ru"
    config["callbacks"] = {
        "notify": ["email"],
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "sender": "tracker@example.ru"},
        "remind_after_minutes": SCHEDULE,
        "sla_minutes": 60,
    }
    config["logging"] = {"level": "info", "format": "json"}
    path = tmp_path / "pbx-tracker.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def clean_env() -> dict[str, str]:
    """This environment without overrides of the config or a systemd socket."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PBX_TRACKER_") and key != "NOTIFY_SOCKET"
    }


async def cli(config: Path, *args: str) -> str:
    """`pbx-tracker ARGS --config CONFIG` in a subprocess: its stdout (exit 0 asserted)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pbx_tracker",
        *args,
        "--config",
        str(config),
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), WAIT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, (args, out.decode(), err.decode())
    return out.decode()


async def tasks_by_customer(config: Path) -> dict[str, dict[str, Any]]:
    """Every task (open and done), as `callbacks list --all --format json` shows it."""
    shown = json.loads(await cli(config, "callbacks", "list", "--all", "--format", "json"))
    return {task["customer"]: task for task in shown}


# -- the daemon ----------------------------------------------------------------------------


class Daemon:
    """`pbx-tracker run` as systemd runs it; every line it logs counts as activity."""

    def __init__(self, config: Path, notify: Path) -> None:
        self.config, self.notify = config, notify
        self.lines: list[str] = []
        self.activity = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start and return once it told systemd READY=1 (AMI logged in, services up)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(self.notify))
            sock.setblocking(False)
            env = {**clean_env(), "NOTIFY_SOCKET": str(self.notify)}
            self.process = await start_service(env, config=self.config)
            self._reader = asyncio.create_task(self._read(self.process))
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(WAIT):
                while b"READY=1" not in await loop.sock_recv(sock, 4096):
                    pass
        self.notify.unlink()

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            self.lines.append(line.decode(errors="replace").rstrip())
            self.activity.set()

    async def until(self, check: Callable[[], Any]) -> None:
        """Wait (bounded) until the awaitable ``check()`` is true, looking again at each log line.

        Each state the test waits for is followed by a log line (APScheduler logs every job
        it stores, runs or removes), so no poll interval is needed.
        """
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    self.activity.clear()  # before looking: a line logged meanwhile is not lost
                    if await check():
                        return
                    assert self.running, self.output
                    await self.activity.wait()
        except TimeoutError:
            pytest.fail(f"not within {WAIT:g} s: {check.__doc__}\n{self.output}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def kill(self) -> None:
        """SIGKILL, as `kill -9` (or the OOM killer) does: nothing of it runs any more."""
        assert self.process is not None
        self.process.kill()
        await self._exited()
        assert self.process.returncode == -signal.SIGKILL, self.output

    async def terminate(self) -> int:
        """SIGTERM, as `systemctl stop` does: the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        await self._exited()
        assert self.process.returncode is not None
        return self.process.returncode

    async def _exited(self) -> None:
        assert self.process is not None and self._reader is not None
        async with asyncio.timeout(WAIT):
            await self.process.wait()
            await self._reader  # the whole output, up to its end

    async def cleanup(self) -> None:
        """Whatever happened to the test: no daemon survives it."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), WAIT)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@contextlib.asynccontextmanager
async def daemon(config: Path, notify: Path) -> AsyncIterator[Daemon]:
    running = Daemon(config, notify)
    try:
        await running.start()
        yield running
    finally:
        await running.cleanup()


# -- what the test looks at ----------------------------------------------------------------


class Store:
    """The daemon's database, read (never written) by the test: tasks and stored jobs."""

    def __init__(self, url: str) -> None:
        self.engine = make_async_engine(url)
        self.jobs_path = jobs_url(url).removeprefix("sqlite:///")

    async def tasks(self) -> dict[str, CallbackTask]:
        async with self.engine.connect() as conn:
            found = await list_tasks(conn, status=None)
        return {task.customer or "": task for task in found}

    def job_ids(self) -> set[str]:
        with contextlib.closing(sqlite3.connect(f"file:{self.jobs_path}?mode=ro", uri=True)) as db:
            return {row[0] for row in db.execute(f"SELECT id FROM {JOBS_TABLE}")}


async def emails(mailbox: Mailbox, count: int) -> None:
    """Wait (bounded) until the SMTP server has accepted ``count`` messages in all."""
    try:
        await mailbox.wait_for(count, timeout=WAIT)
    except TimeoutError:
        subjects = [m["Subject"] for m in mailbox.messages]
        pytest.fail(f"{count} emails expected within {WAIT:g} s, got {subjects}")


def reminders_per_task(messages: list[EmailMessage]) -> dict[str, list[int]]:
    """Task id -> the reminder numbers its emails carried, in arrival order."""
    found: dict[str, list[int]] = {}
    for message in messages:
        assert message["X-PBX-Tracker-Event"] == "callback.reminder", message["Subject"]
        body = message.get_body(("plain",))
        assert body is not None
        number = _REMINDER_NUMBER.search(body.get_content())
        assert number is not None, body.get_content()
        found.setdefault(str(message["X-PBX-Tracker-Task"]), []).append(int(number[1]))
    return found


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# -- the test ----------------------------------------------------------------------------


async def test_sigkill_with_reminders_pending_then_restart_sends_each_reminder_once(
    tmp_path: Path, asterisk: FakeAsterisk, mailbox: Mailbox
) -> None:
    """After kill -9 with reminders pending, the restarted daemon sends the reminders that came due
    meanwhile as one email, none twice, and nothing more for a task closed from the command line in
    between."""
    config = write_config(tmp_path, asterisk.port, mailbox.port)
    await cli(config, "db", "upgrade")
    store = Store(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    try:
        # 1. two missed calls: a task each, and its first reminder at once
        async with daemon(config, tmp_path / "notify-1") as first:
            await asterisk.play(trace_events(TRACES / "03_missed_no_answer.jsonl"))
            await asterisk.play(trace_events(TRACES / "04_missed_caller_abandon.jsonl"))
            await emails(mailbox, 2)

            async def next_reminders_stored() -> bool:
                """Both first reminders recorded, and both next reminder jobs stored."""
                found = await store.tasks()
                recorded = [found[c].reminders_sent for c in (FIRST, SECOND) if c in found]
                jobs = {f"callback-{found[c].id}-remind" for c in (FIRST, SECOND) if c in found}
                return recorded == [1, 1] and jobs <= store.job_ids()

            # A reminder job leaves the store when it starts; the next one is stored after
            # the email went out and was recorded.  Kill once that is done, so the reminders
            # are pending in the store (a kill in between leaves the task without a job).
            await first.until(next_reminders_stored)

            # 2. kill -9 with reminders pending
            await first.kill()
        killed_at = datetime.now(UTC)
        assert len(mailbox.envelopes) == 2, "killed too late: the 2nd reminder was out already"

        shown = await tasks_by_customer(config)
        one, two = shown[FIRST], shown[SECOND]
        assert (one["status"], two["status"]) == ("open", "open"), shown
        assert (one["reminders_sent"], two["reminders_sent"]) == (1, 1), shown
        opened = parse_time(one["created_at"])
        assert killed_at < opened + timedelta(minutes=SCHEDULE[1]), "killed too late"

        # the second customer is taken care of while no daemon runs
        await cli(config, "callbacks", "done", str(two["id"]), "--by", "102")
        assert (await tasks_by_customer(config))[SECOND]["status"] == "done"

        # The one wait on the clock: the rest of the first task's reminders come due while
        # nothing runs.  Nothing can signal it (no process is up); wait until the last one's
        # due time, from the task's created_at and the schedule, has passed.
        last_due = opened + timedelta(minutes=SCHEDULE[-1])
        await asyncio.sleep(max(0.0, (last_due - datetime.now(UTC)).total_seconds()) + 0.2)
        assert len(mailbox.envelopes) == 2

        # 3. started again: the two overdue reminders of the first task go out as one email
        async with daemon(config, tmp_path / "notify-2") as again:
            await emails(mailbox, 3)

            async def caught_up() -> bool:
                """The late reminder recorded, and both overdue reminder jobs run to the end."""
                found = await store.tasks()
                finished = again.output.count("executed successfully")
                return found[FIRST].reminders_sent == len(SCHEDULE) and finished >= 2

            await again.until(caught_up)
            shown = await tasks_by_customer(config)
            assert shown[FIRST]["reminders_sent"] == len(SCHEDULE), shown
            assert shown[FIRST]["status"] == "open", shown
            assert (shown[SECOND]["status"], shown[SECOND]["reminders_sent"]) == ("done", 1)
            assert await again.terminate() == 0, again.output
    finally:
        await store.engine.dispose()

    # every email the daemons sent has arrived: both have exited
    messages = mailbox.messages
    per_task = reminders_per_task(messages)
    assert per_task == {str(one["id"]): [1, 3], str(two["id"]): [1]}, per_task
    ids = Counter(str(message["Message-ID"]) for message in messages)
    assert all(count == 1 for count in ids.values()), ids
    to = {str(task["id"]): f"m{task['assignee']}@example.ru" for task in (one, two)}
    assert all(m["To"] == to[str(m["X-PBX-Tracker-Task"])] for m in messages), to
