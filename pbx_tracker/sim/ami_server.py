"""The simulated manager interface itself: the listener, its clients, their logins.

`AmiServer` listens on loopback, greets every client with the banner, reads
its actions, answers `Login` (plain or MD5 `Challenge`), `Ping` and `Logoff`,
and refuses with "Permission denied" an action before login or outside the
AMI user's classes.  `FakeAsterisk` (`sim.asterisk`) adds the PBX behind it:
the other actions and the events it plays.  Faults are one call away:
`send_raw` (garbage), `drop_connections` (link drop), `restart` (Asterisk
restart on the same port), `answer_pings = False` (a half-open peer).

Everything runs inside the caller's event loop; `stop()` closes every socket
and returns promptly.  Client handlers never leave unretrieved exceptions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Self

import structlog

from pbx_tracker.sim.ami_session import AmiSession, event_classes
from pbx_tracker.sim.wire import BANNER, Fields, encode_message, event_list, header, response

log = structlog.get_logger(__name__)

_LINE_LIMIT = 64 * 1024
_STOP_GRACE = 2.0
Handler = Callable[[AmiSession, dict[str, str]], Awaitable[bool]]


class AmiServer:
    """A manager interface on `host:port` (port 0 picks a free one)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        chunk_size: int | None,
        answer_pings: bool,
        write_timeout: float | None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.secret = secret
        self.chunk_size = chunk_size
        self.answer_pings = answer_pings
        self.write_timeout = write_timeout
        self.actions: list[dict[str, str]] = []
        self.logins = 0
        self._server: asyncio.Server | None = None
        self._sessions: set[AmiSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._booted = time.monotonic()
        self._handlers: dict[str, Handler] = {
            "login": self._login,
            "challenge": self._challenge,
            "ping": self._ping,
            "logoff": self._logoff,
        }

    # lifecycle

    async def start(self) -> None:
        """Listen; afterwards `port` is the real port."""
        self._server = await asyncio.start_server(
            self._client, self.host, self.port, limit=_LINE_LIMIT, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._booted = time.monotonic()
        log.debug("sim.asterisk_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop listening, close every client connection and wait for their handlers."""
        self._close_listener()
        self.drop_connections()
        await self._reap_handlers()

    async def restart(self, *, down_for: float = 0.0, drop: bool = True) -> None:
        """Stop listening, drop the clients, listen again on the same port after `down_for`.

        `drop=False` keeps the established sessions (only the listener bounces).
        """
        self._close_listener()
        if drop:
            self.drop_connections()
        if down_for > 0:
            await asyncio.sleep(down_for)
        await self.start()

    def drop_connections(self) -> None:
        """Abort every client transport (link drop); the server keeps listening."""
        for session in list(self._sessions):
            session.abort()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _reap_handlers(self) -> None:
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=_STOP_GRACE)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_STOP_GRACE)

    # helpers for callers

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def url(self) -> str:
        """`ami://user@host:port` (no secret: safe to log)."""
        return f"ami://{self.username}@{self.host}:{self.port}"

    def manager_config(self) -> dict[str, str | int]:
        """Keyword arguments for `panoramisk.Manager` (host, port, username, secret)."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "secret": self.secret,
        }

    @property
    def clients(self) -> int:
        """Clients currently logged in."""
        return sum(1 for session in self._sessions if session.logged_in and session.alive)

    @property
    def connections(self) -> int:
        """Open TCP connections, logged in or not."""
        return sum(1 for session in self._sessions if session.alive)

    def set_answer_pings(self, answer: bool) -> None:
        """False simulates a half-open peer: pings are read and never answered."""
        self.answer_pings = answer

    def actions_named(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.actions if header(a, "Action").lower() == name.lower()]

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5,  # noqa: ASYNC109 - a plain deadline keeps test code short
        what: str = "condition",
    ) -> None:
        """Wait (bounded) until `predicate()` holds; it is re-checked on every state change."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    changed = self._changed
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{type(self).__name__} {self.url}: {what} not reached within {timeout} s "
                f"(connections={self.connections}, logged in={self.clients}, "
                f"actions={[header(a, 'Action') for a in self.actions]})"
            ) from None

    async def wait_for_login(self, timeout: float = 5, count: int = 1) -> None:  # noqa: ASYNC109
        """Until at least `count` clients are logged in (TimeoutError otherwise)."""
        await self.wait_until(
            lambda: self.clients >= count, timeout, f"{count} logged-in client(s)"
        )

    async def wait_for_action(
        self,
        name: str,
        count: int = 1,
        timeout: float = 5,  # noqa: ASYNC109
    ) -> None:
        """Until `count` actions called `name` have been received."""
        await self.wait_until(
            lambda: len(self.actions_named(name)) >= count, timeout, f"{count} {name} action(s)"
        )

    async def send_raw(self, data: bytes) -> None:
        """Arbitrary bytes to every logged-in client (fault injection)."""
        for session in self._logged_in():
            await session.send(data, self.chunk_size, self.write_timeout)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _logged_in(self) -> list[AmiSession]:
        return [s for s in self._sessions if s.logged_in and s.alive]

    # serving one client

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        session = AmiSession(reader, writer)
        self._sessions.add(session)
        self._notify()
        try:
            await session.send(BANNER, self.chunk_size, self.write_timeout)
            await self._serve(session)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly, the transport is closed below
            pass
        except Exception:
            log.exception("sim.asterisk_client_failed")
        finally:
            writer.close()
            self._sessions.discard(session)
            if task is not None:
                self._tasks.discard(task)
            self._notify()

    async def _serve(self, session: AmiSession) -> None:
        while session.alive:
            action = await session.read_action()
            if action is None:
                return
            self.actions.append(action)
            self._notify()
            if not await self._dispatch(session, action):
                return

    async def _dispatch(self, session: AmiSession, action: dict[str, str]) -> bool:
        """Answer one action; False closes the connection."""
        name = header(action, "Action").lower()
        if not name:
            await self._reply(session, action, "Error", [("Message", "Missing action in request")])
            return True
        allowed = session.logged_in or name in ("login", "challenge")
        if not (allowed and self._may_run(name)):
            await self._reply(session, action, "Error", [("Message", "Permission denied")])
            return True
        handler = self._handlers.get(name, self._unknown)
        return await handler(session, action)

    def _may_run(self, name: str) -> bool:
        """The AMI user's write classes allow action `name` (every action here)."""
        return True

    async def _reply(
        self, session: AmiSession, action: Mapping[str, str], outcome: str, rest: Fields
    ) -> None:
        data = response(action, outcome, rest)
        await session.send(data, self.chunk_size, self.write_timeout)

    async def _event_list(
        self, session: AmiSession, action: dict[str, str], what: str, items: list[Fields], name: str
    ) -> None:
        """An EventList answer: the start response, the items, `<name>Complete`."""
        data = event_list(action, what, items, name)
        await session.send(data, self.chunk_size, self.write_timeout)

    # the actions every manager interface answers

    async def _login(self, session: AmiSession, action: dict[str, str]) -> bool:
        if not session.credentials_ok(action, self.username, self.secret):
            await self._reply(session, action, "Error", [("Message", "Authentication failed")])
            return False
        session.classes = event_classes(header(action, "Events"))
        await self._reply(session, action, "Success", [("Message", "Authentication accepted")])
        uptime = str(int(time.monotonic() - self._booted))
        booted = {"Event": "FullyBooted", "Privilege": "system,all", "Uptime": uptime}
        booted.update(LastReload=uptime, Status="Fully Booted")
        if session.wants(booted):
            await session.send(encode_message(booted), self.chunk_size, self.write_timeout)
        # events flow only from here on, so none can slip in before FullyBooted
        session.logged_in = True
        self.logins += 1
        self._notify()
        return True

    async def _challenge(self, session: AmiSession, action: dict[str, str]) -> bool:
        if header(action, "AuthType").lower() != "md5":
            await self._reply(session, action, "Error", [("Message", "Must specify AuthType")])
            return True
        await self._reply(session, action, "Success", [("Challenge", session.new_challenge())])
        return True

    async def _ping(self, session: AmiSession, action: dict[str, str]) -> bool:
        if self.answer_pings:
            pong = [("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")]
            await self._reply(session, action, "Success", pong)
        return True

    async def _logoff(self, session: AmiSession, action: dict[str, str]) -> bool:
        await self._reply(session, action, "Goodbye", [("Message", "Thanks for all the fish.")])
        return False

    async def _unknown(self, session: AmiSession, action: dict[str, str]) -> bool:
        await self._reply(session, action, "Error", [("Message", "Invalid/unknown command")])
        return True
