"""agi_scripts/pbx-tracker-route.agi, the classic-AGI bridge, run as Asterisk runs it.

The real script runs as a subprocess; the test plays Asterisk on its stdin/stdout (the AGI
environment of a captured call, then a reply to every command) and the daemon's FastAGI
router with a stub server on a loopback port that sends a captured call's commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from traces import TRACES

SCRIPT = Path(__file__).parents[2] / "agi_scripts" / "pbx-tracker-route.agi"
CONF_ENV = "PBX_TRACKER_AGI_CONF"
ROUTER_TIMEOUT = 0.5  # [router] timeout in the tests' config
MARGIN = 1.0  # interpreter start-up and the fallback dialogue, generously
BOUND = 10.0  # every wait in this module
MARIA = "Мария Иванова"
TRYING = "100 result=0 Trying..."
USAGE_520 = [
    "520-Invalid command syntax.  Proper usage follows:",
    " Usage: SET VARIABLE <variablename> <value>",
    "\tSets a variable to the current channel.",
    "520 End of proper usage.",
]
DEAD = "511 Command Not Permitted on a dead channel or intercept routine"


# -- the captured calls ------------------------------------------------------------------


@dataclass
class Trace:
    env: list[str]  # as classic AGI gives it: no agi_network lines, agi_request = the script
    commands: list[str]
    replies: list[list[str]]
    channel: dict[str, str]  # what Asterisk answered to GET VARIABLE


def load_trace(name: str) -> Trace:
    """The first FastAGI session of `<name>.agi.txt`."""
    trace = Trace([], [], [], {})
    in_env = True
    for raw in (TRACES / f"{name}.agi.txt").read_text(encoding="utf-8").splitlines():
        if raw.startswith("# session") and trace.commands:
            break
        if raw.startswith("#"):
            continue
        direction, text = raw[:2], raw[3:]
        if in_env:
            if not text:
                in_env = False
            elif text.startswith("agi_request:"):
                trace.env.append("agi_request: pbx-tracker-route.agi")
            elif not text.startswith("agi_network"):
                trace.env.append(text)
        elif direction == ">>":
            trace.commands.append(text)
            trace.replies.append([])
        else:
            trace.replies[-1].append(text)
            found = re.fullmatch(r"GET VARIABLE (\S+)", trace.commands[-1])
            value = re.fullmatch(r"200 result=1 \((.*)\)", text)
            if found and value:
                trace.channel[found[1]] = value[1]
    return trace


def router_header(env: list[str], script: str = "route") -> list[str]:
    return ["agi_network: yes", f"agi_network_script: {script}", *env]


def fallback_commands(reason: str, dial: str = "", timeout: int = 20) -> list[str]:
    commands = ['SET VARIABLE ROUTE_STATUS "FALLBACK"']
    if dial:
        commands += [f'SET VARIABLE ROUTE_TO "{dial}"', f'SET VARIABLE ROUTE_TIMEOUT "{timeout}"']
    shown = dial or "dialplan default"
    commands.append(f'VERBOSE "pbx-tracker: router unreachable ({reason}), fallback {shown}" 1')
    return commands


# -- the router stub ---------------------------------------------------------------------


async def read_reply(
    reader: asyncio.StreamReader, seen: defaultdict[str, asyncio.Event]
) -> list[str]:
    """One AGI reply: `100 …` lines before the final one, `NNN-…` blocks up to `NNN …`."""
    lines: list[str] = []
    closing = ""
    while True:
        raw = await asyncio.wait_for(reader.readline(), BOUND)
        if not raw:
            return lines
        line = raw.decode("utf-8").removesuffix("\n")
        lines.append(line)
        seen[line].set()
        if closing:
            if line.startswith(closing):
                return lines
        elif re.match(r"\d{3}-", line):
            closing = line[:3] + " "
        elif not line.startswith("100 "):
            return lines


class StubRouter:
    """The daemon's FastAGI side: reads the header, sends `commands`, reads each reply.

    `stall_after=N` stops after N commands without closing (until the bridge hangs up).
    """

    def __init__(self, commands: list[str], stall_after: int | None = None) -> None:
        self.commands = commands
        self.stall_after = stall_after
        self.header: list[str] = []
        self.replies: list[list[str]] = []
        self.seen: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.sessions: list[asyncio.Task[None]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> StubRouter:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        await asyncio.wait_for(asyncio.gather(*self.sessions), BOUND)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.sessions.append(task)
        try:
            header = await asyncio.wait_for(reader.readuntil(b"\n\n"), BOUND)
            self.header = header.decode("utf-8").split("\n")[:-2]
            for number, command in enumerate(self.commands):
                if number == self.stall_after:
                    break
                writer.write(command.encode("utf-8") + b"\n")
                await writer.drain()
                reply = await read_reply(reader, self.seen)
                self.replies.append(reply)
                if not reply:  # the bridge hung up
                    return
            if self.stall_after is not None:
                await asyncio.wait_for(reader.read(), BOUND)  # until the bridge gives up
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# -- Asterisk's side ---------------------------------------------------------------------


class Leave(Exception):
    """Raised by a responder: Asterisk closes the script's stdin instead of replying."""


Responder = Callable[["FakeAsterisk", str], Awaitable[list[str] | None]]


@dataclass
class FakeAsterisk:
    """Answers AGI commands like res_agi does for GET/SET VARIABLE and VERBOSE."""

    channel: dict[str, str] = field(default_factory=dict)
    respond: Responder | None = None  # tried first; None from it = the default answer
    commands: list[str] = field(default_factory=list)
    set_variables: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None

    async def answer(self, command: str) -> list[str]:
        if self.respond is not None:
            special = await self.respond(self, command)
            if special is not None:
                return special
        if found := re.fullmatch(r"GET VARIABLE (\S+)", command):
            value = self.channel.get(found[1])
            return ["200 result=0"] if value is None else [f"200 result=1 ({value})"]
        if found := re.fullmatch(r'SET VARIABLE (\S+) "(.*)"', command):
            self.channel[found[1]] = self.set_variables[found[1]] = found[2]
            return ["200 result=1"]
        if command.startswith("VERBOSE "):
            return ["200 result=1"]
        return ["510 Invalid or unknown command"]

    async def write(self, *lines: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
        await self.process.stdin.drain()


@dataclass
class Run:
    returncode: int
    elapsed: float
    stderr: str


def write_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    path = tmp_path / "agi.conf"
    path.write_text(
        f"[router]\nport = {port}\ntimeout = {ROUTER_TIMEOUT}\n{extra}", encoding="utf-8"
    )
    return path


async def run_script(asterisk: FakeAsterisk, env: list[str], config: Path) -> Run:
    """Start the script as Asterisk would, answer every command, wait for it to exit."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "74951110001",
        "79161234501",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, CONF_ENV: str(config)},
    )
    asterisk.process = process
    assert process.stdin is not None and process.stdout is not None
    try:
        await asterisk.write(*env, "")
        while line := await asyncio.wait_for(process.stdout.readline(), BOUND):
            command = line.decode("utf-8").removesuffix("\n")
            asterisk.commands.append(command)
            try:
                reply = await asterisk.answer(command)
            except Leave:
                process.stdin.close()
                continue
            await asterisk.write(*reply)
        _, stderr = await asyncio.wait_for(process.communicate(), BOUND)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    elapsed = time.monotonic() - started
    text = stderr.decode("utf-8", "replace")
    assert "Traceback" not in text
    assert process.returncode is not None
    return Run(process.returncode, elapsed, text)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the relay ---------------------------------------------------------------------------


EXPECTED_VARIABLES = {
    "01_answered_simple": {"ROUTE_TO": "IAX2/101/101", "ROUTE_TIMEOUT": "20"},
    "06_ringgroup": {
        "ROUTE_TO": "IAX2/101/101&IAX2/102/102&IAX2/103/103",
        "ROUTE_TIMEOUT": "20",
    },
    "07_queue_answered": {"ROUTE_TIMEOUT": "60", "ROUTE_QUEUE": "sales"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_VARIABLES))
async def test_relays_the_captured_dialogue(name: str, tmp_path: Path) -> None:
    """For each captured call the bridge passes Asterisk's commands and the router's replies through
    unchanged, the call gets the variables the router set and no fallback, and the script exits 0
    without a word on stderr."""
    trace = load_trace(name)
    asterisk = FakeAsterisk(channel=dict(trace.channel))
    async with StubRouter(trace.commands) as router:
        run = await run_script(asterisk, trace.env, write_config(tmp_path, router.port))

    assert router.header == router_header(trace.env)
    assert asterisk.commands == trace.commands
    assert router.replies == trace.replies
    assert asterisk.set_variables == EXPECTED_VARIABLES[name]
    assert "ROUTE_STATUS" not in asterisk.set_variables
    assert run.returncode == 0
    assert run.stderr == ""


async def test_cyrillic_passes_both_ways_intact(tmp_path: Path) -> None:
    """A caller's Cyrillic name, a Cyrillic channel variable and a Cyrillic note set by the router
    reach each side without being garbled."""
    trace = load_trace("06_ringgroup")
    assert f"agi_calleridname: {MARIA}" in trace.env
    commands = [
        "GET VARIABLE CALLER_NOTE",
        f'VERBOSE "звонок: {MARIA}" 1',
        'SET VARIABLE ROUTE_NOTE "постоянный клиент"',
    ]
    asterisk = FakeAsterisk(channel={"CALLER_NOTE": "перезвонить Ивану"})
    async with StubRouter(commands) as router:
        run = await run_script(asterisk, trace.env, write_config(tmp_path, router.port))

    assert f"agi_calleridname: {MARIA}" in router.header
    assert asterisk.commands == commands
    assert router.replies[0] == ["200 result=1 (перезвонить Ивану)"]
    assert asterisk.set_variables == {"ROUTE_NOTE": "постоянный клиент"}
    assert run.returncode == 0


async def test_interim_100_and_multiline_520_are_relayed(tmp_path: Path) -> None:
    """A Gosub's interim "100 Trying" reaches the router as it comes, before the final line, and a
    multi-line 520 usage answer arrives whole."""
    commands = ["EXEC Gosub sub-route,s,1", "SET VARIABLE ROUTE_TO", 'VERBOSE "done" 1']
    router = StubRouter(commands)

    async def respond(asterisk: FakeAsterisk, command: str) -> list[str] | None:
        if command.startswith("EXEC Gosub"):
            await asterisk.write(TRYING)
            # the final line only once the router has the interim one: relayed as it comes
            await asyncio.wait_for(router.seen[TRYING].wait(), BOUND)
            return ["200 result=0 Gosub complete"]
        if command == "SET VARIABLE ROUTE_TO":
            return USAGE_520
        return None

    trace = load_trace("01_answered_simple")
    asterisk = FakeAsterisk(respond=respond)
    async with router:
        run = await run_script(asterisk, trace.env, write_config(tmp_path, router.port))

    assert asterisk.commands == commands
    assert router.replies == [[TRYING, "200 result=0 Gosub complete"], USAGE_520, ["200 result=1"]]
    assert run.returncode == 0


async def test_sighup_from_a_hang_up_does_not_stop_the_relay(tmp_path: Path) -> None:
    """A caller hanging up (Asterisk sends SIGHUP) does not kill the bridge: the router still gets
    "511 dead channel" for each remaining command and the script exits 0."""
    trace = load_trace("01_answered_simple")
    hung_up = False

    async def respond(asterisk: FakeAsterisk, command: str) -> list[str] | None:
        nonlocal hung_up
        if hung_up:
            return [DEAD]  # what res_agi answers once the channel is gone
        assert asterisk.process is not None
        asterisk.process.send_signal(signal.SIGHUP)
        hung_up = True
        return None

    asterisk = FakeAsterisk(channel=dict(trace.channel), respond=respond)
    async with StubRouter(trace.commands) as router:
        run = await run_script(asterisk, trace.env, write_config(tmp_path, router.port))

    assert asterisk.commands == trace.commands
    assert router.replies == [trace.replies[0]] + [[DEAD]] * (len(trace.commands) - 1)
    assert run.returncode == 0


async def test_asterisk_closing_stdin_ends_the_script(tmp_path: Path) -> None:
    """When Asterisk closes the script's input mid-call the router sees the bridge hang up and the
    script exits 0 at once."""
    trace = load_trace("01_answered_simple")

    async def respond(asterisk: FakeAsterisk, command: str) -> list[str] | None:
        raise Leave

    asterisk = FakeAsterisk(respond=respond)
    async with StubRouter(trace.commands) as router:
        run = await run_script(asterisk, trace.env, write_config(tmp_path, router.port))

    assert asterisk.commands == trace.commands[:1]
    assert router.replies == [[]]  # it saw the bridge hang up instead of a reply
    assert run.returncode == 0
    assert run.elapsed < MARGIN


# -- fallback ----------------------------------------------------------------------------


FALLBACK_CONFIG = "[fallback]\ndial = IAX2/104/104\ntimeout = 15\n"


async def test_router_down_sets_the_fallback_quickly(tmp_path: Path) -> None:
    """With the router not listening the call is sent to the configured fallback phone within the
    router timeout, and stderr says "connection refused"."""
    trace = load_trace("01_answered_simple")
    asterisk = FakeAsterisk(channel={"ROUTE_TO": "IAX2/101/101&IAX2/102/102"})
    config = write_config(tmp_path, closed_port(), FALLBACK_CONFIG)
    run = await run_script(asterisk, trace.env, config)

    assert asterisk.commands == fallback_commands("connection refused", "IAX2/104/104", 15)
    assert asterisk.set_variables == {
        "ROUTE_STATUS": "FALLBACK",
        "ROUTE_TO": "IAX2/104/104",
        "ROUTE_TIMEOUT": "15",
    }
    assert run.returncode == 0
    assert run.elapsed < ROUTER_TIMEOUT + MARGIN
    assert "connection refused" in run.stderr


async def test_fallback_without_a_dial_keeps_the_dialplans_route(tmp_path: Path) -> None:
    """With the router down and no fallback phone configured only ROUTE_STATUS=FALLBACK is set, so
    the dialplan rings whom it would have rung anyway."""
    trace = load_trace("01_answered_simple")
    asterisk = FakeAsterisk()
    run = await run_script(asterisk, trace.env, write_config(tmp_path, closed_port()))

    assert asterisk.commands == fallback_commands("connection refused")
    assert asterisk.set_variables == {"ROUTE_STATUS": "FALLBACK"}
    assert run.returncode == 0


async def test_router_that_never_answers_is_given_up_within_the_bound(tmp_path: Path) -> None:
    """A router that accepts the call but never sends a command is given up after the router timeout
    and the call goes to the fallback phone."""
    trace = load_trace("01_answered_simple")
    asterisk = FakeAsterisk()
    async with StubRouter(trace.commands, stall_after=0) as router:
        config = write_config(tmp_path, router.port, FALLBACK_CONFIG)
        run = await run_script(asterisk, trace.env, config)

    assert router.header == router_header(trace.env)
    reason = f"no command within {ROUTER_TIMEOUT:g}s"
    assert asterisk.commands == fallback_commands(reason, "IAX2/104/104", 15)
    assert run.returncode == 0
    assert ROUTER_TIMEOUT <= run.elapsed < ROUTER_TIMEOUT + MARGIN


async def test_router_stalling_mid_dialogue_falls_back(tmp_path: Path) -> None:
    """A router that goes quiet after its first command is given up after the router timeout, and
    the call still goes to the fallback phone."""
    trace = load_trace("01_answered_simple")
    asterisk = FakeAsterisk(channel=dict(trace.channel))
    async with StubRouter(trace.commands, stall_after=1) as router:
        config = write_config(tmp_path, router.port, FALLBACK_CONFIG)
        run = await run_script(asterisk, trace.env, config)

    reason = f"stalled {ROUTER_TIMEOUT:g}s after 1 command"
    assert asterisk.commands == [
        trace.commands[0],
        *fallback_commands(reason, "IAX2/104/104", 15),
    ]
    assert router.replies == trace.replies[:1]
    assert asterisk.set_variables["ROUTE_STATUS"] == "FALLBACK"
    assert run.returncode == 0
    assert ROUTER_TIMEOUT <= run.elapsed < ROUTER_TIMEOUT + MARGIN


async def test_router_closing_without_a_command_falls_back(tmp_path: Path) -> None:
    """A router that hangs up without sending a command leaves the call on the fallback route, with
    the reason logged to Asterisk."""
    trace = load_trace("01_answered_simple")
    asterisk = FakeAsterisk()
    async with StubRouter([]) as router:
        run = await run_script(asterisk, trace.env, write_config(tmp_path, router.port))

    assert router.header == router_header(trace.env)
    assert asterisk.commands == fallback_commands("closed without a command")
    assert run.returncode == 0


async def test_no_environment_on_stdin_still_exits_cleanly(tmp_path: Path) -> None:
    """Run with nothing on its input the script only sets ROUTE_STATUS=FALLBACK and exits 0 without
    a traceback."""
    config = write_config(tmp_path, closed_port())
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, CONF_ENV: str(config)},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), BOUND)

    assert process.returncode == 0
    assert stdout == b'SET VARIABLE ROUTE_STATUS "FALLBACK"\n'
    assert b"Traceback" not in stderr


# -- configuration and --check -----------------------------------------------------------


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=BOUND,
        env={**os.environ, CONF_ENV: str(config)},
        check=False,
    )


def test_no_config_file_means_the_defaults(tmp_path: Path) -> None:
    """The check of a missing agi.conf says the file was not found and lists the defaults it uses
    (router 127.0.0.1:4573, timeout 1 s, fallback 20 s)."""
    result = check(tmp_path / "missing.conf")

    assert result.stdout.splitlines()[:7] == [
        f"config: {tmp_path / 'missing.conf'} (not found, defaults)",
        "[router] host = 127.0.0.1",
        "[router] port = 4573",
        "[router] script = route",
        "[router] timeout = 1.0",
        "[fallback] dial = ",
        "[fallback] timeout = 20",
    ]
    assert result.stderr == ""


def test_a_bad_value_is_reported_and_replaced_by_its_default(tmp_path: Path) -> None:
    """A port out of range, a timeout that is not a number or a dial string with quotes is named on
    stderr and replaced by its default, while the good values are kept."""
    config = tmp_path / "agi.conf"
    config.write_text(
        "[router]\nport = 70000\ntimeout = soon\nscript = route-b\n"
        '[fallback]\ndial = IAX2/"101"\ntimeout = 15\n',
        encoding="utf-8",
    )
    result = check(config)

    assert "[router] port = 4573" in result.stdout
    assert "[router] timeout = 1.0" in result.stdout
    assert "[router] script = route-b" in result.stdout
    assert "[fallback] dial = \n" in result.stdout
    assert "[fallback] timeout = 15" in result.stdout
    for key in ("[router] port", "[router] timeout", "[fallback] dial"):
        assert key in result.stderr


def test_check_tells_whether_the_router_accepts_connections(tmp_path: Path) -> None:
    """The check exits 0 saying "accepts connections" when the router listens, and 1 saying "no
    answer (connection refused)" when it does not."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        up = check(write_config(tmp_path, server.getsockname()[1]))
    down = check(write_config(tmp_path, closed_port()))

    assert up.returncode == 0
    assert "accepts connections" in up.stdout
    assert down.returncode == 1
    assert "no answer (connection refused)" in down.stdout
