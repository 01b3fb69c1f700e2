"""What Prometheus scrapes about the pools: use, exhaustion, the attribution warning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest

from pbx_tracker.attribution.settings import AttributionSettings
from pbx_tracker.attribution.watch import AttributionWatch
from pbx_tracker.web.memory_pool import MemoryVisitPool
from pbx_tracker.web.metrics import PoolCollector, metrics_registry
from pbx_tracker.web.models import VisitStart
from stored import missed_call


def scrape(collector: PoolCollector) -> dict[str, float]:
    samples = {}
    for line in generate_latest(metrics_registry(collector)).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def test_use_exhaustion_and_warning_are_scraped() -> None:
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
