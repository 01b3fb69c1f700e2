"""CallWriter against real databases: order, first-time callers, outages, spill file."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from waiting import polled

from pbx_tracker.calls.records import CallRecord, CallStatus, Direction, RingAttempt
from pbx_tracker.store.calls import list_calls, list_outbound_calls
from pbx_tracker.store.engine import make_async_engine, mask_url, normalise_url
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.store.writer import CallWriter
from stored import connected, missed_call, stored_calls

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
OUTAGE_WARNING = "store.database_unavailable"
FAST_RETRY = {"retry_initial": 0.02, "retry_max": 0.2}


class PostgresServerLike(Protocol):
    """What these tests use of conftest.PostgresServer."""

    def database_url(self, name: str) -> str: ...
    def create(self, name: str) -> str: ...
    def rename(self, old: str, new: str) -> None: ...
    def drop(self, name: str) -> None: ...
    def terminate_connections(self, name: str) -> int: ...


def call(index: int, caller: str | None = "+79160000000", **changes: Any) -> CallRecord:
    """The index-th missed call of the day (one minute apart, millisecond times)."""
    started = T0 + timedelta(minutes=index)
    return missed_call(f"1732093200.{index}", started, caller).replace(**changes)


def on_a_mobile(index: int) -> CallRecord:
    """The index-th call of the day, answered by 103 on their mobile after their desk
    phone rang 5 s; 9 s of it the caller waited for a transfer."""
    mobile = "+79160000103"
    record = call(index, caller=f"+7916100{index:04d}")
    start = record.started_at
    legs = (
        RingAttempt("103", "PJSIP/103-1", start, start + timedelta(seconds=5), "noanswer",
                    via="device"),
        RingAttempt("103", "PJSIP/trunk-2", start + timedelta(seconds=5),
                    start + timedelta(seconds=60), "answer", via="number", number=mobile),
    )  # fmt: skip
    return record.replace(
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by="103",
        answered_at=start + timedelta(seconds=8),
        ended_at=start + timedelta(seconds=60),
        ring_seconds=8,
        talk_seconds=43,
        answered_via="number",
        answered_number=mobile,
        transfer_wait_seconds=9,
        attempts=legs,
    )


def spilled_lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


@dataclass
class Written:
    """on_written collector: linkedids in writing order and whether each was new."""

    records: list[CallRecord] = field(default_factory=list)
    new: list[bool] = field(default_factory=list)

    def __call__(self, record: CallRecord, new: bool) -> None:
        self.records.append(record)
        self.new.append(new)

    @property
    def linkedids(self) -> list[str]:
        return [record.linkedid for record in self.records]


@dataclass
class BrokenDatabase:
    """A database URL that cannot be used until `repair()` makes it a migrated database."""

    url: str
    repair_now: Callable[[], None]

    async def repair(self) -> None:
        await asyncio.to_thread(self.repair_now)


def _broken_sqlite(tmp_path: Path) -> BrokenDatabase:
    path = tmp_path / "db" / "pbx.sqlite3"
    path.mkdir(parents=True)  # a folder where the file should be: "unable to open"

    def repair() -> None:
        staging = tmp_path / "staging.sqlite3"
        upgrade_to_head(f"sqlite:///{staging}")
        path.rmdir()
        os.replace(staging, path)

    return BrokenDatabase(f"sqlite:///{path}", repair)


def _broken_postgres(server: PostgresServerLike, name: str) -> BrokenDatabase:
    # the database does not exist yet; the password must never show in the logs
    url = make_url(server.database_url(name))
    if url.password is None:
        url = url.set(password="s3cret-pw")

    def repair() -> None:  # create + migrate under another name, then appear at once
        upgrade_to_head(server.create(f"{name}_staging"))
        server.rename(f"{name}_staging", name)

    return BrokenDatabase(url.render_as_string(hide_password=False), repair)


@pytest.fixture(
    name="broken_database",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def _broken_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokenDatabase]:
    if request.param == "sqlite":
        yield _broken_sqlite(tmp_path)
        return
    server = request.getfixturevalue("postgres_server")
    name = f"pbx_tracker_test_down_{os.urandom(6).hex()}"
    try:
        yield _broken_postgres(server, name)
    finally:
        server.drop(name)
        server.drop(f"{name}_staging")


@pytest.fixture(name="make_writer")
async def _make_writer(tmp_path: Path) -> AsyncIterator[Callable[..., CallWriter]]:
    """Builds started-later CallWriters on their own engines; stops and disposes them."""
    made: list[tuple[CallWriter, AsyncEngine]] = []

    def make(url: str, **options: Any) -> CallWriter:
        engine = make_async_engine(url)
        options.setdefault("spill_path", tmp_path / "spill" / "pending-calls.jsonl")
        writer = CallWriter(engine, **{**FAST_RETRY, **options})
        made.append((writer, engine))
        return writer

    yield make
    for writer, engine in made:
        await writer.stop()
        await engine.dispose()


class TestWriting:
    async def test_records_are_written_in_order_each_once(
        self, migrated_url: str, make_writer: Callable[..., CallWriter]
    ) -> None:
        """Fifty calls submitted to the writer are stored once each, in the order they finished, and
        each is reported as new."""
        written = Written()
        writer = make_writer(migrated_url, on_written=written)
        await writer.start()
        records = [call(i, caller=f"+7916000{i:04d}") for i in range(50)]
        for record in records:
            writer.submit(record)
        assert await writer.drain(timeout=30) == 0
        assert written.linkedids == [r.linkedid for r in records]
        assert written.new == [True] * 50
        assert [r.linkedid for r in await stored_calls(migrated_url)] == written.linkedids

    async def test_first_time_caller_is_filled_before_writing(
        self, migrated_url: str, make_writer: Callable[..., CallWriter]
    ) -> None:
        """First call of a number: True; its next call: False; unknown caller: None."""
        written = Written()
        writer = make_writer(migrated_url, on_written=written)
        await writer.start()
        for record in (
            call(1, caller="+79161111111"),
            call(2, caller="+79161111111"),
            call(3, caller=None),
            call(4, caller="+79162222222", first_time_caller=False),
            call(1, caller="+79161111111"),  # the first call again: still a first-time caller
        ):
            writer.submit(record)
        assert await writer.drain(timeout=30) == 0
        assert [r.first_time_caller for r in written.records] == [True, False, None, False, True]
        assert written.new == [True, True, True, True, False]
        by_id = {r.linkedid: r.first_time_caller for r in await stored_calls(migrated_url)}
        assert list(by_id.values()) == [True, False, None, False]

    async def test_outbound_calls_are_written_to_their_table(
        self, migrated_url: str, make_writer: Callable[..., CallWriter]
    ) -> None:
        """A manager's callback is stored among outbound calls, not among inbound calls."""
        writer = make_writer(migrated_url)
        await writer.start()
        callback = call(9, direction=Direction.OUTBOUND, answered_by="101")
        writer.submit(callback)
        assert await writer.drain(timeout=30) == 0
        async with connected(migrated_url) as conn:
            assert await list_outbound_calls(conn) == [callback]
            assert await list_calls(conn) == []

    async def test_how_a_call_was_answered_is_written_from_the_queue_and_the_spill_file(
        self, migrated_url: str, make_writer: Callable[..., CallWriter], tmp_path: Path
    ) -> None:
        """Calls taken on a manager's mobile keep the number, the transfer wait and each
        leg's way, whether they were spilled, queued together or written one by one."""
        spill = tmp_path / "pending.jsonl"
        spilled = on_a_mobile(0)
        spill.write_text(json.dumps(spilled.to_json()) + "\n")
        writer = make_writer(migrated_url, spill_path=spill)
        queued = [on_a_mobile(i) for i in range(1, 4)]
        for record in queued:  # waiting together: written in one batch
            writer.submit(record)
        await writer.start()
        assert await writer.drain(timeout=30) == 0
        alone = on_a_mobile(4)
        writer.submit(alone)
        assert await writer.drain(timeout=30) == 0
        stored = [r.replace(first_time_caller=None) for r in await stored_calls(migrated_url)]
        assert stored == [spilled, *queued, alone]

    async def test_a_refused_record_is_set_aside_and_the_rest_written(
        self, migrated_url: str, make_writer: Callable[..., CallWriter], tmp_path: Path
    ) -> None:
        """A record the database refuses does not block the queue; it is kept on disk."""
        written = Written()
        spill = tmp_path / "spill.jsonl"
        writer = make_writer(migrated_url, on_written=written, spill_path=spill)
        await writer.start()
        naive = call(2).replace(started_at=datetime(2026, 11, 20, 9, 2))  # no time zone
        with structlog.testing.capture_logs() as logs:
            for record in (call(1), naive, call(3)):
                writer.submit(record)
            assert await writer.drain(timeout=30) == 0
        assert written.linkedids == [call(1).linkedid, call(3).linkedid]
        rejected = spill.with_name("spill.jsonl.rejected").read_text().splitlines()
        assert [json.loads(line)["linkedid"] for line in rejected] == [naive.linkedid]
        assert any(e["log_level"] == "error" and e["linkedid"] == naive.linkedid for e in logs)

    async def test_a_failing_callback_does_not_stop_the_writer(
        self, migrated_url: str, make_writer: Callable[..., CallWriter]
    ) -> None:
        """A listener that fails on every stored call is logged each time, and the calls are still
        stored."""

        def explode(record: CallRecord, new: bool) -> None:
            raise RuntimeError("demo printer broke")

        writer = make_writer(migrated_url, on_written=explode)
        await writer.start()
        with structlog.testing.capture_logs() as logs:
            writer.submit(call(1))
            writer.submit(call(2))
            assert await writer.drain(timeout=30) == 0
        assert len(await stored_calls(migrated_url)) == 2
        assert sum(e["event"] == "store.on_written_failed" for e in logs) == 2


class TestOutage:
    async def test_nothing_lost_or_duplicated_and_spill_file_used(
        self,
        broken_database: BrokenDatabase,
        make_writer: Callable[..., CallWriter],
        tmp_path: Path,
    ) -> None:
        """Database down, tiny queue: records spill to disk, then all land in order."""
        written = Written()
        spill = tmp_path / "spill.jsonl"
        writer = make_writer(
            broken_database.url, on_written=written, queue_size=2, spill_path=spill
        )
        records = [call(i, caller=f"+7916000{i:04d}") for i in range(10)]
        await writer.start()
        with structlog.testing.capture_logs() as logs:
            for record in records[:7]:
                writer.submit(record)
            await polled(lambda: spilled_lines(spill) >= 5, "records spilled to disk")
            for record in records[7:]:
                writer.submit(record)
            await polled(lambda: spilled_lines(spill) >= 8, "the second spill")
            assert writer.pending == 10
            assert written.records == []
            await broken_database.repair()
            assert await writer.drain(timeout=30) == 0
        assert written.linkedids == [r.linkedid for r in records]
        assert written.new == [True] * 10
        assert [r.linkedid for r in await stored_calls(broken_database.url)] == written.linkedids
        assert spilled_lines(spill) == 0
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [e["event"] for e in warnings] == [OUTAGE_WARNING]
        assert warnings[0]["url"] == mask_url(normalise_url(broken_database.url, use_async=True))
        assert "s3cret-pw" not in repr(logs)
        assert any(e["event"] == "store.database_available" for e in logs)

    async def test_stop_during_outage_keeps_records_for_the_next_start(
        self,
        broken_database: BrokenDatabase,
        make_writer: Callable[..., CallWriter],
        tmp_path: Path,
    ) -> None:
        """A daemon stopped while the database is down leaves its records, in order, on disk.

        At stop the writer has one record in hand (taken from the queue), three
        already spilled after it and two still queued: the file must list them
        in that order for the next start.
        """
        spill = tmp_path / "spill.jsonl"
        first = make_writer(broken_database.url, spill_path=spill, queue_size=2)
        records = [call(i) for i in range(7)]
        await first.start()
        with structlog.testing.capture_logs() as logs:
            first.submit(records[0])
            await polled(lambda: any(e["event"] == OUTAGE_WARNING for e in logs), "outage")
            for record in records[1:4]:
                first.submit(record)
            await polled(lambda: spilled_lines(spill) == 3, "the spill")
            for record in records[4:6]:
                first.submit(record)
        assert await first.drain(timeout=0.05) == 6
        await first.stop()
        first.submit(records[6])  # after stop: straight to the spill file, never raises
        assert spilled_lines(spill) == 7
        assert first.pending == 7

        await broken_database.repair()
        written = Written()
        second = make_writer(broken_database.url, on_written=written, spill_path=spill)
        await second.start()
        assert second.pending == 7
        assert await second.drain(timeout=30) == 0
        assert written.linkedids == [r.linkedid for r in records]
        assert spilled_lines(spill) == 0

    async def test_unwritable_spill_file_keeps_records_in_memory(
        self,
        broken_database: BrokenDatabase,
        make_writer: Callable[..., CallWriter],
        tmp_path: Path,
    ) -> None:
        """When even the spill file fails (disk full), records stay queued, none lost."""
        (tmp_path / "not-a-folder").write_text("")
        spill = tmp_path / "not-a-folder" / "spill.jsonl"
        written = Written()
        writer = make_writer(
            broken_database.url, on_written=written, queue_size=2, spill_path=spill
        )
        records = [call(i) for i in range(6)]
        await writer.start()
        with structlog.testing.capture_logs() as logs:
            for record in records:
                writer.submit(record)
            await polled(
                lambda: any(e["event"] == "store.spill_write_failed" for e in logs),
                "the spill failure",
            )
            assert writer.pending == 6
            await broken_database.repair()
            assert await writer.drain(timeout=30) == 0
        assert written.linkedids == [r.linkedid for r in records]


class TestSpillFileAtStart:
    async def test_left_over_spill_file_is_written_first(
        self, migrated_url: str, make_writer: Callable[..., CallWriter], tmp_path: Path
    ) -> None:
        """Records an earlier run spilled come before new ones; the file is emptied."""
        spill = tmp_path / "pending.jsonl"
        old = [call(i) for i in range(3)]
        lines = [json.dumps(r.to_json()) for r in old]
        spill.write_text("\n".join(lines) + "\n")
        written = Written()
        writer = make_writer(migrated_url, on_written=written, spill_path=spill)
        new = [call(i) for i in range(3, 5)]
        for record in new:
            writer.submit(record)
        await writer.start()
        assert await writer.drain(timeout=30) == 0
        assert written.linkedids == [r.linkedid for r in old + new]
        assert spill.read_bytes() == b""

    async def test_torn_and_unreadable_lines_are_set_aside(
        self, migrated_url: str, make_writer: Callable[..., CallWriter], tmp_path: Path
    ) -> None:
        """A line cut by a crash, or garbage, goes to .rejected; good records are written."""
        spill = tmp_path / "pending.jsonl"
        good = [json.dumps(call(i).to_json()) for i in range(2)]
        spill.write_text(f"{good[0]}\nnot json\n{good[1]}\n{good[1][:40]}")
        written = Written()
        writer = make_writer(migrated_url, on_written=written, spill_path=spill)
        await writer.start()
        assert writer.pending == 4
        assert await writer.drain(timeout=30) == 0
        assert written.linkedids == [call(0).linkedid, call(1).linkedid]
        rejected = spill.with_name("pending.jsonl.rejected").read_text().splitlines()
        assert rejected == ["not json", good[1][:40]]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgres_restart_loses_nothing(
    database_url: str,
    migrated_url: str,
    make_writer: Callable[..., CallWriter],
    postgres_server: PostgresServerLike,
) -> None:
    """Every server-side session is killed between two batches; the writer carries on."""
    written = Written()
    writer = make_writer(migrated_url, on_written=written)
    await writer.start()
    records = [call(i) for i in range(10)]
    for record in records[:5]:
        writer.submit(record)
    assert await writer.drain(timeout=30) == 0
    name = make_url(migrated_url).database
    assert name is not None
    assert await asyncio.to_thread(postgres_server.terminate_connections, name) >= 1
    for record in records[5:]:
        writer.submit(record)
    assert await writer.drain(timeout=30) == 0
    assert written.linkedids == [r.linkedid for r in records]
