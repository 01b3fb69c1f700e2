"""From website visit to call record through the real daemon: the visit asks the daemon's
HTTP API for a number, the fake Asterisk replays a captured call with its DID rewritten
to that number, and the stored record carries the visit's source and tags."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp
from daemons import http_environ, start_daemon, trace_settings
from structlog.testing import capture_logs

from pbx_tracker.attribution.visits import get_visit
from pbx_tracker.daemon import Daemon
from pbx_tracker.pipeline import open_writer
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from pbx_tracker.sim.visitors import BROWSER_USER_AGENT
from stored import connected, stored_calls
from traces import TRACES

SITE = "https://example.ru"
# trace 04: a caller abandons a call on 74951110010, a number of the traces' pool "site"
CAPTURED_DID = "74951110010"
VISIT = {
    "pool": "site",
    "visitor_id": "browser-0123456789abcdef",
    "page": f"{SITE}/windows?utm_source=yandex&utm_medium=cpc",
    "referrer": "https://yandex.ru/",
    "utm_source": "yandex",
    "utm_medium": "cpc",
    "utm_campaign": "winter-sale",
    "utm_term": "plastic windows",
    "yclid": "7304",
}


def call_on(number: str, stem: str = "04_missed_caller_abandon") -> list[dict[str, str]]:
    """The captured call with its DID replaced by ``number`` (E.164) in every field."""
    digits = number.lstrip("+")
    return [
        {key: value.replace(CAPTURED_DID, digits) for key, value in event.items()}
        for event in trace_events(TRACES / f"{stem}.jsonl")
    ]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format as {'name{labels}': value}."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def start_visit(port: int, **changes: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER_USER_AGENT}) as session:
        url = f"http://127.0.0.1:{port}/api/v1/visits"
        async with session.post(url, json={**VISIT, **changes}) as answer:
            assert answer.status == 200, await answer.text()
            body: dict[str, Any] = await answer.json()
            return body


async def test_a_visits_call_gets_its_source_tags_and_session(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A visit given a pool number by the running daemon, followed by a call on that number, yields
    a call record credited to that visit with its utm tags."""
    settings = trace_settings(migrated_url, asterisk.port, tmp_path, **http_environ())
    async with start_daemon(settings, asyncio.Event()) as running:
        assert running.daemon.http is not None
        visit = await start_visit(running.daemon.http.port)
        assert visit["fallback"] is False
        await asterisk.play(call_on(visit["number"]))
        await running.wait_for_records(1)
    (row,) = await stored_calls(migrated_url)
    assert row.did == visit["number"]
    assert row.session_id == visit["visit_id"]
    assert (row.source, row.medium, row.campaign) == ("yandex", "cpc", "winter-sale")
    assert row.utm_term == "plastic windows"
    assert row.attribution is not None
    assert (row.attribution["method"], row.attribution["confidence"]) == ("session", 1.0)
    assert row.attribution["pool"] == "site"


async def test_after_a_restart_the_visit_keeps_its_number_and_its_calls(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """The pool comes back from the store: the returning page keeps its number, and a
    call on it is still credited to the visit started before the restart."""
    settings = trace_settings(migrated_url, asterisk.port, tmp_path, **http_environ())
    async with start_daemon(settings, asyncio.Event()) as running:
        assert running.daemon.http is not None
        first = await start_visit(running.daemon.http.port)
    async with start_daemon(settings, asyncio.Event()) as running:
        assert running.daemon.http is not None
        port = running.daemon.http.port
        other = await start_visit(port, visitor_id="another-browser-0001")
        again = await start_visit(port)
        assert other["number"] != first["number"]
        assert (again["visit_id"], again["number"]) == (first["visit_id"], first["number"])
        await asterisk.play(call_on(first["number"]))
        await running.wait_for_records(1)
    (row,) = await stored_calls(migrated_url)
    assert row.session_id == first["visit_id"]


async def test_calls_on_pool_numbers_no_visit_holds_keep_the_pools_source(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Calls on pool numbers no visit was given are stored as unattributed with the pool's source,
    and a fixed number's call keeps its configured source."""
    settings = trace_settings(migrated_url, asterisk.port, tmp_path, **http_environ())
    async with start_daemon(settings, asyncio.Event()) as running:
        await asterisk.play(trace_events(TRACES / "11_concurrent.jsonl"))
        await running.wait_for_records(5)
    by_method = {
        row.did: (row.attribution and row.attribution["method"], row.source)
        for row in await stored_calls(migrated_url)
    }
    assert by_method["+74951110012"] == ("unattributed", "pool")
    assert by_method["+74951110015"] == ("unattributed", "pool")
    assert by_method["+74951110001"] == ("static", "yandex-direct")


async def test_pool_status_endpoint_needs_the_token_and_shows_the_pool(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """The pool status and /metrics answer 401 without the right bearer token, and with it show the
    pool's size, numbers in use, recommended size and the daemon's counters."""
    token = "status-token-0123456789"
    environ = http_environ(PBX_TRACKER_HTTP__STATUS_TOKEN=token)
    settings = trace_settings(migrated_url, asterisk.port, tmp_path, **environ)
    async with start_daemon(settings, asyncio.Event()) as running:
        assert running.daemon.http is not None
        port = running.daemon.http.port
        await start_visit(port)
        url = f"http://127.0.0.1:{port}/api/v1/pools/status"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as refused:
                assert refused.status == 401
                assert refused.headers["WWW-Authenticate"] == "Bearer"
            wrong = {"Authorization": "Bearer not-the-token-at-all"}
            async with session.get(url, headers=wrong) as refused:
                assert refused.status == 401
            good = {"Authorization": f"Bearer {token}"}
            async with session.get(url, headers=good) as answer:
                assert answer.status == 200
                (site,) = (await answer.json())["pools"]
            metrics_url = f"http://127.0.0.1:{port}/metrics"
            async with session.get(metrics_url) as refused:
                assert refused.status == 401
            async with session.get(metrics_url, headers=good) as answer:
                assert answer.status == 200
                assert answer.content_type == "text/plain"
                metrics = parse_metrics(await answer.text())
    assert metrics['pbx_tracker_pool_numbers{pool="site"}'] == 10
    assert metrics['pbx_tracker_pool_in_use{pool="site"}'] == 1
    assert metrics['pbx_tracker_pool_exhaustions_total{pool="site"}'] == 0
    assert metrics['pbx_tracker_pool_attribution_warning{pool="site"}'] == 0
    assert metrics["pbx_tracker_http_visits_started_total"] == 1
    assert metrics["pbx_tracker_ami_connected"] == 1
    assert "pbx_tracker_ami_events_total" in metrics
    assert (site["pool"], site["size"], site["in_use"]) == ("site", 10, 1)
    assert site["leases_started"] == 1
    assert site["recommended_size"] == 4


async def test_an_http_port_in_use_stops_the_start_with_exit_code_1(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A daemon whose HTTP port is taken exits with code 1 and logs the port it could not listen
    on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        environ = http_environ(PBX_TRACKER_HTTP__PORT=port)
        settings = trace_settings(migrated_url, asterisk.port, tmp_path, **environ)
        async with open_writer(settings) as writer:
            daemon = Daemon(settings, writer)
            with capture_logs() as logs:
                code = await asyncio.wait_for(daemon.run(asyncio.Event()), 30)
    assert code == 1
    failed = [entry for entry in logs if entry["event"] == "daemon.http_listen_failed"]
    assert failed and failed[0]["port"] == int(port)


async def test_only_the_personal_data_the_config_allows_is_stored(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """By default no client address; with store_analytics_ids false no analytics ids."""
    environ = http_environ(PBX_TRACKER_ATTRIBUTION__STORE_ANALYTICS_IDS="false")
    settings = trace_settings(migrated_url, asterisk.port, tmp_path, **environ)
    ids = {"ga_client_id": "1234567890.1700000000", "ym_client_id": "1700000000123456789"}
    async with start_daemon(settings, asyncio.Event()) as running:
        assert running.daemon.http is not None
        visit = await start_visit(running.daemon.http.port, **ids)
    async with connected(migrated_url) as conn:
        stored = await get_visit(conn, visit["visit_id"])
    assert stored is not None
    assert stored.utm_source == "yandex" and stored.landing_page == VISIT["page"]
    assert (stored.client_ip, stored.ga_client_id, stored.ym_client_id) == (None, None, None)
