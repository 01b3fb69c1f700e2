"""The composition root: builds the services in order, runs them, shuts them down.

Start: database (schema must be at head) → call writer → managers' last calls read
back (bounded) → FastAGI server (the router: whom to ring) → HTTP server (the
website's snippet and visits API, the
number pools restored from the database) → callbacks (tasks for missed calls, the reminder
scheduler) → AMI listener → event consumer (manager board, and correlator →
labels → writer → callbacks).  A FastAGI or HTTP port that cannot be opened,
pools that cannot be restored, or a scheduler that cannot start, stop the start
with exit code 1.  READY=1 goes to systemd once
the database answered and the first AMI login succeeded; WATCHDOG=1 is pinged
from the event loop.  SIGTERM/SIGINT: STOPPING=1, log off from Asterisk,
correlate what was already received, write what is finished (bounded), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker import systemd
from pbx_tracker.agi.route import RouteHandler
from pbx_tracker.agi.server import FastAgiServer
from pbx_tracker.ami.capture import CaptureWriter
from pbx_tracker.ami.connection import AmiListener, AmiLoginError, ListenerItem, Resync, StateList
from pbx_tracker.ami.dead_letters import DeadLetters
from pbx_tracker.selfcheck.live import SelfCheckRunner
from pbx_tracker.attribution.sources import CallLabeler
from pbx_tracker.attribution.configured_pools import VisitPools
from pbx_tracker.attribution.status import PoolStatus, pool_status
from pbx_tracker.attribution.visit_pool import NoPools
from pbx_tracker.attribution.watch import AttributionWatch
from pbx_tracker.callbacks.notifiers import WebhookNotifier
from pbx_tracker.callbacks.ringme import RingMe
from pbx_tracker.callbacks.service import CallbackService
from pbx_tracker.callbacks.tasks import count_open_tasks
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction
from pbx_tracker.cel.events import ami_events
from pbx_tracker.cel.service import CelRecovery
from pbx_tracker.cel.table import read_table, table_end
from pbx_tracker.crm.delivery import CrmDelivery
from pbx_tracker.replay import topology_of
from pbx_tracker.routing.availability import ManagerBoard, restore_last_calls
from pbx_tracker.routing.router import Router
from pbx_tracker.routing.sticky import StickyMemory
from pbx_tracker.store.cel_positions import StoredPositions
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.session import DatabaseNotReadyError, open_writer
from pbx_tracker.web.app import HttpServer
from pbx_tracker.web.health import Health, PartState, database_probe
from pbx_tracker.web.metrics import (
    OPEN_CALLBACKS_SECONDS,
    CallCounter,
    DaemonCollector,
    PoolCollector,
    metrics_registry,
)
from pbx_tracker.web.pages import Pages
from pbx_tracker.web.snippet import LandingPage

if TYPE_CHECKING:
    from pbx_tracker.config import Settings
    from pbx_tracker.store.writer import CallWriter

log = structlog.get_logger(__name__)

STICKY_REFRESH_SECONDS = 60.0
CEL_STORE_SECONDS = 30.0  # a part of the CEL log waits this long for its calls to be stored


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run_daemon(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """`pbx-tracker run`; returns the process exit code."""
    stop = stop or asyncio.Event()
    install_stop_signals(stop)
    try:
        async with open_writer(settings) as writer:
            return await Daemon(settings, writer).run(stop)
    except DatabaseNotReadyError as error:
        log.error("daemon.database_not_ready", reason=str(error))
        return 1


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
        self.correlator = Correlator(topology_of(settings))
        self._gap_filled: set[str] = set()  # Linkedids whose AMI gap CEL told (resync)
        calls = settings.calls
        self.dead_letters = DeadLetters(calls.dead_letters, calls.dead_letters_max_events)
        self.labeler = CallLabeler(settings.directory, settings.calls.target_seconds)
        self.listener = AmiListener(settings.ami, on_status=self._on_ami_status)
        self.ami_status = "connecting"
        self.self_check = SelfCheckRunner(settings, self.listener.send_action)
        self.board = ManagerBoard(settings.routing, settings.directory, clock)
        self.sticky = StickyMemory(writer.engine)
        self.router = Router(self.board, self.sticky, clock)
        route = RouteHandler(
            self.router, settings.recordings_dir, clock, lambda: self.listener.connected
        )
        handlers = {"route": route}
        self.agi = FastAgiServer(handlers, settings.agi) if settings.agi.enabled else None
        self.agi_listening = False
        self.ringme = self._ring_me(settings)
        self.callbacks = self._callbacks(settings, writer)
        self.attribution_watch = AttributionWatch(settings.attribution)
        self.calls_counted = CallCounter()
        _also_on_written(writer, self.calls_counted.call_written)
        self.cel_engine: AsyncEngine | None = None  # cel_pgsql's database, when not ours
        self.cel = self._cel_recovery(settings, writer)
        self.health = self._health(writer)
        self.daemon_metrics = DaemonCollector(
            self.calls_counted,
            ami_connected=lambda: self.listener.connected,
            events_seen=lambda: self.correlator.events_seen,
            events_failed=lambda: self.correlator.events_failed,
        )
        self.visit_pools, self.http = self._http(settings, writer, landing)
        self.crm = self._crm(settings, writer)
        if settings.number_pools:
            _also_on_written(writer, self.attribution_watch.call_written)
        self.ready = asyncio.Event()
        self.resynced = asyncio.Event()
        self.handled = asyncio.Event()  # set after each AMI item is taken in (tests wait on it)
        self.ami_changed = asyncio.Event()  # set at each AMI status change (tests wait on it)

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
        await restore_last_calls(self.board, self.writer.engine)  # before the router answers
        if not await self._start_agi():
            return 1
        if not await self._start_http():
            await self._stop_http()
            await self._stop_agi()
            return 1
        if not await self._start_callbacks():
            await self._stop_http()
            await self._stop_agi()
            return 1
        recovery = None if self.cel is None else asyncio.create_task(self.cel.run(), name="cel")
        listener = asyncio.create_task(self.listener.run(), name="ami-listener")
        consumer = asyncio.create_task(self._consume(), name="correlator")
        history = asyncio.create_task(self._keep_caller_history(), name="caller-history")
        counting = asyncio.create_task(self._count_open_callbacks(), name="open-callbacks")
        crm = None if self.crm is None else asyncio.create_task(self.crm.run(), name="crm")
        watchdog = self._start_watchdog(stop)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({listener, stopped}, return_when=asyncio.FIRST_COMPLETED)
        systemd.stopping()
        code = 0
        if listener.done() and isinstance(listener.exception(), AmiLoginError):
            log.error("daemon.ami_login_rejected", reason=str(listener.exception()))
            code = 1
        await self._shutdown(
            listener, consumer, history, counting, crm, watchdog, stopped, recovery
        )
        if self.crm is not None:
            await self.crm.close()
        if self.cel_engine is not None:
            await self.cel_engine.dispose()
        return code

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
        service = CallbackService(settings, writer.engine, board=self.board, ringme=self.ringme)
        _also_on_written(writer, service.call_written)
        return service

    async def _start_callbacks(self) -> bool:
        if self.callbacks is None:
            return True
        try:
            await self.callbacks.start()
        except Exception as error:  # e.g. the scheduler's job store cannot be opened
            log.error("daemon.callbacks_failed", reason=str(error) or type(error).__name__)
            return False
        return True

    def _http(
        self, settings: Settings, writer: CallWriter, landing: LandingPage | None
    ) -> tuple[VisitPools | None, HttpServer | None]:
        """The website's API and snippet, with the number pools on the database."""
        if not settings.http.enabled:
            return None, None
        pools = None
        if settings.number_pools:
            pools = VisitPools.from_settings(
                writer.engine,
                settings.number_pools,
                region=settings.phone_region,
                privacy=settings.attribution,
                clock=self._now,
            )
        status = None if pools is None else partial(self._pool_status, writer.engine)
        server = HttpServer(
            settings.http,
            pools or NoPools(),
            landing=landing,
            pool_status=status,
            metrics=metrics_registry(self._metrics(pools), self.daemon_metrics),
            pages=self._pages(settings, writer),  # 404 while nobody can sign in
            health=self.health,
        )
        return pools, server

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
            self._call_finished,
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

    def _crm(self, settings: Settings, writer: CallWriter) -> CrmDelivery | None:
        """The CRM webhook: events from the outbox the writer fills, woken by each call."""
        if settings.crm.webhook is None:
            return None
        notifier = WebhookNotifier(settings.crm.webhook)
        delivery = CrmDelivery(writer.engine, settings.crm, notifier, lambda: datetime.now(UTC))
        _also_on_written(writer, lambda record, new: delivery.wake())
        return delivery

    def _pages(self, settings: Settings, writer: CallWriter) -> Pages:
        """The pages for people; "Call now" goes out on our AMI connection."""
        return Pages(
            settings.web,
            writer.engine,
            region=settings.phone_region,
            ringme=self.ringme,
            dial=self.board.plan.dial_string,
            recordings_dir=settings.recordings_dir,
            rules=settings.report_rules(),
            managers={manager.extension: manager.name for manager in settings.managers},
            callbacks=settings.callbacks,
        )

    def _metrics(self, pools: VisitPools | None) -> PoolCollector:
        def api_counters() -> dict[str, int]:
            return {} if self.http is None else asdict(self.http.stats)

        return PoolCollector(
            [] if pools is None else list(pools.pools.values()),
            self.attribution_watch,
            api_counters,
            clock=self._now,
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def _pool_status(self, engine: AsyncEngine) -> list[PoolStatus]:
        """Every pool's figures over the last day, for the status endpoint."""
        now = self._now()
        async with engine.connect() as conn:
            return [
                await pool_status(
                    conn, pool, self.settings.attribution, since=now - timedelta(days=1), now=now
                )
                for pool in self.settings.number_pools
            ]

    async def _start_http(self) -> bool:
        if self.http is None:
            return True
        http = self.settings.http
        try:
            if self.visit_pools is not None:
                await self.visit_pools.restore()
            await self.http.start()
        except OSError as error:
            reason = error.strerror or str(error)
            log.error("daemon.http_listen_failed", host=http.host, port=http.port, reason=reason)
            return False
        except Exception as error:  # the pools' leases could not be read back
            log.error("daemon.visit_pools_failed", reason=str(error) or type(error).__name__)
            return False
        return True

    async def _stop_http(self) -> None:
        if self.http is not None:
            await self.http.stop()
        if self.visit_pools is not None:
            await self.visit_pools.close()

    async def _stop_agi(self) -> None:
        if self.agi is not None:
            self.agi_listening = False
            await self.agi.stop()

    def _ring_me_result(self, event: AmiEvent) -> None:
        assert self.ringme is not None
        result = self.ringme.feed(event)
        if result is not None:
            log.info(
                "callbacks.ringme_result",
                task_id=result.task_id,
                attempt=result.attempt,
                outcome=result.outcome,
                reason=result.reason,
            )

    async def _start_agi(self) -> bool:
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

    def _start_watchdog(self, stop: asyncio.Event) -> asyncio.Task[None] | None:
        interval = systemd.watchdog_interval()
        if interval is None:
            return None
        return asyncio.create_task(systemd.watchdog_loop(interval, stop))

    async def _shutdown(
        self,
        listener: asyncio.Task[None],
        consumer: asyncio.Task[None],
        *others: asyncio.Task[object] | None,
    ) -> None:
        log.info("daemon.stopping", calls_in_progress=self.correlator.calls_in_progress)
        await self._stop_http()
        await self._stop_agi()
        if self.callbacks is not None:
            await self.callbacks.stop()
        await self.self_check.close()
        await self.listener.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener
        self._correlate_backlog()
        for task in (consumer, *others):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # open_writer() drains the writer (bounded) and keeps the rest for the next start
        log.info("daemon.stopped", calls_to_write=self.writer.pending)

    async def _consume(self) -> None:
        while True:
            item = await self.listener.events.get()
            if isinstance(item, Resync):
                try:
                    await self._before_resync(item)
                except Exception:  # the resync itself must still be applied
                    log.exception("cel.gap_recovery_failed")
            try:
                self._handle(item)
            except Exception:  # one bad event must not stop the tracking of all calls
                log.exception("daemon.event_failed", ami_event=getattr(item, "name", "resync"))
            self.handled.set()

    async def _before_resync(self, item: Resync) -> None:
        """After each (re)connect: the calls Asterisk logged meanwhile, first from CEL.

        Calls that ended in the gap are recovered whole; a call still going that the
        correlator never heard of starts from its true beginning (its CEL rows so far),
        and one it heard until the link dropped hears what happened in the gap (an
        answer, a transfer), so its answer, ring, talk and recording are right when it
        ends (and the resync does not mark it incomplete).
        """
        if self.cel is None:
            return
        live = {channel.fields.get("Linkedid", "") for channel in item.channels}
        going = await self.cel.run(live, item.time)
        monitor_dir = str(self.settings.recordings_dir)
        for linkedid in sorted(live & going.keys()):
            events = ami_events(going[linkedid], monitor_dir)
            if self.correlator.follows(linkedid):  # heard up to the gap: the gap only
                events = self.correlator.news(linkedid, events)
            elif self.correlator.knows(linkedid):
                continue
            for event in events:
                self.correlator.feed(event)
            self._gap_filled.add(linkedid)

    def _correlate_backlog(self) -> None:
        while not self.listener.events.empty():
            self._handle(self.listener.events.get_nowait())

    def _handle(self, item: ListenerItem) -> None:
        if isinstance(item, StateList):
            self.board.resync(**{item.kind: [i.fields for i in item.items]}, time=item.time)
            return
        if isinstance(item, Resync):
            channels = [c.fields for c in item.channels]
            self.board.resync(channels=channels, time=item.time)
            records = self.correlator.resync(channels, item.time, filled=self._gap_filled)
            self._gap_filled.clear()
            self.resynced.set()
        else:
            self.self_check.observe(item.fields)
            self.board.feed(item)
            if self.ringme is not None and item.name == "OriginateResponse":
                self._ring_me_result(item)
            records = self.correlator.feed(item)
        self.dead_letters.keep(self.correlator.take_failures())
        for record in records:
            self._call_finished(record)

    def _call_finished(self, record: CallRecord) -> None:
        labelled = self.labeler.label(record)
        if labelled is None:
            log.info("calls.untracked", did=record.did, linkedid=record.linkedid)
            return
        self.sticky.remember(labelled)
        log.info(
            "calls.finished",
            linkedid=labelled.linkedid,
            direction=str(labelled.direction),
            did=labelled.did,
            source=labelled.source,
            status=str(labelled.status),
            missed_reason=labelled.missed_reason and str(labelled.missed_reason),
            answered_by=labelled.answered_by,
            ring=labelled.ring_seconds,
            talk=labelled.talk_seconds,
        )
        if _answered_by_undeclared(labelled):
            # the admin declares this number or device for a manager (managers[] in the config)
            log.warning(
                "calls.answered_by_undeclared",
                linkedid=labelled.linkedid,
                answered_number=labelled.answered_number,
                answered_via=labelled.answered_via,
            )
        self.writer.submit(labelled)


def _answered_by_undeclared(record: CallRecord) -> bool:
    """An inbound call someone answered whom no manager declared as a device or number."""
    inbound = record.direction is Direction.INBOUND
    return inbound and record.status is CallStatus.ANSWERED and record.answered_by is None


def _also_on_written(writer: CallWriter, hook: Callable[[CallRecord, bool], None]) -> None:
    """Call ``hook`` too for every call the writer stored (after the hooks set before)."""
    earlier = writer.on_written

    def on_written(record: CallRecord, new: bool) -> None:
        if earlier is not None:
            earlier(record, new)
        hook(record, new)

    writer.on_written = on_written


async def run_capture(settings: Settings, out: Path, stop: asyncio.Event | None = None) -> int:
    """`pbx-tracker capture`: append live AMI traffic to a JSON Lines file."""
    stop = stop or asyncio.Event()
    install_stop_signals(stop)
    listener = AmiListener(settings.ami)
    task = asyncio.create_task(listener.run())
    with out.open("a", encoding="utf-8") as stream:
        writer = CaptureWriter(stream)
        getter: asyncio.Task[ListenerItem] | None = None
        stopped = asyncio.create_task(stop.wait())
        while not stop.is_set() and not task.done():
            getter = asyncio.create_task(listener.events.get())
            await asyncio.wait({getter, stopped, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done() and isinstance(item := getter.result(), AmiEvent):
                writer.write(item)
        if getter is not None:
            getter.cancel()
        stopped.cancel()
    await listener.close()
    log.info("daemon.capture_stopped", messages=writer.count, file=str(out))
    if task.done() and isinstance(task.exception(), AmiLoginError):
        log.error("daemon.capture_ami_login_rejected", reason=str(task.exception()))
        return 1
    return 0
