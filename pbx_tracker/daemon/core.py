"""The composition root: builds the services in order, runs them, shuts them down.

Start: database (schema must be at head) → call writer → managers' last calls read
back (bounded) → FastAGI server (the router: whom to ring) → HTTP server (the
website's snippet and visits API, the number pools restored from the database) →
callbacks (tasks for missed calls, the reminder scheduler) → the background loops:
AMI listener, event consumer (manager board, and correlator → `pipeline`: labels →
writer → listeners), CEL recovery, caller history, CRM delivery.  A FastAGI or HTTP
port that cannot be opened, pools that cannot be restored, or a scheduler that
cannot start, stop the start with exit code 1 (what started is stopped, in
reverse).  READY=1 goes to systemd once the database answered and the first AMI
login succeeded; WATCHDOG=1 is pinged from the event loop.  SIGTERM/SIGINT:
STOPPING=1, the servers stop, log off from Asterisk, correlate what was already
received, write what is finished (bounded), exit 0.  A background loop that fails
is logged (``daemon.loop_crashed``) and stops the daemon the same way, exit 1
(systemd starts it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker import systemd
from pbx_tracker.agi.route import RouteHandler
from pbx_tracker.agi.server import FastAgiServer
from pbx_tracker.ami.connection import AmiListener, AmiLoginError
from pbx_tracker.ami.dead_letters import DeadLetters
from pbx_tracker.attribution.sources import CallLabeler
from pbx_tracker.attribution.watch import AttributionWatch
from pbx_tracker.callbacks.ringme import RingMe
from pbx_tracker.callbacks.service import CallbackService
from pbx_tracker.callbacks.tasks import count_open_tasks
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.cel.positions import StoredPositions
from pbx_tracker.cel.service import CelRecovery
from pbx_tracker.cel.table import read_table, table_end
from pbx_tracker.daemon.http import DaemonHttp
from pbx_tracker.daemon.intake import AmiIntake
from pbx_tracker.daemon.integrations import Integrations
from pbx_tracker.daemon.lifecycle import Loops, install_stop_signals, others_ended
from pbx_tracker.pipeline import CallPipeline, listeners_of, open_writer
from pbx_tracker.replay import topology_of
from pbx_tracker.routing.availability import ManagerBoard
from pbx_tracker.routing.restore import restore_last_calls
from pbx_tracker.routing.router import Router
from pbx_tracker.routing.sticky import StickyMemory
from pbx_tracker.selfcheck.live import SelfCheckRunner
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.session import DatabaseNotReadyError
from pbx_tracker.web.health import Health, PartState, database_probe
from pbx_tracker.web.metrics import (
    OPEN_CALLBACKS_SECONDS,
    CallCounter,
    DaemonCollector,
)
from pbx_tracker.web.snippet import LandingPage

if TYPE_CHECKING:
    from pbx_tracker.config import Settings
    from pbx_tracker.store.writer import CallWriter

log = structlog.get_logger(__name__)

STICKY_REFRESH_SECONDS = 60.0
TASKS_GRACE = 5.0  # seconds the tasks still running after the stop get to end by themselves
CEL_STORE_SECONDS = 30.0  # a part of the CEL log waits this long for its calls to be stored


async def run_daemon(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """`pbx-tracker run`; returns the process exit code."""
    stop = stop or asyncio.Event()
    install_stop_signals(stop)
    try:
        async with open_writer(settings) as writer:
            code = await Daemon(settings, writer).run(stop)
    except DatabaseNotReadyError as error:
        log.error("daemon.database_not_ready", reason=str(error))
        return 1
    late = await others_ended(TASKS_GRACE)
    if late:  # asyncio.run cancels them; a bug to fix where they were started
        log.warning("daemon.tasks_left", tasks=late)
    return code


class Daemon:
    """AMI events in, call records out, until told to stop."""

    def __init__(
        self,
        settings: Settings,
        writer: CallWriter,
        clock: Callable[[], float] = time.time,
        *,
        landing: LandingPage | None = None,
    ) -> None:
        """``clock`` is the router's (the demo runs a simulated day faster than real time);
        ``landing``: serve the demo landing page at /demo/ (the demo)."""
        self.settings = settings
        self.writer = writer
        self.clock = clock
        calls = settings.calls
        self.dead_letters = DeadLetters(calls.dead_letters, calls.dead_letters_max_events)
        self.labeler = CallLabeler(settings.directory, settings.calls.target_seconds)
        self.listener = AmiListener(settings.ami, on_status=self._on_ami_status)
        self.ami_status = "connecting"
        self.self_check = SelfCheckRunner(settings, self.listener.send_action)
        self.board = ManagerBoard(settings.routing, settings.directory, clock)
        self.sticky = StickyMemory(writer.engine)
        self.pipeline = CallPipeline(
            [self.labeler.label], writer.submit, remember=[self.sticky.remember], log_calls=True
        )
        self.listeners = listeners_of(writer)
        self.ringme = self._ring_me(settings)
        self.integrations = Integrations(
            settings,
            writer.engine,
            lambda: self.correlator.live_calls(),
            ringme=self.ringme,
            dial=self.board.plan.dial_string,
        )
        self.router = Router(self.board, self.sticky, clock, self.integrations.owners)
        route = RouteHandler(
            self.router, settings.recordings_dir, clock, lambda: self.listener.connected
        )
        handlers = {"route": route}
        self.agi = FastAgiServer(handlers, settings.agi) if settings.agi.enabled else None
        self.agi_listening = False
        self.callbacks = self._callbacks(settings, writer)
        if self.integrations.telegram is not None and self.callbacks is not None:
            self.integrations.telegram.leader = self.callbacks.became_leader
        self.attribution_watch = AttributionWatch(settings.attribution)
        self.calls_counted = CallCounter()
        self.cel_engine: AsyncEngine | None = None  # cel_pgsql's database, when not ours
        self.cel = self._cel_recovery(settings, writer)
        self.intake = AmiIntake(
            self.listener.events,
            Correlator(topology_of(settings)),
            self.pipeline,
            board=self.board,
            self_check=self.self_check,
            dead_letters=self.dead_letters,
            ringme=self.ringme,
            cel=self.cel,
            monitor_dir=str(settings.recordings_dir),
        )
        self.health = self._health(writer)
        self.daemon_metrics = DaemonCollector(
            self.calls_counted,
            ami_connected=lambda: self.listener.connected,
            events_seen=lambda: self.correlator.events_seen,
            events_failed=lambda: self.correlator.events_failed,
        )
        self.web = self._http(settings, writer, landing)
        self.http = None if self.web is None else self.web.server
        self.outbox = self.integrations.deliveries
        self.daemon_metrics.outbox = self.integrations.figures
        self.daemon_metrics.owner_lookups = self.integrations.owner_figures
        for name, probe in self.integrations.health_parts().items():
            self.health.register(name, probe)
        self._listen()
        # the background loops besides the AMI listener (and CEL's first read, the watchdog)
        self.background: list[tuple[str, Callable[[], Coroutine[Any, Any, object]]]] = [
            ("correlator", self.intake.run),
            ("caller-history", self._keep_caller_history),
            ("open-callbacks", self._count_open_callbacks),
        ]
        self.background += self.integrations.loops
        self.intake.on_ringme_result = self.integrations.ringme_result
        taken = [self.integrations.call_changed]
        if self.web is not None:  # the live board: built once per change for every board
            self.background.append(("board", self.web.board.run))
            self.board.on_reserve = self.web.board.floor_changed
            taken.append(self.web.board.floor_changed)
        self.intake.on_taken = _each(taken)
        self.ready = asyncio.Event()
        self.resynced = self.intake.resynced  # set after each resync (tests wait on it)
        self.handled = self.intake.handled  # set after each AMI item is taken in (tests too)
        self.ami_changed = asyncio.Event()  # set at each AMI status change (tests wait on it)

    @property
    def correlator(self) -> Correlator:
        return self.intake.correlator

    @correlator.setter
    def correlator(self, correlator: Correlator) -> None:
        self.intake.correlator = correlator

    def _on_ami_status(self, text: str, connected: bool) -> None:
        systemd.status(f"AMI {text}")
        self.ami_status = text
        self.ami_changed.set()
        if connected:  # after each login: the config against this Asterisk
            self.self_check.logged_in()
        if connected and not self.ready.is_set():
            self.ready.set()
            systemd.ready()
            log.info("daemon.ready", node=self.settings.node)

    async def run(self, stop: asyncio.Event) -> int:
        """Start, run until ``stop`` is set (or a loop fails), stop; the exit code."""
        await restore_last_calls(self.board, self.writer.engine)  # before the router answers
        loops = Loops(self._loop_failed)
        async with contextlib.AsyncExitStack() as running:  # stops in reverse, also a failed start
            running.push_async_callback(self._close_clients)
            running.push_async_callback(self._stop_loops, loops)  # once the servers stopped
            for start in (self._start_agi, self._start_http, self._start_callbacks):
                if not await start(running):
                    return 1
            self._start_loops(loops, stop)
            await loops.wait(stop)
            systemd.stopping()
            log.info("daemon.stopping", calls_in_progress=self.correlator.calls_in_progress)
        # open_writer() drains the writer (bounded) and keeps the rest for the next start
        log.info("daemon.stopped", calls_to_write=self.writer.pending)
        return 0 if loops.failure is None else 1

    def _start_loops(self, loops: Loops, stop: asyncio.Event) -> None:
        if self.cel is not None:  # what Asterisk logged while we were away
            loops.start("cel", self.cel.run())
        loops.start("ami-listener", self.listener.run(), ends_daemon=True)
        for name, loop in self.background:
            loops.start(name, loop())
        interval = systemd.watchdog_interval()
        if interval is not None:
            loops.start("watchdog", systemd.watchdog_loop(interval, stop))

    def _loop_failed(self, name: str, error: BaseException) -> None:
        if name == "ami-listener" and isinstance(error, AmiLoginError):
            log.error("daemon.ami_login_rejected", reason=str(error))
            return
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        log.error("daemon.loop_crashed", loop=name, error=reason, exc_info=error)

    async def _stop_loops(self, loops: Loops) -> None:
        """Log off from Asterisk, correlate what was already received, end the other loops."""
        await self.self_check.close()
        await self.listener.close()
        await loops.end("ami-listener")
        self.intake.take_backlog()
        await loops.cancel()

    async def _close_clients(self) -> None:
        """What the loops used: the platforms' HTTP sessions, CEL's own database."""
        await self.integrations.close()
        if self.cel_engine is not None:
            await self.cel_engine.dispose()

    def _ring_me(self, settings: Settings) -> RingMe | None:
        if not (settings.callbacks.enabled and settings.callbacks.ring_me.enabled):
            return None
        listener = self.listener

        async def send(action: Mapping[str, str], timeout: float) -> object:  # noqa: ASYNC109
            return await listener.send_action(action, timeout=timeout)

        return RingMe(send, settings.callbacks.ring_me, region=settings.phone_region)

    def _callbacks(self, settings: Settings, writer: CallWriter) -> CallbackService | None:
        """Missed-call callbacks, fed with every call the writer stored."""
        if not settings.callbacks.enabled:
            return None
        # reminders run on the wall clock (the scheduler's), whatever the router's clock
        service = CallbackService(
            settings.callbacks,
            settings.directory,
            writer.engine,
            database_url=settings.database.url,
            timezone=settings.routing.timezone,
            board=self.board,
            ringme=self.ringme,
            extra_channels=self.integrations.reminder_channels,
        )
        return service

    async def _start_callbacks(self, running: contextlib.AsyncExitStack) -> bool:
        if self.callbacks is None:
            return True
        try:
            await self.callbacks.start()
        except Exception as error:  # e.g. the scheduler's job store cannot be opened
            log.error("daemon.callbacks_failed", reason=str(error) or type(error).__name__)
            return False
        running.push_async_callback(self.callbacks.stop)
        return True

    def _http(
        self, settings: Settings, writer: CallWriter, landing: LandingPage | None
    ) -> DaemonHttp | None:
        """The website's API and snippet with the number pools, the pages, metrics, health."""
        if not settings.http.enabled:
            return None
        return DaemonHttp(
            settings,
            writer.engine,
            clock=self.clock,
            board=self.board,
            ringme=self.ringme,
            attribution_watch=self.attribution_watch,
            daemon_metrics=self.daemon_metrics,
            health=self.health,
            landing=landing,
            live_calls=lambda: self.correlator.live_calls(),
            link=lambda: {"connected": self.listener.connected, "text": self.ami_status},
        )

    def _health(self, writer: CallWriter) -> Health:
        """/healthz: the parts (AMI and the database critical) and the self-check's problems."""
        health = Health(lambda: self.self_check.problems)
        health.register("database", database_probe(writer.engine), critical=True)
        health.register("ami", self._ami_state, critical=True)
        health.register("fastagi", self._agi_state)
        health.register("cel_recovery", self._cel_state)
        return health

    def _cel_state(self) -> PartState:
        if self.cel is None:
            return PartState("off", "cel.enabled: false")
        state = self.cel.state
        if state.problem:
            return PartState("down", state.problem)
        if state.last_run is None:
            return PartState("ok", state.status)
        when = datetime.fromtimestamp(state.last_run, UTC).isoformat(timespec="seconds")
        return PartState("ok", f"{state.status}; last read {when}: {state.calls} calls recovered")

    def _cel_recovery(self, settings: Settings, writer: CallWriter) -> CelRecovery | None:
        """The calls Asterisk logged while we did not listen, from its CEL log."""
        cel = settings.cel
        if not cel.enabled:
            return None
        read = end = None
        if cel.table is not None:
            url = cel.database_url.get_secret_value() if cel.database_url else None
            self.cel_engine = make_async_engine(url) if url else None
            engine = self.cel_engine or writer.engine
            read = partial(read_table, engine, cel.table)
            end = partial(table_end, engine, cel.table)
        return CelRecovery(
            cel,
            topology_of(settings),
            str(settings.recordings_dir),
            StoredPositions(writer.engine, settings.node, cel.source),
            self.pipeline.finished,
            self._stored,
            read,
            end,
        )

    async def _stored(self) -> bool:
        """Everything handed to the writer is stored (or kept in the spill file)."""
        return await self.writer.drain(CEL_STORE_SECONDS) == 0

    def _ami_state(self) -> PartState:
        return PartState("ok") if self.listener.connected else PartState("down", self.ami_status)

    def _agi_state(self) -> PartState:
        if self.agi is None:
            return PartState("off")
        agi = self.settings.agi
        where = f"{agi.host}:{self.agi.port}"
        return PartState("ok", where) if self.agi_listening else PartState("down", where)

    async def _start_http(self, running: contextlib.AsyncExitStack) -> bool:
        if self.web is None:
            return True
        running.push_async_callback(self.web.stop)  # the pools too, if the server fails
        return await self.web.start()

    async def _stop_agi(self) -> None:
        if self.agi is not None:
            self.agi_listening = False
            await self.agi.stop()

    async def _start_agi(self, running: contextlib.AsyncExitStack) -> bool:
        if self.agi is None:
            return True
        agi = self.settings.agi
        try:
            await self.agi.start()
        except OSError as error:
            reason = error.strerror or str(error)
            log.error("daemon.agi_listen_failed", host=agi.host, port=agi.port, reason=reason)
            return False
        log.info("daemon.agi_listening", host=agi.host, port=self.agi.port)
        self.agi_listening = True
        running.push_async_callback(self._stop_agi)
        return True

    async def _count_open_callbacks(self) -> None:
        """Open callback tasks for /metrics, counted in the database now and then."""
        if self.http is None or self.callbacks is None:
            return
        while True:
            try:
                async with self.writer.engine.connect() as conn:
                    self.daemon_metrics.open_callbacks = await count_open_tasks(conn)
            except Exception as error:  # the database is down: the last count stays
                log.debug("callbacks.open_tasks_unknown", error=str(error) or type(error).__name__)
            await asyncio.sleep(OPEN_CALLBACKS_SECONDS)

    async def _keep_caller_history(self) -> None:
        """Callers' last managers in memory (sticky routing), refreshed from the database."""
        days = max((group.sticky_days for group in self.board.plan.groups.values()), default=0)
        if days == 0:
            return
        since = datetime.now(UTC) - timedelta(days=days)
        try:
            callers = await self.sticky.preload(since)
            log.info("routing.caller_history_loaded", callers=callers, days=days)
        except Exception as error:  # the database answers each lookup instead
            log.warning("routing.caller_history_failed", error=str(error) or type(error).__name__)
        while True:
            await asyncio.sleep(STICKY_REFRESH_SECONDS)
            try:
                await self.sticky.refresh()
            except Exception as error:
                log.warning(
                    "routing.caller_history_failed", error=str(error) or type(error).__name__
                )

    def _listen(self) -> None:
        """What follows each stored call, in this order (after the writer's own hook)."""
        if self.callbacks is not None:  # a missed call opens a task, a reached customer closes it
            self.listeners.add("callbacks", self.callbacks.call_written)
        self.listeners.add("metrics", self.calls_counted.call_written)
        if self.outbox:  # the writer put the call's events in the outbox: deliver them (and
            # a callback task the call closed: its Telegram messages change)
            self.listeners.add("crm", partial(_wake, self.integrations))
        if self.settings.number_pools:
            self.listeners.add("attribution", self.attribution_watch.call_written)
        if self.web is not None:  # the board's figures of the day are read again
            self.listeners.add("board", self.web.board.day_changed)


def _wake(integrations: Integrations, record: CallRecord, new: bool) -> None:
    integrations.call_stored()


def _each(calls: list[Callable[[], None]]) -> Callable[[], None]:
    """One callable calling each of ``calls``."""
    if len(calls) == 1:
        return calls[0]

    def each() -> None:
        for call in calls:
            call()

    return each
