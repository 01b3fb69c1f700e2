"""sd_notify over real AF_UNIX datagram sockets, the watchdog, and the shipped unit files."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pbx_tracker import systemd

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "pbx-tracker.service"
DAEMON_DRAIN_SECONDS = 20  # the daemon's bounded shutdown; systemd must wait longer
MAX_UNIX_PATH = 100  # sun_path holds 108 bytes


@pytest.fixture(name="receiver")
def _receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    """A bound datagram socket standing in for systemd, and the environ naming it."""
    folder = tmp_path
    if len(str(tmp_path / "notify")) > MAX_UNIX_PATH:
        folder = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    path = folder / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield sock, {"NOTIFY_SOCKET": str(path)}
    path.unlink(missing_ok=True)
    if folder != tmp_path:
        folder.rmdir()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


class TestNotify:
    def test_ready(self, receiver: tuple[socket.socket, dict[str, str]]) -> None:
        """`ready()` delivers READY=1 to the socket in NOTIFY_SOCKET."""
        sock, environ = receiver

        assert systemd.ready(environ)
        assert receive(sock) == "READY=1"

    def test_each_helper(self, receiver: tuple[socket.socket, dict[str, str]]) -> None:
        """STATUS, STOPPING and WATCHDOG arrive as one datagram each, in order."""
        sock, environ = receiver

        assert systemd.status("AMI connected to 127.0.0.1:5038", environ)
        assert systemd.watchdog_ping(environ)
        assert systemd.stopping(environ)
        assert [receive(sock) for _ in range(3)] == [
            "STATUS=AMI connected to 127.0.0.1:5038",
            "WATCHDOG=1",
            "STOPPING=1",
        ]

    def test_status_is_one_line(self, receiver: tuple[socket.socket, dict[str, str]]) -> None:
        """A newline in a status cannot smuggle in another assignment (READY=1)."""
        sock, environ = receiver

        assert systemd.status("AMI down\nREADY=1", environ)
        assert receive(sock) == "STATUS=AMI down READY=1"

    def test_several_assignments(self, receiver: tuple[socket.socket, dict[str, str]]) -> None:
        """`notify()` sends its message verbatim, so assignments can be combined."""
        sock, environ = receiver

        assert systemd.notify("READY=1\nSTATUS=ready", environ)
        assert receive(sock) == "READY=1\nSTATUS=ready"

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets: Linux")
    def test_abstract_namespace(self) -> None:
        """An address starting with '@' names a socket in the abstract namespace."""
        name = f"pbx-tracker-test-{uuid.uuid4().hex}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind("\0" + name)
            sock.settimeout(5)

            assert systemd.ready({"NOTIFY_SOCKET": "@" + name})
            assert receive(sock) == "READY=1"

    @pytest.mark.parametrize(
        "environ",
        [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}],
        ids=["unset", "empty", "unsupported"],
    )
    def test_no_socket_is_a_no_op(self, environ: dict[str, str]) -> None:
        """Outside systemd (or with a transport we do not speak) nothing is sent."""
        assert not systemd.ready(environ)

    def test_missing_socket_does_not_raise(self, tmp_path: Path) -> None:
        """A stale NOTIFY_SOCKET path is reported as False, not as an exception."""
        assert not systemd.ready({"NOTIFY_SOCKET": str(tmp_path / "gone")})


class TestWatchdogInterval:
    @pytest.mark.parametrize(
        ("environ", "expected"),
        [
            ({"WATCHDOG_USEC": "30000000"}, 15.0),
            ({"WATCHDOG_USEC": "1000"}, 0.0005),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "nope"}, None),
            ({"WATCHDOG_USEC": "0"}, None),
            ({"WATCHDOG_USEC": "-5"}, None),
            ({"WATCHDOG_USEC": "30s"}, None),
            ({"WATCHDOG_PID": str(os.getpid())}, None),
            ({}, None),
        ],
        ids=[
            "half",
            "small",
            "our-pid",
            "other-pid",
            "bad-pid",
            "zero",
            "negative",
            "not-a-number",
            "pid-only",
            "unset",
        ],
    )
    def test_parsing(self, environ: dict[str, str], expected: float | None) -> None:
        """Half of WATCHDOG_USEC in seconds, only when the watchdog is meant for us."""
        assert expected == systemd.watchdog_interval(environ)


class TestWatchdogLoop:
    async def test_pings_until_stopped(
        self, receiver: tuple[socket.socket, dict[str, str]]
    ) -> None:
        """Pings repeat every interval and end once the stop event is set."""
        sock, environ = receiver
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.create_task(systemd.watchdog_loop(0.01, stop, environ=environ))

        async with asyncio.timeout(5):
            pings = [(await loop.sock_recv(sock, 4096)).decode() for _ in range(3)]
            stop.set()
            await task
        assert pings == ["WATCHDOG=1"] * 3

    async def test_stop_interrupts_the_wait(
        self, receiver: tuple[socket.socket, dict[str, str]]
    ) -> None:
        """Setting stop ends the loop at once, not after the (long) interval."""
        sock, environ = receiver
        sock.setblocking(False)
        stop = asyncio.Event()
        task = asyncio.create_task(systemd.watchdog_loop(3600, stop, environ=environ))

        async with asyncio.timeout(5):
            assert await asyncio.get_running_loop().sock_recv(sock, 4096) == b"WATCHDOG=1"
            stop.set()
            await task

    async def test_already_stopped(self, receiver: tuple[socket.socket, dict[str, str]]) -> None:
        """With stop already set the loop returns without pinging."""
        sock, environ = receiver
        stop = asyncio.Event()
        stop.set()

        async with asyncio.timeout(5):
            await systemd.watchdog_loop(0.01, stop, environ=environ)
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(4096)

    async def test_failed_pings_warn_once(self, tmp_path: Path) -> None:
        """A broken notify socket is logged once, not at every ping."""
        stop = asyncio.Event()
        environ = {"NOTIFY_SOCKET": str(tmp_path / "gone")}
        with capture_logs() as captured:
            task = asyncio.create_task(systemd.watchdog_loop(0.001, stop, environ=environ))
            await asyncio.sleep(0.05)
            stop.set()
            async with asyncio.timeout(5):
                await task

        assert [e["event"] for e in captured] == ["systemd.watchdog_ping_failed"]

    async def test_interval_must_be_positive(self) -> None:
        """A zero interval would spin the event loop: refused."""
        with pytest.raises(ValueError, match="positive"):
            await systemd.watchdog_loop(0, asyncio.Event())


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """`section -> key -> values` of a systemd unit file (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            current = sections.setdefault(stripped.strip("[]"), {})
            continue
        key, sep, value = stripped.partition("=")
        assert sep and current is not None, f"{path.name}:{number}: not key=value: {line!r}"
        assert "#" not in value, f"{path.name}:{number}: systemd has no inline comments"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(span: str) -> float:
    """A systemd time span such as '30', '30s' or '1min 30s'."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+)\s*([a-z]*)", span)
    return sum(int(number) * units[unit] for number, unit in parts)


@pytest.fixture(name="unit", scope="module")
def _unit() -> dict[str, dict[str, list[str]]]:
    return unit_settings(UNIT)


class TestServiceUnit:
    def test_notify_type(self, unit: dict[str, dict[str, list[str]]]) -> None:
        """The daemon reports readiness itself; only its main process may notify."""
        assert unit["Service"]["Type"] == ["notify"]
        assert unit["Service"]["NotifyAccess"] == ["main"]

    def test_watchdog_and_stop_timeout(self, unit: dict[str, dict[str, list[str]]]) -> None:
        """A watchdog is asked for, and systemd waits longer than the daemon's drain."""
        service = unit["Service"]
        assert seconds(service["WatchdogSec"][-1]) > 0
        assert seconds(service["TimeoutStopSec"][-1]) > DAEMON_DRAIN_SECONDS
        assert service["Restart"] == ["on-failure"]

    def test_commands(self, unit: dict[str, dict[str, list[str]]]) -> None:
        """The config is checked before `run` starts, with the same --config."""
        service = unit["Service"]
        [pre] = service["ExecStartPre"]
        [start] = service["ExecStart"]
        assert pre.split()[1:3] == ["check-config", "--config"]
        assert start.split()[1:3] == ["run", "--config"]
        assert pre.split()[-1] == start.split()[-1] == "/etc/pbx-tracker/config.yaml"

    def test_hardening(self, unit: dict[str, dict[str, list[str]]]) -> None:
        """Unprivileged user, read-only system, state in its StateDirectory only."""
        service = unit["Service"]
        assert ["pbx-tracker"] == service["User"] == service["Group"]
        assert service["NoNewPrivileges"] == ["yes"]
        assert service["ProtectSystem"] == ["strict"]
        assert service["StateDirectory"] == ["pbx-tracker"]
        assert service["CapabilityBoundingSet"] == [""]
        assert "ReadWritePaths" not in service

    def test_secrets_file_is_optional(self, unit: dict[str, dict[str, list[str]]]) -> None:
        """The environment file with secrets may be absent ('-' prefix)."""
        assert unit["Service"]["EnvironmentFile"] == ["-/etc/pbx-tracker/pbx-tracker.env"]

    def test_installable(self, unit: dict[str, dict[str, list[str]]]) -> None:
        """`systemctl enable` has a target to hook into."""
        assert unit["Install"]["WantedBy"] == ["multi-user.target"]


class TestSystemUser:
    def test_sysusers_line(self) -> None:
        """sysusers.d creates the pbx-tracker user with its state folder as home."""
        entries = [
            line.split(maxsplit=1)
            for line in (ROOT / "systemd" / "pbx-tracker.sysusers").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert entries == [["u", 'pbx-tracker - "pbx-tracker daemon" /var/lib/pbx-tracker']]

    def test_tmpfiles_folders(self) -> None:
        """tmpfiles.d makes the config folder readable by the group and the state folder ours."""
        entries = [
            line.split()
            for line in (ROOT / "systemd" / "pbx-tracker.tmpfiles").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert entries == [
            ["d", "/etc/pbx-tracker", "0750", "root", "pbx-tracker", "-"],
            ["d", "/var/lib/pbx-tracker", "0750", "pbx-tracker", "pbx-tracker", "-"],
        ]


STUCK_THREAD = """
import threading, time
from pbx_tracker.systemd import exit_service
threading.Thread(target=threading.Event().wait, name="stuck-connection").start()
threading.Thread(target=time.sleep, args=(0.2,), name="last-write").start()
exit_service(3, grace=1.0)
"""


@pytest.mark.parametrize("stuck", [True, False], ids=["a-thread-never-ends", "threads-end"])
def test_a_stopped_daemon_exits_even_if_a_thread_never_ends(stuck: bool) -> None:
    """After the daemon stopped, a thread that ends soon is waited for; one a library left
    waiting for ever is named in the log and does not keep the service running."""
    script = STUCK_THREAD if stuck else STUCK_THREAD.replace("threading.Event().wait", "int")
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert run.returncode == 3, run.stderr
    assert ("systemd.threads_left" in run.stdout + run.stderr) is stuck
    assert ("stuck-connection" in run.stdout + run.stderr) is stuck
