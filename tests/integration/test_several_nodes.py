"""Two daemons on one PostgreSQL database, each with its own (simulated) Asterisk node, as
README "Several Asterisk nodes" says to run them.

Daemon A is a real `pbx-tracker run` process (killed with SIGKILL, then started again);
daemon B runs in the test's loop.  Calls of both nodes are stored under their node (one
Linkedid on both nodes stays two calls), the reports count both, one daemon at a time
sends the reminders and the other takes over when the leader is killed, each reminder
once; and the pages' sign-ins and login brake are the same through either daemon's HTTP
and over a restart.  The leadership itself on one database is
tests/integration/test_callbacks_leader.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from browsing import web_user
from daemons import RunningDaemon, start_daemon, trace_settings
from mailserver import Mailbox
from service_process import ServiceLog, service_env, start
from sqlalchemy import select

from pbx_tracker.config import Settings
from pbx_tracker.daemon import Daemon
from pbx_tracker.reports.commands import show_report
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import make_call
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.store.models import CallRow
from pbx_tracker.web import users
from stored import connected, stored_tasks
from traces import TRACE_CONFIG

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

WAIT = 15.0
TAKEOVER = 10.0  # s: the follower looks for the leader every LEADER_CHECK seconds
LEADER_CHECK = 0.2
DID = "74951110003"  # tracked: offline-flyer
EPOCH = time.time() - 600  # the simulated calls happened in the last minutes


def cluster_config(tmp_path: Path, smtp_port: int) -> Path:
    """The traces' config as every daemon of the cluster has it: the pages on, reminders by
    email at once (the next one hours later), no number pool."""
    data = yaml.safe_load(TRACE_CONFIG.read_text(encoding="utf-8"))
    del data["number_pools"]
    for manager in data["managers"]:
        manager["email"] = f"m{manager['extension']}@example.ru"
    data["callbacks"] = {
        "notify": ["email"],
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "sender": "tracker@example.ru"},
        "remind_after_minutes": [0, 600],
        "sla_minutes": 600,
        "ring_me": {"context": "callback"},
    }
    data["http"] = {"enabled": True, "port": 0}
    data["web"] = {"cookie_secure": False}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def node_environ(url: str, node: str, folder: Path) -> dict[str, str]:
    """What differs between the daemons: the node's name and the daemon's own files."""
    folder.mkdir(exist_ok=True)
    return {
        "PBX_TRACKER_NODE": node,
        "PBX_TRACKER_DATABASE__URL": url,
        "PBX_TRACKER_DATABASE__SPILL_PATH": str(folder / "spill.jsonl"),
        "PBX_TRACKER_CALLS__DEAD_LETTERS": str(folder / "dead-letters.jsonl"),
        "PBX_TRACKER_CEL__FILE": str(folder / "cel-custom" / "Master.csv"),
    }


def quick_leader_check(daemon: Daemon) -> None:
    assert daemon.callbacks is not None
    daemon.callbacks.sweep_seconds = LEADER_CHECK


def call(kind: str, customer: str, *, seq: int, start: float) -> list[dict[str, str]]:
    """A call of ``kind`` from ``customer``; the same ``seq`` and ``start`` give the same
    Linkedid (on another node: another call)."""
    ids = IdAllocator(EPOCH, seed=seq, first_seq=seq)
    made = make_call(
        kind,
        start=start,
        did=DID,
        caller=customer,
        caller_name="",
        source="offline-flyer",
        manager="101",
        ids=ids,
    )
    return made.messages


class ProcessDaemon:
    """Daemon A: `pbx-tracker run` as systemd runs it, its log read as it comes."""

    def __init__(self, env: dict[str, str], config: Path) -> None:
        self.env, self.config = env, config
        self.process: asyncio.subprocess.Process | None = None
        self.log: ServiceLog | None = None

    async def start(self, role: str) -> int:
        """Start; once it serves HTTP, has its AMI and took its ``role`` in the callbacks
        (``leading`` or ``following``): its HTTP port."""
        self.process = await start(self.env, config=self.config)
        self.log = ServiceLog(self.process)
        listening = await self.log.wait_for("web.listening")
        await self.log.wait_for("daemon.ready")
        await self.log.wait_for(f"callbacks.{role}")
        return int(listening["port"])

    async def kill(self) -> None:
        assert self.process is not None and self.log is not None
        self.process.kill()
        assert await asyncio.wait_for(self.process.wait(), WAIT) == -signal.SIGKILL
        await self.log.close()

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        assert self.log is not None
        self.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(self.process.wait(), WAIT) == 0
        await self.log.close()


class Browser:
    """A person's browser: one cookie jar for 127.0.0.1 whatever the port, as behind the
    proxy that sends each request to either daemon."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.retry_after: str | None = None  # of the last sign-in

    async def sign_in(self, port: int, name: str, password: str) -> int:
        """The sign-in form posted through the daemon on ``port``; the answer's status."""
        async with self.session.get(f"http://127.0.0.1:{port}/login") as form:
            token = re.search(r'name="csrf" value="([^"]+)"', await form.text())
        assert token is not None
        fields = {"name": name, "password": password, "csrf": token[1], "next": "/calls"}
        async with self.session.post(
            f"http://127.0.0.1:{port}/login", data=fields, allow_redirects=False
        ) as answer:
            self.retry_after = answer.headers.get("Retry-After")
            return answer.status

    async def page(self, port: int, path: str) -> tuple[int, str]:
        """The status of ``path`` and where it led (the login form when signed out)."""
        async with self.session.get(f"http://127.0.0.1:{port}{path}") as answer:
            return answer.status, answer.url.path


async def calls_by_node(url: str) -> list[tuple[str, str, str]]:
    """(node, Linkedid, status) of every stored call."""
    async with connected(url) as conn:
        rows = await conn.execute(select(CallRow.node, CallRow.linkedid, CallRow.status))
        return sorted((row.node, row.linkedid, row.status) for row in rows)


async def reported_calls(settings: Settings) -> Any:
    today = datetime.now(UTC).date()
    text = await show_report(
        settings.database.url,
        settings.report_rules(),
        settings.directory,
        "sources",
        start=(today - timedelta(days=1)).isoformat(),
        end=(today + timedelta(days=1)).isoformat(),
        group_by=None,
        fmt="json",
    )
    return json.loads(text)["total"]


def reminded_tasks(mailbox: Mailbox) -> Counter[str]:
    """Task id -> how many reminders were sent of it."""
    return Counter(str(message["X-PBX-Tracker-Task"]) for message in mailbox.messages)


async def test_two_nodes_share_calls_reminders_reports_and_sign_ins(
    postgres_database: str, asterisk: FakeAsterisk, mailbox: Mailbox, tmp_path: Path
) -> None:
    """Daemon A (a process, leading) and daemon B (following), each on its own Asterisk:
    both nodes' calls are stored apart, A reminds of each missed call once; A killed, B
    takes the reminders over within seconds and A, started again, follows; a browser signed
    in through A stays signed in through B and over A's restart; failed sign-ins through A
    lock the client out on B."""
    url = postgres_database
    await asyncio.to_thread(upgrade_to_head, url)
    async with connected(url, write=True) as conn:
        await users.add_user(conn, web_user("root", "admin"), datetime.now(UTC))
    config = cluster_config(tmp_path, mailbox.port)
    env_a = service_env(tmp_path, asterisk.port, **node_environ(url, "node-a", tmp_path / "a"))
    daemon_a = ProcessDaemon(env_a, config)
    environ_b = node_environ(url, "node-b", tmp_path / "b")
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies of 127.0.0.1
    timeout = aiohttp.ClientTimeout(total=WAIT)
    async with (
        FakeAsterisk(username="tracker", secret="tracker-secret", timestamp_events=True) as node_b,
        aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as session,
    ):
        settings_b = trace_settings(url, node_b.port, tmp_path / "b", config=config, **environ_b)
        try:
            port_a = await daemon_a.start("leading")
            async with start_daemon(
                settings_b, asyncio.Event(), prepare=quick_leader_check
            ) as daemon_b:
                await _scenario(url, asterisk, node_b, daemon_a, daemon_b, port_a, session, mailbox)
        finally:
            await daemon_a.stop()
    tasks = await stored_tasks(url)
    assert len(tasks) == 3
    assert reminded_tasks(mailbox) == Counter({str(task.id): 1 for task in tasks})  # once each


async def _scenario(
    url: str,
    node_a: FakeAsterisk,
    node_b: FakeAsterisk,
    daemon_a: ProcessDaemon,
    daemon_b: RunningDaemon,
    port_a: int,
    session: aiohttp.ClientSession,
    mailbox: Mailbox,
) -> None:
    assert daemon_b.daemon.http is not None and daemon_b.daemon.callbacks is not None
    port_b = daemon_b.daemon.http.port
    callbacks_b = daemon_b.daemon.callbacks
    assert not callbacks_b.leadership.leading
    browser = Browser(session)

    # Signed in through A: signed in through B too.
    assert await browser.sign_in(port_a, "root", "root-password-1") == 303
    assert await browser.page(port_b, "/calls") == (200, "/calls")

    # The same Linkedid on both nodes: two calls.  A (leading) reminds of its missed call.
    await node_a.play(call("answered", "79161230001", seq=700, start=0.0))
    await node_b.play(call("answered", "79161230002", seq=700, start=0.0))
    await node_a.play(call("no_answer", "79161230003", seq=800, start=30.0))
    await daemon_b.wait_for_records(1)
    await mailbox.wait_for(1)
    same = daemon_b.written[0].linkedid
    stored = await calls_by_node(url)
    assert [(node, status) for node, linkedid, status in stored if linkedid == same] == [
        ("node-a", "answered"),
        ("node-b", "answered"),
    ]
    assert sorted(node for node, _, _ in stored) == ["node-a", "node-a", "node-b"]
    assert not callbacks_b.scheduler._scheduler.running  # the follower sends nothing

    # A is killed: B takes the reminders over within seconds, reminding of nothing again.
    await daemon_a.kill()
    await asyncio.wait_for(callbacks_b.became_leader.wait(), TAKEOVER)
    await node_b.play(call("no_answer", "79161230004", seq=900, start=60.0))
    await mailbox.wait_for(2)

    # A starts again and follows; its missed call gets its reminder from B.
    port_a = await daemon_a.start("following")
    assert await browser.page(port_a, "/calls") == (200, "/calls")  # still signed in
    await node_a.play(call("no_answer", "79161230005", seq=1000, start=120.0))
    await mailbox.wait_for(3)

    # The reports count the calls of both nodes.
    total = await reported_calls(daemon_b.daemon.settings)
    assert total["calls"] == 5

    # Four failed sign-ins through A and a fifth through B: B says wait.
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=session.timeout
    ) as guesser:
        guessing = Browser(guesser)
        for _ in range(4):
            assert await guessing.sign_in(port_a, "root", "not-the-password") == 401
        assert await guessing.sign_in(port_b, "root", "not-the-password") == 429
        assert guessing.retry_after is not None and int(guessing.retry_after) > 0
