"""`pbx-tracker run` as systemd runs it: a subprocess, sd_notify over a real socket, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from service_process import service_env, start

from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from pbx_tracker.store.migrate import upgrade_to_head
from traces import TRACES

WAIT = 30.0
pytestmark = pytest.mark.slow


async def next_notification(sock: socket.socket) -> str:
    loop = asyncio.get_running_loop()
    return (await asyncio.wait_for(loop.sock_recv(sock, 4096), WAIT)).decode()


async def test_ready_then_sigterm_writes_the_call_and_exits_0(
    asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """READY=1 after login, the call is written, SIGTERM → STOPPING=1 and exit 0."""
    env = service_env(tmp_path, asterisk.port)
    await asyncio.to_thread(upgrade_to_head, env["PBX_TRACKER_DATABASE__URL"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.setblocking(False)
        process = await start({**env, "NOTIFY_SOCKET": str(tmp_path / "notify")})
        seen = [await next_notification(sock)]
        while "READY=1" not in seen[-1]:
            seen.append(await next_notification(sock))
        await asterisk.play(trace_events(TRACES / "01_answered_simple.jsonl"))
        process.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in seen[-1]:
            seen.append(await next_notification(sock))
        output, _ = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode == 0, output.decode()
    assert b"tracker-secret" not in output
    written = [line for line in output.decode().splitlines() if "calls.finished" in line]
    assert written, output.decode()


async def test_rejected_login_exits_1_saying_so(asterisk: FakeAsterisk, tmp_path: Path) -> None:
    """A service whose AMI secret Asterisk rejects exits 1 saying the login was rejected for the
    user, without printing the secret, so systemd shows why it stopped."""
    env = service_env(tmp_path, asterisk.port, PBX_TRACKER_AMI__SECRET="wrong-secret")
    await asyncio.to_thread(upgrade_to_head, env["PBX_TRACKER_DATABASE__URL"])
    process = await start(env)
    output, _ = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode == 1
    assert b"AMI login rejected for user tracker" in output
    assert b"wrong-secret" not in output


async def test_database_without_schema_refuses_to_start(
    asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A service whose database has no schema yet exits 1 telling the sysadmin to run pbx-tracker db
    upgrade."""
    process = await start(service_env(tmp_path, asterisk.port))
    output, _ = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode == 1
    assert b"pbx-tracker db upgrade" in output


async def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """The newcomer's first command: simulated calls recorded, summary printed, exit 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pbx_tracker",
        "demo",
        "--calls",
        "15",
        "--speed",
        "0",
        "--dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
    )
    output, _ = await asyncio.wait_for(process.communicate(), WAIT)
    text = output.decode()
    assert process.returncode == 0, text
    assert "Calls per source" in text
    assert re.search(r"live board: http://127\.0\.0\.1:\d+/board \(sign in as demo, password", text)
    assert text.count("answered by") + text.count("missed (") == 15
    # speed 0 plays the calls one after another: each line leads with its start, in order
    starts = re.findall(r"^(\d\d:\d\d:\d\d) started \(ended \d\d:\d\d:\d\d\): ", text, re.M)
    assert len(starts) == 15
    back = sum(later < earlier for earlier, later in pairwise(starts))
    assert back == 0 or (back == 1 and starts[-1] < starts[0])  # or once past midnight
    assert text.count("  route +") == 15  # each call asked the router over FastAGI first
    assert "Calls per manager" in text and "router decisions:" in text
    tasks = text.count(" opened: call back ") + text.count(" tried again (")
    assert tasks == text.count("missed (")  # every missed call opened or joined a callback task
    assert "callback tasks:" in text
    # website visitors were shown pool numbers, and their calls carry the visit
    visits = text.count("  website visit from a ")
    assert visits > 0
    assert text.count("    website visit ") == visits  # each visitor's call was credited
    assert "landing page with the snippet: http://127.0.0.1:" in text
    assert (tmp_path / "pbx-tracker.sqlite3").exists()
