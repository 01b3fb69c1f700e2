"""Asterisk's side of FastAGI, for tests, the demo and the benchmark.

`run_agi_session` connects to a FastAGI server the way Asterisk's
`AGI(agi://host:port/script,...)` does: it sends the `agi_*` environment and a
blank line, then answers every command line until the server closes the
connection, holding the channel's variables (`GET VARIABLE` / `SET VARIABLE`).
It can hang the channel up mid-dialogue (`hangup_after`): an unsolicited
`HANGUP` line, then `511` to every command, as Asterisk does.

`read_agi_trace` reads the captured conversations in
tests/data/asterisk-traces/*.agi.txt; `env_for_call` builds an environment
block shaped like theirs for generated calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AgiCall",
    "AgiTraceSession",
    "env_for_call",
    "read_agi_trace",
    "run_agi_session",
]

Env = list[tuple[str, str]]

ASTERISK_VERSION = "GIT-master-f0c1c1a7b7"
REPLY_OK = "200 result=1"
REPLY_NOTHING = "200 result=0"
REPLY_UNKNOWN = "510 Invalid or unknown command"
REPLY_DEAD = "511 Command Not Permitted on a dead channel or intercept routine"
REPLY_TRYING = "100 result=0 Trying..."
_KNOWN = (
    "ANSWER",
    "ASYNCAGI BREAK",
    "CHANNEL STATUS",
    "CONTROL STREAM FILE",
    "DATABASE",
    "EXEC",
    "GET DATA",
    "GET FULL VARIABLE",
    "GET OPTION",
    "HANGUP",
    "NOOP",
    "RECEIVE CHAR",
    "RECORD FILE",
    "SAY",
    "SEND IMAGE",
    "SEND TEXT",
    "SET AUTOHANGUP",
    "SET CALLERID",
    "SET CONTEXT",
    "SET EXTENSION",
    "SET MUSIC",
    "SET PRIORITY",
    "STREAM FILE",
    "TDD MODE",
    "WAIT FOR DIGIT",
)


# -- captured conversations -----------------------------------------------------


@dataclass(slots=True)
class AgiTraceSession:
    """One captured FastAGI conversation: Asterisk's environment and each command's reply.

    `hangup_after` is the number of exchanges before an unsolicited `HANGUP`
    line, if the capture has one.
    """

    title: str = ""
    env: Env = field(default_factory=list)
    exchanges: list[tuple[str, str]] = field(default_factory=list)
    hangup_after: int | None = None

    @property
    def commands(self) -> list[str]:
        return [command for command, _ in self.exchanges]

    @property
    def replies(self) -> list[str]:
        return [reply for _, reply in self.exchanges]

    def variables_read(self) -> dict[str, str]:
        """The channel variables the router read (`GET VARIABLE` answered with a value)."""
        found: dict[str, str] = {}
        for command, reply in self.exchanges:
            words = _agi_args(command)
            if _is(words, "GET", "VARIABLE") and reply.startswith(REPLY_OK + " ("):
                found[words[2]] = reply[len(REPLY_OK) + 2 : reply.rindex(")")]
        return found

    def variables_set(self) -> dict[str, str]:
        """The channel variables the router set, in order (last value wins)."""
        found: dict[str, str] = {}
        for command, _ in self.exchanges:
            words = _agi_args(command)
            if _is(words, "SET", "VARIABLE") and len(words) == 4:
                found[words[2]] = words[3]
        return found


def read_agi_trace(path: str | Path) -> list[AgiTraceSession]:
    """The sessions of a `*.agi.txt` capture (`<< ` from Asterisk, `>> ` to it, `#` notes)."""
    reader = _TraceReader()
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        try:
            reader.feed(line)
        except ValueError as error:
            raise ValueError(f"{path}:{number}: {error}") from None
    return reader.sessions


class _TraceReader:
    """The state of reading one capture file, line by line."""

    def __init__(self) -> None:
        self.sessions: list[AgiTraceSession] = []
        self.in_header = False
        self.command: str | None = None
        self.reply: list[str] = []

    def feed(self, line: str) -> None:
        if line.startswith("# session"):
            self._start(line[2:])
        elif line.startswith("#") or not line.strip():
            return
        elif line.startswith(">> "):
            self._need_session()
            self.command = line[3:]
        elif line.startswith("<< "):
            self._from_asterisk(line[3:])
        else:
            raise ValueError(f"neither '<< ', '>> ' nor '#': {line!r}")

    def _start(self, title: str) -> None:
        self.sessions.append(AgiTraceSession(title=title))
        self.in_header = True
        self.command, self.reply = None, []

    def _need_session(self) -> AgiTraceSession:
        if not self.sessions:
            self._start("")
        return self.sessions[-1]

    def _from_asterisk(self, text: str) -> None:
        session = self._need_session()
        if self.in_header:
            if not text:
                self.in_header = False
                return
            key, separator, value = text.partition(": ")
            if not separator:
                raise ValueError(f"environment line without ': ': {text!r}")
            session.env.append((key, value))
        elif text == "HANGUP":
            session.hangup_after = len(session.exchanges)
        elif self.command is None:
            raise ValueError(f"a reply without a command: {text!r}")
        else:
            self.reply.append(text)
            if _reply_complete(self.reply):
                session.exchanges.append((self.command, "\n".join(self.reply)))
                self.command, self.reply = None, []


def _reply_complete(lines: Sequence[str]) -> bool:
    """True once `lines` end a reply: after `100 Trying`, and in a `520-` block, they go on."""
    first, last = lines[0], lines[-1]
    if first[3:4] == "-":
        return len(lines) > 1 and last.startswith(f"{first[:3]} ")
    return not last.startswith("100 ")


# -- a generated environment ----------------------------------------------------


def env_for_call(
    *,
    did: str,
    caller: str,
    uniqueid: str,
    channel: str,
    caller_name: str = "",
    script: str = "route",
    args: Sequence[str] | None = None,
) -> Env:
    """The environment Asterisk sends for `AGI(agi://127.0.0.1:4573/<script>,DID,CALLER)`.

    Shaped like the captured ones (tracked-inbound context, the DID as the
    extension); `args` replaces the default arguments (DID, caller).
    """
    arguments = [did, caller] if args is None else list(args)
    env = [
        ("agi_network", "yes"),
        ("agi_network_script", script),
        ("agi_request", f"agi://127.0.0.1:4573/{script}"),
        ("agi_channel", channel),
        ("agi_language", "en"),
        ("agi_type", channel.partition("/")[0]),
        ("agi_uniqueid", uniqueid),
        ("agi_version", ASTERISK_VERSION),
        ("agi_callerid", caller or "unknown"),
        ("agi_calleridname", caller_name or "unknown"),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", "tracked-inbound"),
        ("agi_extension", did),
        ("agi_priority", "9"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", "139855628420800"),
    ]
    env.extend((f"agi_arg_{number}", value) for number, value in enumerate(arguments, 1))
    return env


# -- one session as Asterisk ----------------------------------------------------


@dataclass(slots=True)
class AgiCall:
    """What happened in one session: commands received, replies sent, the channel's variables.

    `server_closed` is True when the server ended the session (EOF or reset),
    as it must after its handler returns.
    """

    commands: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    hung_up: bool = False
    server_closed: bool = False


async def run_agi_session(
    host: str,
    port: int,
    env: Sequence[tuple[str, str]],
    variables: Mapping[str, str] | None = None,
    *,
    hangup_after: int | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109 - one deadline for the whole session
    local_addr: tuple[str, int] | None = None,
) -> AgiCall:
    """Play Asterisk for one FastAGI session; returns when the server closes it.

    `hangup_after=N` hangs the channel up after the N-th reply (0: right after
    the environment).  `timeout` bounds the whole session: TimeoutError if the
    server has not closed it by then.  `local_addr` picks the client address.
    """
    call = AgiCall(variables=dict(variables or {}))
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, local_addr=local_addr)
            try:
                await _converse(reader, writer, env, call, hangup_after)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
    except TimeoutError:
        raise TimeoutError(
            f"FastAGI session to {host}:{port} still open after {timeout} s "
            f"(commands so far: {call.commands})"
        ) from None
    return call


async def _converse(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    env: Sequence[tuple[str, str]],
    call: AgiCall,
    hangup_after: int | None,
) -> None:
    header = "".join(f"{key}: {value}\n" for key, value in env) + "\n"
    try:
        writer.write(header.encode("utf-8"))
        if hangup_after == 0:
            _hang_up(writer, call)
        await writer.drain()
        while True:
            raw = await reader.readline()
            if not raw.endswith(b"\n"):
                break
            command = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            call.commands.append(command)
            reply = REPLY_DEAD if call.hung_up else _answer(command, call.variables)
            call.replies.append(reply)
            writer.write(reply.encode("utf-8") + b"\n")
            if hangup_after == len(call.commands):
                _hang_up(writer, call)
            await writer.drain()
    except ConnectionError:
        pass
    call.server_closed = True


def _hang_up(writer: asyncio.StreamWriter, call: AgiCall) -> None:
    writer.write(b"HANGUP\n")
    call.hung_up = True


def _answer(command: str, variables: dict[str, str]) -> str:
    """Asterisk's reply to `command` on a live channel holding `variables`."""
    words = _agi_args(command)
    if _is(words, "GET", "VARIABLE"):
        if len(words) != 3:
            return _usage("GET VARIABLE <variablename>")
        value = variables.get(words[2])
        return REPLY_NOTHING if value is None else f"{REPLY_OK} ({value})"
    if _is(words, "SET", "VARIABLE"):
        if len(words) != 4:
            return _usage("SET VARIABLE <variablename> <value>")
        variables[words[2]] = words[3]
        return REPLY_OK
    if _is(words, "VERBOSE"):
        return REPLY_OK
    if _is(words, "GOSUB"):
        return f"{REPLY_TRYING}\n{REPLY_NOTHING}"
    spoken = " ".join(words).upper()
    if any(spoken == known or spoken.startswith(known + " ") for known in _KNOWN):
        return REPLY_NOTHING
    return REPLY_UNKNOWN


def _usage(usage: str) -> str:
    return (
        "520-Invalid command syntax.  Proper usage follows:\n"
        f" Usage: {usage}\n"
        "520 End of proper usage."
    )


def _is(words: Sequence[str], *command: str) -> bool:
    return [word.upper() for word in words[: len(command)]] == list(command)


def _agi_args(line: str) -> list[str]:
    """A command line split as Asterisk does: spaces separate, `"` groups, `\\` escapes."""
    words: list[str] = []
    current: list[str] = []
    quoted = escaped = started = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = started = True
        elif char == '"':
            quoted = not quoted
            started = True
        elif char in " \t" and not quoted:
            if started:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        words.append("".join(current))
    return words
