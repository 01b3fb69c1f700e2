"""sd_notify without a dependency: readiness, status, stopping and the watchdog.

The protocol is one datagram of ``KEY=value`` lines to the ``AF_UNIX`` socket
named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace),
as in systemd's MIT-0 ``man/notify-selfcontained-example.py``.  Without
``$NOTIFY_SOCKET`` (not started by systemd, or ``Type=`` is not ``notify``)
every function here does nothing and returns False.

The watchdog is pinged by a task on the event loop (`watchdog_loop`), so a
loop that stops turning stops the pings and systemd restarts the service.
Never make the ping depend on Asterisk or the database being reachable: their
outages would turn into a restart loop of a daemon that is fine.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from typing import NoReturn

import structlog

__all__ = [
    "exit_service",
    "notify",
    "ready",
    "status",
    "stopping",
    "watchdog_interval",
    "watchdog_loop",
    "watchdog_ping",
]

log = structlog.get_logger(__name__)

# A send to a full notify socket blocks; we are on the event loop, so bound it.
SEND_TIMEOUT = 1.0
THREADS_GRACE = 5.0  # seconds the threads left at exit get to end


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send *message* to systemd; True when it was handed to ``$NOTIFY_SOCKET``."""
    address = environ.get("NOTIFY_SOCKET", "")
    if not address.startswith(("/", "@")):
        return False  # unset, or a transport we do not speak (vsock:…)
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError:
        return False
    return True


def ready(environ: Mapping[str, str] = os.environ) -> bool:
    """Start-up is complete (``READY=1``): systemd now considers the service started."""
    return notify("READY=1", environ)


def stopping(environ: Mapping[str, str] = os.environ) -> bool:
    """Shutdown has begun (``STOPPING=1``)."""
    return notify("STOPPING=1", environ)


def status(text: str, environ: Mapping[str, str] = os.environ) -> bool:
    """One line for ``systemctl status`` (``STATUS=…``); newlines become spaces."""
    return notify("STATUS=" + " ".join(text.splitlines()), environ)


def watchdog_ping(environ: Mapping[str, str] = os.environ) -> bool:
    """Tell systemd we are alive (``WATCHDOG=1``)."""
    return notify("WATCHDOG=1", environ)


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between pings: half of ``$WATCHDOG_USEC``; None when no watchdog is asked for.

    ``$WATCHDOG_PID``, when set, must be our pid (the variables may have been
    inherited from a parent that is the one being watched).
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
        pid = environ.get("WATCHDOG_PID")
        if pid is not None and int(pid) != os.getpid():
            return None
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


async def watchdog_loop(
    interval: float, stop: asyncio.Event, *, environ: Mapping[str, str] = os.environ
) -> None:
    """Ping ``WATCHDOG=1`` now and every *interval* seconds until *stop* is set."""
    if interval <= 0:
        raise ValueError(f"watchdog interval must be positive, got {interval!r}")
    failing = False
    while not stop.is_set():
        sent = watchdog_ping(environ)
        if not sent and not failing:
            log.warning("systemd.watchdog_ping_failed", notify_socket=environ.get("NOTIFY_SOCKET"))
        failing = not sent
        try:
            async with asyncio.timeout(interval):
                await stop.wait()
        except TimeoutError:
            pass


def exit_service(code: int, grace: float = THREADS_GRACE) -> NoReturn:
    """End the process with ``code`` once the daemon has stopped.

    Threads still running get ``grace`` seconds to end (a file being written).  A
    thread a library leaves behind for ever (an aiosqlite connection a cancelled
    task never closed keeps its non-daemon thread waiting) would keep a stopped
    service running until systemd kills it: it is named in the log and left.
    """
    deadline = time.monotonic() + grace
    left = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in left:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sorted(thread.name for thread in left if thread.is_alive())
    if not stuck:
        sys.exit(code)
    log.warning("systemd.threads_left", threads=stuck, exit_code=code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
