"""Asterisk's side of FastAGI, for tests, the demo and the benchmark.

`run_agi_session` connects to a FastAGI server the way Asterisk's
`AGI(agi://host:port/script,...)` does: it sends the `agi_*` environment and a
blank line, then answers every command line until the server closes the
connection, holding the channel's variables (`GET VARIABLE` / `SET VARIABLE`).
It can hang the channel up mid-dialogue (`hangup_after`): an unsolicited
`HANGUP` line, then `511` to every command, as Asterisk does.

`env_for_call` builds an environment block shaped like the captured ones
(`sim.agi_traces` reads those) for generated calls; Asterisk's replies are
`sim.agi_dialogue`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pbx_tracker.sim.agi_dialogue import REPLY_DEAD, Env, answer

__all__ = ["AgiCall", "env_for_call", "run_agi_session"]

ASTERISK_VERSION = "GIT-master-f0c1c1a7b7"


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
            reply = REPLY_DEAD if call.hung_up else answer(command, call.variables)
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
