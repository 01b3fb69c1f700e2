"""The daemon's HTTP side: the website's snippet and visits API with the number pools on
the database, the pages for people with the live board, /metrics and /healthz, on one
aiohttp server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.attribution.configured_pools import VisitPools
from pbx_tracker.attribution.status import PoolStatus, pool_status
from pbx_tracker.attribution.visit_pool import NoPools
from pbx_tracker.attribution.watch import AttributionWatch
from pbx_tracker.board.feed import BoardFeed
from pbx_tracker.board.floor import Floor
from pbx_tracker.board.today import today_figures
from pbx_tracker.callbacks.ringme import RingMe
from pbx_tracker.calls.live import LiveCall
from pbx_tracker.crm.click_to_call import ClickToCall
from pbx_tracker.routing.availability import ManagerBoard
from pbx_tracker.web.app import HttpServer
from pbx_tracker.web.health import Health
from pbx_tracker.web.metrics import (
    BoardCollector,
    DaemonCollector,
    PoolCollector,
    metrics_registry,
)
from pbx_tracker.web.pages import Pages
from pbx_tracker.web.pages.crm_events import add_crm_event_routes
from pbx_tracker.web.snippet import LandingPage

if TYPE_CHECKING:
    from pbx_tracker.config import Settings

__all__ = ["DaemonHttp"]

log = structlog.get_logger(__name__)


class DaemonHttp:
    """The HTTP server and the number pools it leases from (when ``http`` is enabled)."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        *,
        clock: Callable[[], float],
        board: ManagerBoard,
        ringme: RingMe | None,
        attribution_watch: AttributionWatch,
        daemon_metrics: DaemonCollector,
        health: Health,
        landing: LandingPage | None,
        live_calls: Callable[[], list[LiveCall]],
        link: Callable[[], dict[str, object]],
    ) -> None:
        """``clock``: the router's (the demo's simulated day); ``landing``: the demo's page;
        ``live_calls``, ``link``: the calls going on and the AMI link, for the board."""
        self.settings = settings
        self.clock = clock
        floor = Floor(board, live_calls, settings.directory, settings.phone_region)
        rules = settings.report_rules()
        self.board = BoardFeed(
            floor, lambda: today_figures(engine, rules, self._now()), link=link, clock=clock
        )
        self.pools: VisitPools | None = None
        if settings.number_pools:
            self.pools = VisitPools.from_settings(
                engine,
                settings.number_pools,
                region=settings.phone_region,
                privacy=settings.attribution,
                clock=self._now,
            )
        pool_figures = None if self.pools is None else partial(self._pool_status, engine)
        self.server = HttpServer(
            settings.http,
            self.pools or NoPools(),
            landing=landing,
            pool_status=pool_figures,
            metrics=metrics_registry(
                self._metrics(attribution_watch),
                daemon_metrics,
                BoardCollector(lambda: self.board.boards, lambda: self.board.version),
            ),
            pages=_pages(settings, engine, board, ringme),  # 404 while nobody can sign in
            health=health,
            board=self.board,
        )

        # click-to-call from Bitrix24 (its OnExternalCallStart event): 404 while not set up
        self.click_to_call = ClickToCall.from_settings(
            settings.crm.bitrix24, settings.directory, ringme, dial=board.plan.dial_string
        )
        add_crm_event_routes(self.server.app, self.click_to_call)

    async def start(self) -> bool:
        """The pools' leases read back, then the port opened; False (logged) if not."""
        http = self.settings.http
        try:
            if self.pools is not None:
                await self.pools.restore()
            await self.server.start()
        except OSError as error:
            reason = error.strerror or str(error)
            log.error("daemon.http_listen_failed", host=http.host, port=http.port, reason=reason)
            return False
        except Exception as error:  # the pools' leases could not be read back
            log.error("daemon.visit_pools_failed", reason=str(error) or type(error).__name__)
            return False
        return True

    async def stop(self) -> None:
        """Stop serving and close the pools (also after a start that failed half-way)."""
        await self.server.stop()  # the click-to-call too (closed with the app)
        if self.pools is not None:
            await self.pools.close()

    def _metrics(self, attribution_watch: AttributionWatch) -> PoolCollector:
        return PoolCollector(
            [] if self.pools is None else list(self.pools.pools.values()),
            attribution_watch,
            self._api_counters,
            clock=self._now,
        )

    def _api_counters(self) -> dict[str, int]:
        return asdict(self.server.stats)

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


def _pages(
    settings: Settings, engine: AsyncEngine, board: ManagerBoard, ringme: RingMe | None
) -> Pages:
    """The pages for people; "Call now" goes out on the daemon's AMI connection."""
    return Pages(
        settings.web,
        engine,
        region=settings.phone_region,
        ringme=ringme,
        dial=board.plan.dial_string,
        recordings_dir=settings.recordings_dir,
        rules=settings.report_rules(),
        managers={manager.extension: manager.name for manager in settings.managers},
        callbacks=settings.callbacks,
        crm_targets=settings.crm.targets,
    )
