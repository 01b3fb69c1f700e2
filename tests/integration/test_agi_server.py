"""The FastAGI server over loopback: captured Asterisk sessions, then every fault we know of.

Each fault test ends with a normal call that must be served at once: a fault
costs its own session and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from pbx_tracker.agi.protocol import AgiReply, AgiRequest
from pbx_tracker.agi.server import AgiServerStats, AgiSession, AgiSessionClosed, FastAgiServer
from pbx_tracker.agi.settings import AgiSettings
from pbx_tracker.sim.agi_client import AgiCall, env_for_call, run_agi_session
from pbx_tracker.sim.agi_traces import AgiTraceSession, read_agi_trace

TRACES = Path(__file__).parents[1] / "data" / "asterisk-traces"
TIMEOUT = 5.0
MARIA = "\u041c\u0430\u0440\u0438\u044f \u0418\u0432\u0430\u043d\u043e\u0432\u0430"
CAPTURED = [
    pytest.param(session, id=f"{path.name.removesuffix('.agi.txt')}-{number}")
    for path in sorted(TRACES.glob("*.agi.txt"))
    for number, session in enumerate(read_agi_trace(path), 1)
]
Handler = Callable[[AgiSession], Awaitable[None]]
Logs = list[dict[str, Any]]


# -- helpers ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(handlers: dict[str, Handler], **settings: Any) -> AsyncIterator[FastAgiServer]:
    """A started server on 127.0.0.1, a free port; its counters must add up at the end."""
    server = FastAgiServer(handlers, AgiSettings(port=0, **settings))
    async with server:
        yield server
    assert_accounted(server.stats)


def assert_accounted(stats: AgiServerStats) -> None:
    ended = stats.completed + stats.refused + stats.malformed + stats.timeouts
    ended += stats.hangups + stats.errors + stats.cancelled
    assert stats.sessions == stats.active + ended, stats


def call_env(number: int = 1, script: str = "route") -> list[tuple[str, str]]:
    return env_for_call(
        did="74951110001",
        caller=f"7916000000{number}",
        uniqueid=f"1795348437.{number}",
        channel=f"IAX2/carrier-{number}",
        script=script,
    )


async def router(session: AgiSession) -> None:
    """A plain router: reads the source, rings 101."""
    source = await session.get_variable("TRACK_SOURCE")
    await session.set_variable("ROUTE_TO", "IAX2/101/101")
    await session.verbose(f"route {session.request.args[0]} ({source}) -> IAX2/101/101")


async def call(server: FastAgiServer, number: int = 1, **options: Any) -> AgiCall:
    env = options.pop("env", None) or call_env(number)
    variables = options.pop("variables", {"TRACK_SOURCE": "yandex-direct"})
    return await run_agi_session("127.0.0.1", server.port, env, variables, **options)


async def assert_served(server: FastAgiServer) -> None:
    """A normal call right after a fault gets its answer."""
    done = server.stats.completed
    answered = await call(server, 9, timeout=TIMEOUT)
    assert answered.variables["ROUTE_TO"] == "IAX2/101/101"
    assert answered.server_closed
    assert server.stats.completed == done + 1


def logged(logs: Logs, event: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


def only_our_task_left() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


class RawAsterisk:
    """Asterisk's side by hand, for dialogues `run_agi_session` will not play (faults)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, server: FastAgiServer) -> AsyncIterator[RawAsterisk]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            yield cls(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def send(self, data: bytes) -> None:
        """Write `data`; a server that already closed is fine (that is what we test)."""
        with contextlib.suppress(ConnectionError):
            self.writer.write(data)
            await self.writer.drain()

    async def send_env(self, env: list[tuple[str, str]], then: bytes = b"") -> None:
        header = "".join(f"{key}: {value}\n" for key, value in env) + "\n"
        await self.send(header.encode() + then)

    async def command(self) -> str:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert line.endswith(b"\n"), f"server closed instead of sending a command: {line!r}"
        return line.decode().rstrip("\n")

    async def closed_by_server(self) -> bytes:
        """Everything the server still sends until it closes (bounded wait)."""
        received = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(self.reader.read(4096), TIMEOUT):
                received += chunk
        return received


# -- the captured sessions ----------------------------------------------------


@pytest.mark.parametrize("trace", CAPTURED)
async def test_captured_session_is_served_as_recorded(trace: AgiTraceSession) -> None:
    """Asterisk's recorded environment in, the recorded commands out, the same replies back."""
    seen: list[AgiRequest] = []
    replies: list[AgiReply] = []

    async def replay(session: AgiSession) -> None:
        seen.append(session.request)
        replies.extend([await session.command(command) for command in trace.commands])

    async with serving({"route": replay}) as server:
        answered = await run_agi_session(
            "127.0.0.1", server.port, trace.env, trace.variables_read()
        )
    env = dict(trace.env)
    [request] = seen
    assert request.env == env
    assert request.args == [env["agi_arg_1"], env["agi_arg_2"]]
    assert (request.uniqueid, request.caller_name) == (env["agi_uniqueid"], env["agi_calleridname"])
    assert [reply.text for reply in replies] == trace.replies
    assert answered.commands == trace.commands
    assert answered.replies == trace.replies
    assert answered.variables == {**trace.variables_read(), **trace.variables_set()}
    assert answered.server_closed
    assert server.stats.completed == 1


@pytest.mark.parametrize("trace", CAPTURED)
async def test_session_api_writes_the_captured_command_lines(trace: AgiTraceSession) -> None:
    """get_variable / set_variable / verbose produce byte for byte what the stub router sent."""

    async def route(session: AgiSession) -> None:
        for command in trace.commands:
            if get := re.fullmatch(r"GET VARIABLE (\S+)", command):
                assert await session.get_variable(get[1]) == trace.variables_read()[get[1]]
            elif set_ := re.fullmatch(r'SET VARIABLE (\S+) "(.*)"', command):
                await session.set_variable(set_[1], set_[2])
            elif verbose := re.fullmatch(r'VERBOSE "(.*)" (\d+)', command):
                await session.verbose(verbose[1], int(verbose[2]))

    async with serving({"route": route}) as server:
        answered = await run_agi_session(
            "127.0.0.1", server.port, trace.env, trace.variables_read()
        )
    assert answered.commands == trace.commands
    assert server.stats.completed == 1


async def test_cyrillic_caller_name_reaches_the_handler_intact() -> None:
    """The router sees a captured caller's Cyrillic name exactly as Asterisk sent it."""
    [trace] = read_agi_trace(TRACES / "06_ringgroup.agi.txt")
    names: list[str] = []

    async def route(session: AgiSession) -> None:
        names.append(session.request.caller_name)

    async with serving({"route": route}) as server:
        await run_agi_session("127.0.0.1", server.port, trace.env)
    assert names == [MARIA]


async def test_truncated_utf8_caller_name_is_replaced_not_fatal() -> None:
    """A caller name cut inside a character (panoramisk #106) still makes a request."""
    names: list[str] = []

    async def route(session: AgiSession) -> None:
        names.append(session.request.caller_name)

    cut = MARIA.encode()[:7]  # three letters and half of the fourth
    async with serving({"route": route}) as server, RawAsterisk.connect(server) as asterisk:
        header = b"agi_network: yes\nagi_network_script: route\nagi_calleridname: " + cut
        await asterisk.send(header + b"\n\n")
        assert await asterisk.closed_by_server() == b""
    assert names == [MARIA[:3] + "\ufffd"]
    assert server.stats.completed == 1


async def test_values_with_quotes_parentheses_and_backslashes_round_trip() -> None:
    """A channel variable with parentheses reads back whole, an unset one reads as None, and a value
    with quotes, parentheses and backslashes (or an empty one) is set on the call exactly."""
    tricky = 'say "hi" (twice) \\ done'
    read: list[str | None] = []

    async def route(session: AgiSession) -> None:
        read.append(await session.get_variable("CALLER_NOTE"))
        read.append(await session.get_variable("NOT_SET"))
        await session.set_variable("ROUTE_NOTE", tricky)
        await session.set_variable("EMPTY", "")

    async with serving({"route": route}) as server:
        answered = await call(server, variables={"CALLER_NOTE": "Ivan (sales) Petrov"})
    assert read == ["Ivan (sales) Petrov", None]
    assert answered.variables["ROUTE_NOTE"] == tricky
    assert answered.variables["EMPTY"] == ""


async def test_trying_and_multi_line_replies_keep_commands_and_replies_paired() -> None:
    """After a "100 Trying", a multi-line 520 usage answer and a 510 for an unknown command, the
    next command still gets its own reply (the call's TRACK_SOURCE)."""
    replies: list[AgiReply] = []

    async def route(session: AgiSession) -> None:
        replies.append(await session.command("GOSUB sub-check,s,1"))
        replies.append(await session.command("SET VARIABLE ONLY_A_NAME"))
        replies.append(await session.command("FLY TO THE MOON"))
        replies.append(await session.command("GET VARIABLE TRACK_SOURCE"))

    async with serving({"route": route}) as server:
        await call(server)
    assert [(reply.code, reply.result) for reply in replies] == [
        (200, "0"),
        (520, ""),
        (510, ""),
        (200, "1"),
    ]
    assert replies[1].text.endswith("520 End of proper usage.")
    assert replies[3].data == "yandex-direct"


async def test_many_concurrent_sessions_are_all_served() -> None:
    """A hundred calls asking at once are each told whom to ring, and none is left open."""
    async with serving({"route": router}) as server:
        calls = await asyncio.gather(*(call(server, number) for number in range(100)))
    assert all(answered.variables["ROUTE_TO"] == "IAX2/101/101" for answered in calls)
    assert server.stats.completed == 100
    assert server.stats.active == 0


# -- a client that goes away --------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "event", "level"),
    [
        (b"", "agi.closed_without_request", "debug"),
        (b"agi_network: yes\nagi_network_script: ro", "agi.request_cut_short", "info"),
    ],
    ids=["port-check", "cut-in-header"],
)
async def test_client_closing_before_the_blank_line_ends_its_session_at_once(
    sent: bytes, event: str, level: str
) -> None:
    """The panoramisk spin: a closed connection must not leave a task reading forever."""
    with structlog.testing.capture_logs() as logs:
        async with serving({"route": router}) as server:
            async with RawAsterisk.connect(server) as asterisk:
                await asterisk.send(sent)
            await server.wait_until(lambda: server.stats.hangups == 1 and not server.stats.active)
            assert only_our_task_left()
            await assert_served(server)
    [line] = logged(logs, event)
    assert (line["log_level"], line["peer"]) == (level, "127.0.0.1")


async def test_client_hanging_up_mid_session_reaches_the_handler_as_session_closed() -> None:
    """A caller who hangs up while the router is asking something ends that session with one info
    line "hangup" and no traceback, and the next call is served at once."""
    reasons: list[str] = []

    async def route(session: AgiSession) -> None:
        try:
            await session.get_variable("TRACK_SOURCE")
            await session.set_variable("ROUTE_TO", "IAX2/101/101")
        except AgiSessionClosed as closed:
            reasons.append(closed.reason)
            raise

    with structlog.testing.capture_logs() as logs:
        async with serving({"route": route}) as server:
            async with RawAsterisk.connect(server) as asterisk:
                await asterisk.send_env(call_env())
                assert await asterisk.command() == "GET VARIABLE TRACK_SOURCE"
            await server.wait_until(lambda: server.stats.hangups == 1)
            assert reasons == ["hangup"]
            await assert_served(server)
    assert reasons == ["hangup"]  # the next call went through without a closed session
    [line] = logged(logs, "agi.session_closed")
    assert (line["log_level"], line["reason"], line["uniqueid"]) == (
        "info",
        "hangup",
        "1795348437.1",
    )
    assert "exc_info" not in line


# -- the channel hangs up (Asterisk's unsolicited HANGUP line) ------------------


@pytest.mark.parametrize("when", ["before-the-command", "while-waiting-for-the-reply"])
async def test_hangup_line_never_shifts_replies(when: str) -> None:
    """panoramisk takes HANGUP for the reply and is off by one from then on; we are not."""
    results: list[object] = []

    async def route(session: AgiSession) -> None:
        results.append(await session.get_variable("TRACK_SOURCE"))
        await session.set_variable("ROUTE_TO", "IAX2/101/101")
        results.append(await session.get_variable("ROUTE_TO"))
        results.append(session.hung_up)

    async with serving({"route": route}) as server, RawAsterisk.connect(server) as asterisk:
        early = b"HANGUP\n" if when == "before-the-command" else b""
        await asterisk.send_env(call_env(), then=early)
        assert await asterisk.command() == "GET VARIABLE TRACK_SOURCE"
        late = b"HANGUP\n" if when == "while-waiting-for-the-reply" else b""
        await asterisk.send(late + b"200 result=1 (pool)\n")
        assert await asterisk.command() == 'SET VARIABLE ROUTE_TO "IAX2/101/101"'
        await asterisk.send(b"200 result=1\n")
        assert await asterisk.command() == "GET VARIABLE ROUTE_TO"
        await asterisk.send(b"200 result=1 (IAX2/101/101)\n")
        assert await asterisk.closed_by_server() == b""
    assert results == ["pool", "IAX2/101/101", True]
    assert server.stats.completed == 1


async def test_dead_channel_answers_511_and_the_handler_finishes() -> None:
    """Once the channel is gone every command answers 511 and the router finishes without setting
    ROUTE_TO, logging the hang-up once and the failed commands only at debug."""
    seen: list[object] = []

    async def route(session: AgiSession) -> None:
        if session.request.uniqueid != "1795348437.1":
            return await router(session)
        seen.append(await session.get_variable("TRACK_SOURCE"))
        await session.set_variable("ROUTE_TO", "IAX2/101/101")
        seen.append(await session.get_variable("TRACK_SOURCE"))
        seen.append(session.hung_up)

    with structlog.testing.capture_logs() as logs:
        async with serving({"route": route}) as server:
            answered = await call(server, hangup_after=1)
            await assert_served(server)
    assert seen == ["yandex-direct", None, True]
    assert [reply[:3] for reply in answered.replies] == ["200", "511", "511"]
    assert "ROUTE_TO" not in answered.variables
    assert server.stats.completed == 2
    [hung_up] = logged(logs, "agi.channel_hung_up")
    assert hung_up["uniqueid"] == "1795348437.1"
    assert all(line["log_level"] == "debug" for line in logged(logs, "agi.command_failed"))


# -- a broken or slow client ----------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "problem"),
    [
        (b"agi_network: yes\n" * 5000, "request header over 65536 bytes"),
        (b"agi_network_script: " + b"r" * 20_000 + b"\n\n", "request line over 16384 bytes"),
        (
            b"GET / HTTP/1.1\r\nHost: pbx\r\n\r\n",
            "line 1 is not 'agi_key: value': 'GET / HTTP/1.1'",
        ),
        (b"agi_network: yes\nHost: pbx\n\n", "line 2 has no agi_\\* key: 'Host: pbx'"),
    ],
    ids=["endless-header", "endless-line", "http-probe", "not-agi-key"],
)
async def test_malformed_request_is_closed_and_logged(sent: bytes, problem: str) -> None:
    """An endless header, an endless line, an HTTP probe or a line that is no agi_ key is closed
    with one warning naming what was wrong, and the next call is served."""
    handled: list[str] = []

    async def route(session: AgiSession) -> None:
        handled.append(session.request.uniqueid)
        await router(session)

    with structlog.testing.capture_logs() as logs:
        async with serving({"route": route}) as server:
            async with RawAsterisk.connect(server) as asterisk:
                await asterisk.send(sent)
                assert await asterisk.closed_by_server() == b""
            assert server.stats.malformed == 1
            await assert_served(server)
    assert handled == ["1795348437.9"]  # only the call after the fault
    [line] = logged(logs, "agi.request_malformed")
    assert line["log_level"] == "warning"
    assert re.search(problem, line["problem"])


async def test_request_header_that_never_ends_times_out() -> None:
    """A client that never finishes its request header is cut after the header timeout with one
    warning, and the next call is served."""
    with structlog.testing.capture_logs() as logs:
        async with serving({"route": router}, header_timeout=0.2) as server:
            async with RawAsterisk.connect(server) as asterisk:
                await asterisk.send(b"agi_network: yes\n")
                assert await asterisk.closed_by_server() == b""
            assert server.stats.timeouts == 1
            await assert_served(server)
    [line] = logged(logs, "agi.request_timeout")
    assert (line["log_level"], line["timeout"]) == ("warning", 0.2)


async def test_command_without_reply_times_out_and_the_handler_is_told() -> None:
    """When Asterisk does not answer a command within the command timeout the session is closed, the
    router is told "timeout" and one warning names the command."""
    reasons: list[str] = []

    async def route(session: AgiSession) -> None:
        try:
            await session.get_variable("TRACK_SOURCE")
        except AgiSessionClosed as closed:
            reasons.append(closed.reason)
            raise

    with structlog.testing.capture_logs() as logs:
        async with (
            serving({"route": route}, command_timeout=0.2) as server,
            RawAsterisk.connect(server) as asterisk,
        ):
            await asterisk.send_env(call_env())
            assert await asterisk.command() == "GET VARIABLE TRACK_SOURCE"
            assert await asterisk.closed_by_server() == b""
    assert reasons == ["timeout"]
    assert server.stats.timeouts == 1
    [line] = logged(logs, "agi.session_closed")
    assert (line["log_level"], line["reason"]) == ("warning", "timeout")
    assert "GET VARIABLE TRACK_SOURCE" in line["detail"]


async def test_garbage_instead_of_a_reply_closes_the_session() -> None:
    """A line that is no AGI reply where a reply was expected closes that session and counts it as
    malformed."""

    async def route(session: AgiSession) -> None:
        await session.get_variable("TRACK_SOURCE")

    async with serving({"route": route}) as server, RawAsterisk.connect(server) as asterisk:
        await asterisk.send_env(call_env())
        await asterisk.command()
        await asterisk.send(b"agi_network: yes\n")
        assert await asterisk.closed_by_server() == b""
    assert server.stats.malformed == 1


# -- faults on our side ---------------------------------------------------------


async def test_handler_that_raises_is_logged_with_its_traceback() -> None:
    """A router that fails on one call closes only that call with one error line (traceback,
    uniqueid, script, peer), and the next call is served."""

    async def route(session: AgiSession) -> None:
        await session.get_variable("TRACK_SOURCE")
        if session.request.uniqueid == "1795348437.1":
            raise RuntimeError("router exploded")
        await router(session)

    with structlog.testing.capture_logs() as logs:
        async with serving({"route": route}) as server:
            failed = await call(server, 1)
            await assert_served(server)
    assert failed.server_closed
    assert failed.commands == ["GET VARIABLE TRACK_SOURCE"]
    assert server.stats.errors == 1
    [line] = logged(logs, "agi.handler_failed")
    assert (line["log_level"], line["exc_info"]) == ("error", True)
    assert (line["uniqueid"], line["script"], line["peer"]) == (
        "1795348437.1",
        "route",
        "127.0.0.1",
    )


async def test_unknown_script_is_refused_naming_the_known_ones() -> None:
    """A call asking for a script the server does not have is closed at once with a warning naming
    the script asked for and the ones there are."""
    with structlog.testing.capture_logs() as logs:
        async with serving({"route": router, "callback": router}) as server:
            refused = await call(server, env=call_env(script="rout?x=1"))
            await assert_served(server)
    assert (refused.commands, refused.server_closed) == ([], True)
    assert server.stats.refused == 1
    [line] = logged(logs, "agi.unknown_script")
    assert line["log_level"] == "warning"
    assert (line["script"], line["known"]) == ("rout", ["callback", "route"])
    assert line["uniqueid"] == "1795348437.1"


async def test_only_allowed_addresses_are_served() -> None:
    """A call from an address outside the allowed networks is closed with a warning naming the peer,
    while one from an allowed address is routed."""
    with structlog.testing.capture_logs() as logs:
        async with serving({"route": router}, allow=["127.0.0.2/32"]) as server:
            refused = await call(server)
            served = await call(server, local_addr=("127.0.0.2", 0))
    assert (refused.commands, refused.server_closed) == ([], True)
    assert served.variables["ROUTE_TO"] == "IAX2/101/101"
    assert (server.stats.refused, server.stats.completed) == (1, 1)
    [line] = logged(logs, "agi.client_not_allowed")
    assert (line["log_level"], line["peer"]) == ("warning", "127.0.0.1")


async def test_sessions_over_the_limit_are_refused_and_the_rest_served() -> None:
    """A call beyond the session limit is closed at once with a warning naming the limit, while the
    call in progress is still routed."""
    entered = asyncio.Event()
    release = asyncio.Event()

    async def route(session: AgiSession) -> None:
        if session.request.uniqueid == "1795348437.1":
            entered.set()
            await release.wait()
        await router(session)

    with structlog.testing.capture_logs() as logs:
        async with serving({"route": route}, max_sessions=1) as server:
            first = asyncio.create_task(call(server, 1))
            async with asyncio.timeout(TIMEOUT):
                await entered.wait()
            over = await call(server, 2)
            release.set()
            assert (await first).variables["ROUTE_TO"] == "IAX2/101/101"
            await assert_served(server)
    assert (over.commands, over.server_closed) == ([], True)
    assert server.stats.refused == 1
    [line] = logged(logs, "agi.too_many_sessions")
    assert (line["log_level"], line["limit"]) == ("warning", 1)


async def test_stop_cuts_open_sessions_promptly_and_leaves_nothing_running() -> None:
    """Stopping the server closes three stuck sessions within a second, leaves no task behind and
    stops accepting calls."""
    stuck = asyncio.Event()

    async def route(session: AgiSession) -> None:
        await session.get_variable("TRACK_SOURCE")
        await stuck.wait()  # never set: a handler waiting on something that hangs

    async with serving({"route": route}) as server:
        calls = [asyncio.create_task(call(server, number)) for number in range(3)]
        await server.wait_until(lambda: server.stats.active == 3)
        async with asyncio.timeout(1.0):
            await server.stop()
        answered = await asyncio.gather(*calls)
        assert all(one.server_closed for one in answered)
        assert server.stats.cancelled == 3
        assert only_our_task_left()
        with pytest.raises(OSError):
            await call(server, 4)
