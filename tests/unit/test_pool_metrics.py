"""What Prometheus scrapes: calls, the AMI link, callbacks, and the pools' use,
exhaustion and attribution warning."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.registry import Collector

from pbx_tracker.attribution.memory_pool import MemoryVisitPool
from pbx_tracker.attribution.settings import AttributionSettings
from pbx_tracker.attribution.visit_pool import TooManyVisits, VisitStart
from pbx_tracker.attribution.watch import AttributionWatch
from pbx_tracker.calls.records import CallStatus
from pbx_tracker.web.metrics import CallCounter, DaemonCollector, PoolCollector, metrics_registry
from stored import missed_call


def scrape(collector: Collector) -> dict[str, float]:
    samples = {}
    for line in generate_latest(metrics_registry(collector)).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def test_use_exhaustion_and_warning_are_scraped() -> None:
    """Prometheus sees each pool's size, numbers in use, exhaustions, unattributed share,
    attribution warning and visits started, and numbers whose hold ran out no longer count as in
    use."""
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    pool = MemoryVisitPool(
        ["+74950000001", "+74950000002"],
        fallback="+74950000000",
        name="site",
        hold_seconds=600,
        clock=lambda: now,
    )
    for n in range(3):
        await pool.start(VisitStart(page="https://example.ru/"), f"10.0.0.{n}")  # type: ignore[call-arg]
    watch = AttributionWatch(AttributionSettings(warn_unattributed_share=0.2, warn_min_calls=2))
    for n in range(2):
        record = missed_call(f"1.{n}", now, "+79161234567")
        unexplained = {"method": "unattributed", "pool": "site"}
        watch.call_written(record.replace(attribution=unexplained), new=True)
    collector = PoolCollector([pool], watch, lambda: {"visits_started": 3}, clock=lambda: now)
    samples = scrape(collector)
    assert samples['pbx_tracker_pool_numbers{pool="site"}'] == 2
    assert samples['pbx_tracker_pool_in_use{pool="site"}'] == 2
    assert samples['pbx_tracker_pool_exhaustions_total{pool="site"}'] == 1
    assert samples['pbx_tracker_pool_unattributed_share{pool="site"}'] == 1.0
    assert samples['pbx_tracker_pool_attribution_warning{pool="site"}'] == 1
    assert samples["pbx_tracker_http_visits_started_total"] == 3
    later = PoolCollector([pool], watch, dict, clock=lambda: now + timedelta(seconds=601))
    assert scrape(later)['pbx_tracker_pool_in_use{pool="site"}'] == 0  # holds ran out


async def test_capped_and_bot_visits_are_scraped() -> None:
    """Visits refused by the caps and bots shown the site's number are counted per pool."""
    pool = MemoryVisitPool(["+74950000001", "+74950000002"], fallback="+74950000000", name="site")
    visit = VisitStart(page="https://example.ru/")  # type: ignore[call-arg]
    await pool.start(visit, "10.0.0.1", bot=True)
    for n in range(7):
        with contextlib.suppress(TooManyVisits):
            await pool.start(visit, f"10.0.0.{n}")
    now = datetime.now(UTC)
    samples = scrape(
        PoolCollector([pool], AttributionWatch(AttributionSettings()), dict, lambda: now)
    )
    assert samples['pbx_tracker_pool_bot_visits_total{pool="site"}'] == 1
    assert samples['pbx_tracker_pool_capped_visits_total{pool="site"}'] == 2  # 5 per /24


def test_calls_ami_and_open_callbacks_are_scraped() -> None:
    """Prometheus sees calls by source and status (a call stored again is not counted twice),
    whether AMI is connected, the events taken in and, once known, the open callbacks."""
    counter = CallCounter()
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    answered = missed_call("1.1", now, "+79161234567").replace(
        status=CallStatus.ANSWERED, missed_reason=None, source="yandex"
    )
    counter.call_written(answered, new=True)
    counter.call_written(answered, new=False)  # stored again: not a new call
    counter.call_written(missed_call("1.2", now, None).replace(source="yandex"), new=True)
    collector = DaemonCollector(counter, ami_connected=lambda: True, events_seen=lambda: 1234)
    samples = scrape(collector)
    assert samples['pbx_tracker_calls_total{source="yandex",status="answered"}'] == 1
    assert samples['pbx_tracker_calls_total{source="yandex",status="missed"}'] == 1
    assert samples["pbx_tracker_ami_connected"] == 1
    assert samples["pbx_tracker_ami_events_total"] == 1234
    assert "pbx_tracker_callbacks_open" not in samples  # not counted yet
    collector.open_callbacks = 3
    assert scrape(collector)["pbx_tracker_callbacks_open"] == 3
