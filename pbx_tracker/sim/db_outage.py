"""Database outages on demand, for the fault benchmark and its test.

`TcpProxy` sits on a loopback port between the daemon and PostgreSQL: `cut()`
aborts every connection through it and stops accepting (clients get "connection
refused", as when the server is down), `resume()` listens again on the same port.
`SqliteLock` makes a SQLite database unwritable for a while the way a second
writer does: another connection holds ``BEGIN EXCLUSIVE`` (in WAL mode readers go
on; every writer waits its busy timeout and gets "database is locked").
`DatabaseOutage` is the one switch a fault run uses, whichever the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

__all__ = ["DatabaseOutage", "SqliteLock", "TcpProxy"]

_CHUNK = 64 * 1024


class TcpProxy:
    """A loopback TCP proxy to ``target``; `cut()` is the server going away."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def up(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (port 0 the first time: a free one; afterwards the same port again)."""
        self._server = await asyncio.start_server(
            self._client, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop accepting and abort every connection in both directions."""
        self.cuts += 1
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        await self._reap()

    async def resume(self) -> None:
        if self._server is None:
            await self.start()

    async def stop(self) -> None:
        await self.cut()

    async def _reap(self) -> None:
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._pipes.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(*self.target)
            self._pipes.add(upstream)
            await asyncio.gather(self._pump(reader, upstream), self._pump(up_reader, writer))
        except OSError:
            pass
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._pipes.discard(end)
                    end.transport.abort()
            if task is not None:
                self._tasks.discard(task)

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(_CHUNK):
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()  # one side gone: the whole connection is


class SqliteLock:
    """Another connection holding ``BEGIN EXCLUSIVE`` on a SQLite file while `held`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    async def take(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - sqlite3's own wait
        """Wait (up to ``timeout``, for a write in flight) and take the write lock."""
        self._connection = await asyncio.to_thread(self._take, timeout)

    def _take(self, timeout: float) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("BEGIN EXCLUSIVE")
        except BaseException:
            connection.close()
            raise
        return connection

    async def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await asyncio.to_thread(_rollback_and_close, connection)


def _rollback_and_close(connection: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        connection.execute("ROLLBACK")
    connection.close()


class DatabaseOutage:
    """The daemon's database made unreachable on demand: PostgreSQL through a `TcpProxy`
    that is cut, SQLite by a `SqliteLock` taken.  `daemon_url` is what the daemon uses."""

    def __init__(
        self, daemon_url: str, *, proxy: TcpProxy | None = None, lock: SqliteLock | None = None
    ) -> None:
        self.daemon_url = daemon_url
        self.proxy = proxy
        self.lock = lock

    @classmethod
    async def prepare(cls, database: str, url: str) -> DatabaseOutage:
        """For ``database`` ("sqlite" or PostgreSQL) at ``url``; a proxy is started at once."""
        if database == "sqlite":
            return cls(url, lock=SqliteLock(Path(make_url(url).database or "")))
        parsed = make_url(url)
        proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        await proxy.start()
        daemon_url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
        return cls(daemon_url, proxy=proxy)

    async def down_for(self, seconds: float) -> None:
        """The database is unreachable for ``seconds``, then back."""
        if self.proxy is not None:
            await self.proxy.cut()
            try:
                await asyncio.sleep(seconds)
            finally:
                await self.proxy.resume()
        elif self.lock is not None:
            await self.lock.take()
            try:
                await asyncio.sleep(seconds)
            finally:
                await self.lock.release()

    async def end(self) -> None:
        """The database reachable again, whatever was going on."""
        if self.proxy is not None:
            await self.proxy.resume()
        if self.lock is not None:
            await self.lock.release()

    async def stop(self) -> None:
        """The proxy closed (nothing to do for SQLite)."""
        if self.proxy is not None:
            await self.proxy.stop()
