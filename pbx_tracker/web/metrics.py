"""`/metrics` in Prometheus' text format: calls, the AMI link, callbacks, the website
number pools and the visits API.

Read at scrape time from what the daemon holds in memory (no database query):

- ``pbx_tracker_calls_total{status,source}``: calls stored since the daemon started;
- ``pbx_tracker_ami_connected``: 1 while logged in to Asterisk;
- ``pbx_tracker_ami_events_total``: AMI events correlated (``rate()`` = events/s);
- ``pbx_tracker_ami_events_failed_total``: AMI events the correlator could not apply
  (each logged and kept in ``calls.dead_letters``);
- ``pbx_tracker_callbacks_open``: open callback tasks (counted in the database by the
  daemon every ``OPEN_CALLBACKS_SECONDS``; absent until the first count);

- ``pbx_tracker_pool_numbers{pool}``: numbers in the pool;
- ``pbx_tracker_pool_in_use{pool}``: numbers held by a visit now (hold not run out);
- ``pbx_tracker_pool_exhaustions_total{pool}``: visits shown the fallback since start;
- ``pbx_tracker_pool_capped_visits_total{pool}``: visits refused since start because
  their address or network held as many live visits as it may;
- ``pbx_tracker_pool_bot_visits_total{pool}``: visits of bots (crawlers, headless
  browsers, scripts) shown the fallback since start;
- ``pbx_tracker_pool_unattributed_share{pool}``: share of the pool's calls over the
  last day with no single visit (absent before the first call);
- ``pbx_tracker_pool_attribution_warning{pool}``: 1 while that share is over
  ``attribution.warn_unattributed_share`` (the log says so too);
- ``pbx_tracker_http_visits_started_total``, ``..._keep_alives_total``,
  ``..._rate_limited_total``, ``..._rejected_total``, ``..._errors_total``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pbx_tracker.attribution.memory_pool import MemoryVisitPool
from pbx_tracker.attribution.watch import AttributionWatch
from pbx_tracker.calls.records import CallRecord, Direction

__all__ = ["BoardCollector", "CallCounter", "DaemonCollector", "PoolCollector", "metrics_registry"]

OPEN_CALLBACKS_SECONDS = 15.0

Clock = Callable[[], datetime]
ApiCounters = Callable[[], dict[str, int]]


class PoolCollector(Collector):
    """The pools' and the API's figures, gathered on every scrape."""

    def __init__(
        self,
        pools: list[MemoryVisitPool],
        watch: AttributionWatch,
        api_counters: ApiCounters,
        clock: Clock,
    ) -> None:
        self._pools = pools
        self._watch = watch
        self._api_counters = api_counters
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self._pool_metrics()
        for name, value in self._api_counters().items():
            yield CounterMetricFamily(
                f"pbx_tracker_http_{name}", f"Visits API: {name.replace('_', ' ')}", value=value
            )

    def _pool_metrics(self) -> Iterator[Metric]:
        labels = ["pool"]
        numbers = GaugeMetricFamily(
            "pbx_tracker_pool_numbers", "Numbers in the pool", labels=labels
        )
        in_use = GaugeMetricFamily(
            "pbx_tracker_pool_in_use", "Numbers held by a visit now", labels=labels
        )
        exhausted = CounterMetricFamily(
            "pbx_tracker_pool_exhaustions",
            "Visits shown the fallback number since the daemon started",
            labels=labels,
        )
        share = GaugeMetricFamily(
            "pbx_tracker_pool_unattributed_share",
            "Share of the pool's calls over the last day with no single visit",
            labels=labels,
        )
        warning = GaugeMetricFamily(
            "pbx_tracker_pool_attribution_warning",
            "1 while that share is over attribution.warn_unattributed_share",
            labels=labels,
        )
        capped = CounterMetricFamily(
            "pbx_tracker_pool_capped_visits",
            "Visits refused since the daemon started: their address or network was at its cap",
            labels=labels,
        )
        bots = CounterMetricFamily(
            "pbx_tracker_pool_bot_visits",
            "Visits of bots shown the fallback number since the daemon started",
            labels=labels,
        )
        now = self._clock()
        for pool in self._pools:
            allocator = pool.allocator
            held = sum(
                1 for lease in allocator.live_leases() if lease.ends_at(allocator.hold) > now
            )
            numbers.add_metric([pool.name], len(allocator.numbers))
            in_use.add_metric([pool.name], held)
            exhausted.add_metric([pool.name], allocator.exhaustions)
            capped.add_metric([pool.name], pool.capped_visits)
            bots.add_metric([pool.name], pool.bot_visits)
            warning.add_metric([pool.name], float(self._watch.warned(pool.name)))
            unexplained = self._watch.share(pool.name)
            if unexplained is not None:
                share.add_metric([pool.name], unexplained)
        yield from (numbers, in_use, exhausted, capped, bots, share, warning)


class CallCounter:
    """Calls stored since start, by status and source (fed by the writer's on_written)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def call_written(self, record: CallRecord, new: bool) -> None:
        if new and record.direction is Direction.INBOUND:
            self.counts[(str(record.status), record.source or "unknown")] += 1


class DaemonCollector(Collector):
    """The daemon's own figures: calls, the AMI link and events, open callbacks."""

    def __init__(
        self,
        calls: CallCounter,
        ami_connected: Callable[[], bool],
        events_seen: Callable[[], int],
        events_failed: Callable[[], int] = lambda: 0,
    ) -> None:
        self._calls = calls
        self._ami_connected = ami_connected
        self._events_seen = events_seen
        self._events_failed = events_failed
        self.open_callbacks: int | None = None
        # per outbox target (webhook, bitrix24, amocrm, telegram): up, pending, delivered, ...
        self.outbox: Callable[[], Mapping[str, Mapping[str, float]]] = dict
        # routing's asks of the CRM for a caller's owner: lookups, hits, timeouts, errors
        self.owner_lookups: Callable[[], Mapping[str, float]] = dict

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "pbx_tracker_calls", "Calls stored since start", labels=["status", "source"]
        )
        for (status, source), count in sorted(self._calls.counts.items()):
            calls.add_metric([status, source], count)
        yield calls
        yield GaugeMetricFamily(
            "pbx_tracker_ami_connected",
            "1 while logged in to Asterisk's AMI",
            value=float(self._ami_connected()),
        )
        yield CounterMetricFamily(
            "pbx_tracker_ami_events", "AMI events correlated", value=self._events_seen()
        )
        yield CounterMetricFamily(
            "pbx_tracker_ami_events_failed",
            "AMI events the correlator could not apply (kept in calls.dead_letters)",
            value=self._events_failed(),
        )
        if self.open_callbacks is not None:
            yield GaugeMetricFamily(
                "pbx_tracker_callbacks_open", "Open callback tasks", value=self.open_callbacks
            )
        yield from _outbox_metrics(self.outbox())
        owners = self.owner_lookups()
        if owners:
            lookups = CounterMetricFamily(
                "pbx_tracker_crm_owner_lookups",
                "Asks of the CRM for a caller's owner (routing's crm_owner), by outcome",
                labels=["outcome"],
            )
            for outcome, times in sorted(owners.items()):
                lookups.add_metric([outcome], times)
            yield lookups


_OUTBOX_METRICS = (
    ("up", GaugeMetricFamily, "1 while the platform takes events (0: down, events wait)"),
    ("pending", GaugeMetricFamily, "Events waiting for the platform"),
    ("delivered", CounterMetricFamily, "Events the platform took since start"),
    ("given_up", CounterMetricFamily, "Events given up (refused, or past give_up_hours)"),
    ("retries", CounterMetricFamily, "Tries that failed and were put off since start"),
    ("rate_limited", CounterMetricFamily, "Times the platform asked us to slow down"),
)


def _outbox_metrics(figures: Mapping[str, Mapping[str, float]]) -> Iterator[Metric]:
    if not figures:
        return
    for name, family, text in _OUTBOX_METRICS:
        metric = family(f"pbx_tracker_outbox_{name}", text, labels=["target"])
        for target, values in sorted(figures.items()):
            metric.add_metric([target], values.get(name, 0.0))
        yield metric


class BoardCollector(Collector):
    """The live board: how many are open, how many documents went out to them."""

    def __init__(self, boards: Callable[[], int], documents: Callable[[], int]) -> None:
        self._boards = boards
        self._documents = documents

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "pbx_tracker_boards_open",
            "Live boards open now (streams of /board/events)",
            value=self._boards(),
        )
        yield CounterMetricFamily(
            "pbx_tracker_board_documents",
            "Board documents with news built since start (each sent to every open board)",
            value=self._documents(),
        )


def metrics_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of our own (not the process-wide default) holding ``collectors``."""
    registry = CollectorRegistry(auto_describe=False)  # collect() only on a scrape
    for collector in collectors:
        registry.register(collector)
    return registry
