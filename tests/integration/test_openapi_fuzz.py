"""schemathesis against the visits API's own OpenAPI description, on a real server with
the database-backed pool (SQLite and PostgreSQL).

Every generated request, valid or not, must get an answer the description
promises: no 5xx, the documented status codes, answers that match their schemas,
invalid input refused and valid input accepted.  The server runs in a thread with
its own event loop because schemathesis sends its requests synchronously.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from pbx_tracker.attribution.stored_pool import StoredVisitPool
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.web.api import openapi_document
from pbx_tracker.web.app import HttpServer
from pbx_tracker.web.settings import HttpSettings, RateLimitSettings

# invalid input may be refused as too large (413) or not JSON (415) before it is parsed
REFUSALS = ["400", "401", "403", "404", "405", "413", "415", "429"]
CHECKS = {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
schema = schemathesis.openapi.from_dict(
    openapi_document(), config=schemathesis.Config.from_dict(CHECKS)
)

START_TIMEOUT = 30.0
NUMBERS = [f"+7495222{n:04d}" for n in range(500)]


class ServerThread:
    """The API with a `StoredVisitPool` on ``url``, served from a thread of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="api-under-fuzz")

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            raise TimeoutError("the API did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            server, engine = self._loop.run_until_complete(self._start())
        except BaseException as error:  # shown by __enter__
            self._error = error
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(server.stop())
        self._loop.run_until_complete(engine.dispose())
        self._loop.close()

    async def _start(self) -> tuple[HttpServer, object]:
        engine = make_async_engine(self.url)
        pool = StoredVisitPool(
            engine,
            name="default",
            numbers=NUMBERS,
            fallback="+74952220000",
            max_visits_per_client=100_000,
        )
        limits = RateLimitSettings(per_minute=1e9, burst=1_000_000)
        server = HttpServer(HttpSettings(port=0, rate_limit=limits), pool)
        await server.start()
        self.port = server.port
        return server, engine


@pytest.fixture(name="api_url")
def _api_url(migrated_url: str) -> Iterator[str]:
    with ServerThread(migrated_url) as server:
        yield f"http://127.0.0.1:{server.port}"


@schema.parametrize()
@settings(
    max_examples=150,
    derandomize=True,  # the same inputs on every run: CI is not where new cases are hunted
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_answer_is_one_the_description_promises(
    case: schemathesis.Case, api_url: str
) -> None:
    """Whatever a developer sends to the visits API, valid or not, gets an answer its OpenAPI
    description promises: never a 5xx, a documented status and a body matching its schema."""
    case.call_and_validate(base_url=api_url)
