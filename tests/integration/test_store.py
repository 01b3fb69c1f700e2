"""Saving and reading call records on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from psycopg import errors as pg_errors
from sqlalchemy import func, select
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    ProgrammingError,
    StatementError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from pbx_tracker.calls.records import (
    CallRecord,
    CallStatus,
    Direction,
    RingAttempt,
    record_from_json,
)
from pbx_tracker.cel.positions import StoredPositions
from pbx_tracker.cel.reading import Position
from pbx_tracker.store.calls import (
    attempts_table,
    calls_table,
    count_calls,
    get_call,
    list_calls,
    list_outbound_calls,
    save_call,
    save_calls,
)
from pbx_tracker.store.engine import (
    DatabaseUnavailableError,
    check_database,
    is_transient_error,
    make_async_engine,
    mask_url,
    normalise_url,
)
from pbx_tracker.store.first_callers import caller_has_earlier_call, mark_first_time_callers
from stored import missed_call

T0 = datetime(2026, 11, 20, 9, 30, 0, 123456, tzinfo=UTC)
T0_MS = T0.replace(microsecond=123000)  # what survives JSON (millisecond precision)


def answered_call(
    linkedid: str = "1732095000.10", start: datetime = T0, **changes: object
) -> CallRecord:
    """A full inbound call: two phones rang, 101 answered and handed it to 102."""
    record = CallRecord(
        linkedid=linkedid,
        node="pbx1",
        direction=Direction.INBOUND,
        did="+74951234567",
        caller="+79161234567",
        caller_name="Иван Петров",
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by="101",
        transferred_to="102",
        started_at=start,
        answered_at=start + timedelta(seconds=7),
        ended_at=start + timedelta(seconds=95),
        ring_seconds=7,
        talk_seconds=88,
        recording_path="/var/spool/asterisk/monitor/in-101-1732095000.10.wav",
        queue="sales",
        source="google",
        medium="cpc",
        campaign="winter",
        first_time_caller=True,
        is_target=True,
        complete=True,
        variables={"TRACK_SOURCE": "google", "note": "ключ"},
        attempts=(
            RingAttempt(
                "101",
                "PJSIP/101-00000001",
                start + timedelta(seconds=1),
                start + timedelta(seconds=95),
                "answer",
            ),
            RingAttempt(
                "102",
                "PJSIP/102-00000002",
                start + timedelta(seconds=1),
                start + timedelta(seconds=7),
                "cancel",
                queue="sales",
            ),
        ),
    )
    return record.replace(**changes)


async def attempt_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(attempts_table))).scalar_one()
        )


class TestSaveAndRead:
    async def test_round_trip_of_a_full_record(self, engine: AsyncEngine) -> None:
        """Every field and attempt comes back equal, times as aware UTC to the microsecond."""
        record = answered_call()
        async with engine.begin() as conn:
            assert await save_call(conn, record) is True
        async with engine.connect() as conn:
            (stored,) = await list_calls(conn)
        assert stored == record
        assert stored.started_at.tzinfo is not None
        assert stored.started_at.utcoffset() == timedelta(0)
        assert stored.attempts[0].rang_at.utcoffset() == timedelta(0)

    async def test_other_time_zones_are_stored_as_utc(self, engine: AsyncEngine) -> None:
        """A time given in +03:00 is the same instant after the round trip, in UTC."""
        moscow = timezone(timedelta(hours=3))
        record = missed_call("tz.1", datetime(2026, 11, 20, 12, 30, tzinfo=moscow), "+7916")
        async with engine.begin() as conn:
            await save_call(conn, record)
        async with engine.connect() as conn:
            (stored,) = await list_calls(conn)
        assert stored.started_at == record.started_at
        assert stored.started_at.tzinfo == UTC
        assert stored.started_at.hour == 9

    async def test_naive_times_are_refused(self, engine: AsyncEngine) -> None:
        """A naive datetime is a bug upstream: refuse it instead of guessing its zone."""
        record = missed_call("naive.1", datetime(2026, 11, 20, 9, 0), "+7916")
        with pytest.raises(StatementError, match="naive datetime"):
            async with engine.begin() as conn:
                await save_call(conn, record)

    async def test_second_save_updates_and_replaces_attempts(self, engine: AsyncEngine) -> None:
        """Saving the same (node, linkedid) again keeps one row and returns False."""
        async with engine.begin() as conn:
            assert await save_call(conn, answered_call()) is True
        later = answered_call(
            talk_seconds=120,
            transferred_to=None,
            attempts=(RingAttempt("103", "PJSIP/103-00000009", T0, None, "answer"),),
        )
        async with engine.begin() as conn:
            assert await save_call(conn, later) is False
        async with engine.connect() as conn:
            assert await count_calls(conn) == 1
            (stored,) = await list_calls(conn)
        assert stored == later
        assert await attempt_rows(engine) == 1

    async def test_same_linkedid_on_another_node_is_another_call(self, engine: AsyncEngine) -> None:
        """Linkedids are unique per Asterisk server only."""
        async with engine.begin() as conn:
            assert await save_call(conn, answered_call(node="pbx1")) is True
            assert await save_call(conn, answered_call(node="pbx2")) is True
            assert await count_calls(conn) == 2

    async def test_works_with_an_orm_session(self, engine: AsyncEngine) -> None:
        """save_call takes an AsyncSession as well as a connection."""
        async with AsyncSession(engine) as session, session.begin():
            assert await save_call(session, answered_call()) is True
        async with AsyncSession(engine) as session:
            assert await count_calls(session) == 1
            assert (await list_calls(session))[0] == answered_call()

    async def test_list_is_ordered_by_start_with_limit_and_offset(
        self, engine: AsyncEngine
    ) -> None:
        """Oldest first, whatever order the records were saved in."""
        starts = [T0 + timedelta(minutes=m) for m in (5, 1, 3, 2, 4)]
        async with engine.begin() as conn:
            for index, start in enumerate(starts):
                await save_call(conn, missed_call(f"order.{index}", start, "+7916"))
        async with engine.connect() as conn:
            every = await list_calls(conn)
            page = await list_calls(conn, limit=2, offset=1)
        assert [r.started_at for r in every] == sorted(starts)
        assert page == every[1:3]

    async def test_deleting_a_call_deletes_its_attempts(self, engine: AsyncEngine) -> None:
        """ring_attempts follow their call (ON DELETE CASCADE, SQLite foreign keys on)."""
        async with engine.begin() as conn:
            await save_call(conn, answered_call())
            await conn.exec_driver_sql("DELETE FROM calls")
        assert await attempt_rows(engine) == 0


def on_a_mobile(
    linkedid: str = "1732095000.20", start: datetime = T0, **changes: object
) -> CallRecord:
    """103's desk phone rang unanswered, then 103 took the call on their mobile through
    the trunk; the caller later waited 14 s for a transfer."""
    mobile = "+79160000103"
    attempts = (
        RingAttempt("103", "PJSIP/103-00000003", start, start + timedelta(seconds=6),
                    "noanswer", via="device"),
        RingAttempt("103", "PJSIP/trunk-00000004", start + timedelta(seconds=6),
                    start + timedelta(seconds=95), "answer", via="number", number=mobile),
    )  # fmt: skip
    record = answered_call(
        linkedid,
        start,
        answered_by="103",
        transferred_to=None,
        answered_via="number",
        answered_number=mobile,
        transfer_wait_seconds=14,
        talk_seconds=74,
        attempts=attempts,
    )
    return record.replace(**changes)


class TestLiveAndRecovered:
    """A call can reach the store twice: heard live and rebuilt from Asterisk's CEL log."""

    async def stored(self, engine: AsyncEngine, *records: CallRecord) -> list[bool | None]:
        results = []
        for record in records:
            async with engine.begin() as conn:
                results.append(await save_call(conn, record))
        return results

    async def test_a_recovered_call_never_replaces_one_heard_live(
        self, engine: AsyncEngine
    ) -> None:
        """CEL read after the live record was stored: the live row stays as it was."""
        live = answered_call(variables={"ROUTE_TO": "PJSIP/101"})
        recovered = answered_call(variables={}, recovered_from="cel")
        assert await self.stored(engine, live, recovered) == [True, None]
        async with engine.connect() as conn:
            assert await list_calls(conn) == [live]

    async def test_a_recovered_call_completes_a_live_record_with_a_gap(
        self, engine: AsyncEngine
    ) -> None:
        """A live record marked incomplete (AMI was away for part of it) gives way to the
        whole call rebuilt from CEL; an incomplete one coming after keeps it."""
        gap = answered_call(complete=False, answered_by=None, talk_seconds=3)
        recovered = answered_call(recovered_from="cel")
        assert await self.stored(engine, gap, recovered, gap) == [True, False, None]
        async with engine.connect() as conn:
            assert await list_calls(conn) == [recovered]

    async def test_a_call_recovered_twice_stays_one_row(self, engine: AsyncEngine) -> None:
        """Reading the same CEL lines again (a crash before the position was saved)."""
        recovered = answered_call(recovered_from="cel")
        assert await self.stored(engine, recovered, recovered) == [True, False]
        async with engine.connect() as conn:
            assert await list_calls(conn) == [recovered]
            assert (await conn.execute(select(func.count()).select_from(calls_table))).scalar() == 1


class TestHowAnswered:
    async def test_a_call_answered_on_a_mobile_reads_back_the_same(
        self, engine: AsyncEngine
    ) -> None:
        """The mobile number, the transfer wait and each leg's way come back as stored."""
        record = on_a_mobile()
        async with engine.begin() as conn:
            await save_call(conn, record)
        async with engine.connect() as conn:
            assert await list_calls(conn) == [record]
            call_id = (await conn.execute(select(calls_table.c.id))).scalar_one()
            assert await get_call(conn, call_id) == record

    async def test_saved_again_the_new_answer_and_legs_replace_the_old(
        self, engine: AsyncEngine
    ) -> None:
        """A call saved again with a phone nobody declared keeps only the new facts."""
        leg = RingAttempt(None, "PJSIP/104-00000009", T0, None, "answer", via="device")
        again = on_a_mobile(
            answered_by=None,
            answered_via="device",
            answered_number="PJSIP/104",
            transfer_wait_seconds=0,
            attempts=(leg,),
        )
        async with engine.begin() as conn:
            await save_call(conn, on_a_mobile())
            await save_calls(conn, [on_a_mobile("1732095000.21"), again])
        async with engine.connect() as conn:
            assert await list_calls(conn) == [again, on_a_mobile("1732095000.21")]
        assert await attempt_rows(engine) == 3

    async def test_a_call_stored_without_them_reads_as_not_known(self, engine: AsyncEngine) -> None:
        """A missed call has no way of answering, no number and no transfer wait."""
        async with engine.begin() as conn:
            await conn.execute(
                calls_table.insert().values(
                    node="pbx1", linkedid="old.1", direction="inbound", status="missed",
                    started_at=T0, ended_at=T0, ring_seconds=20, talk_seconds=0,
                    complete=True, variables={},
                )
            )  # fmt: skip
        async with engine.connect() as conn:
            (stored,) = await list_calls(conn)
        assert (stored.answered_via, stored.answered_number, stored.transfer_wait_seconds) == (
            None,
            None,
            0,
        )

    def test_the_spill_file_keeps_them(self) -> None:
        """A call answered on a mobile, spilled while the database was down, loses nothing."""
        record = on_a_mobile(start=T0_MS)
        assert record_from_json(record.to_json()) == record


class TestOutbound:
    async def test_outbound_calls_go_to_their_own_table(self, engine: AsyncEngine) -> None:
        """A manager's callback is not an inbound call; it is read back from outbound_calls."""
        callback = answered_call(
            linkedid="1732095999.77",
            direction=Direction.OUTBOUND,
            caller="+79161234567",
            caller_name=None,
            answered_by="101",
            transferred_to=None,
            queue=None,
            source=None,
            medium=None,
            campaign=None,
            first_time_caller=None,
            is_target=None,
            attempts=(),
        )
        async with engine.begin() as conn:
            assert await save_call(conn, callback) is True
            assert await save_call(conn, callback) is False
        async with engine.connect() as conn:
            assert await count_calls(conn) == 0
            assert await list_calls(conn) == []
            assert await list_outbound_calls(conn) == [callback]
            row = (await conn.exec_driver_sql("SELECT manager, customer FROM outbound_calls")).one()
        assert tuple(row) == ("101", "+79161234567")


class TestFirstTimeCaller:
    async def test_earlier_call_from_the_same_caller(self, engine: AsyncEngine) -> None:
        """Only an earlier call of the same number, other than the call itself, counts."""
        first = missed_call("ft.1", T0, "+79160000001")
        async with engine.begin() as conn:
            await save_call(conn, first)
            await save_call(conn, missed_call("ft.other", T0, "+79160000002"))
        later = T0 + timedelta(days=3)
        async with engine.connect() as conn:
            assert await caller_has_earlier_call(conn, "+79160000001", later, ("pbx1", "ft.2"))
            assert not await caller_has_earlier_call(conn, "+79160000001", T0, ("pbx1", "ft.2"))
            assert not await caller_has_earlier_call(conn, "+79160000001", later, ("pbx1", "ft.1"))
            assert not await caller_has_earlier_call(conn, "+79990000000", later, ("pbx1", "x"))

    async def test_window_in_days(self, engine: AsyncEngine) -> None:
        """With a window, a call older than `since` does not make the caller a returning one."""
        async with engine.begin() as conn:
            await save_call(conn, missed_call("w.1", T0, "+79160000001"))
        later = T0 + timedelta(days=40)
        async with engine.connect() as conn:
            exclude = ("pbx1", "w.2")
            since = later - timedelta(days=30)
            assert not await caller_has_earlier_call(
                conn, "+79160000001", later, exclude, since=since
            )
            assert await caller_has_earlier_call(conn, "+79160000001", later, exclude)


class TestJson:
    def test_record_from_json_inverts_to_json(self) -> None:
        """The spill file format: to_json() and back (times at millisecond precision)."""
        record = answered_call(start=T0_MS)
        again = record_from_json(record.to_json())
        assert again == record

    def test_record_from_json_accepts_missing_optional_fields(self) -> None:
        """A spilled call missing its queue, source, attempts, variables or completeness still reads
        back the same."""
        data = missed_call("j.1", T0_MS, None).to_json()
        for optional in ("queue", "source", "attempts", "variables", "complete"):
            data.pop(optional)
        assert record_from_json(data) == missed_call("j.1", T0_MS, None)


class TestUrls:
    @pytest.mark.parametrize(
        ("url", "use_async", "driver"),
        [
            ("sqlite:///x.sqlite3", True, "sqlite+aiosqlite"),
            ("sqlite:///x.sqlite3", False, "sqlite"),
            ("sqlite+aiosqlite:///x.sqlite3", False, "sqlite"),
            ("postgresql://u@h/db", True, "postgresql+psycopg"),
            ("postgres://u@h/db", True, "postgresql+psycopg"),
            ("postgresql+psycopg://u@h/db", False, "postgresql+psycopg"),
            ("postgresql+asyncpg://u@h/db", True, "postgresql+asyncpg"),
            ("postgresql+asyncpg://u@h/db", False, "postgresql+psycopg"),
        ],
    )
    def test_plain_urls_get_our_drivers(self, url: str, use_async: bool, driver: str) -> None:
        """A plain sqlite:// or postgresql:// database URL in the config works, given the driver the
        daemon uses."""
        assert normalise_url(url, use_async=use_async).drivername == driver

    def test_other_databases_are_refused_by_name(self) -> None:
        """A MySQL URL is refused with a message naming the unsupported scheme."""
        with pytest.raises(ValueError, match="unsupported database URL scheme 'mysql'"):
            normalise_url("mysql://root:secret@h/db", use_async=True)


class TestEngine:
    async def test_sqlite_folder_is_created_and_pragmas_set(self, tmp_path: Path) -> None:
        """A missing folder is made; every connection has WAL, a busy timeout and FKs on."""
        path = tmp_path / "new" / "folder" / "db.sqlite3"
        engine = make_async_engine(f"sqlite:///{path}")
        try:
            await check_database(engine)
            async with engine.connect() as conn:
                pragmas = [
                    (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                    for name in ("journal_mode", "busy_timeout", "foreign_keys")
                ]
        finally:
            await engine.dispose()
        assert path.parent.is_dir()
        assert pragmas == ["wal", 5000, 1]

    async def test_unreachable_database_gives_a_clear_error(self, tmp_path: Path) -> None:
        """The error names the database (password masked) and the driver's reason."""
        engine = make_async_engine("postgresql://pbx:s3cret-pw@127.0.0.1:1/pbx?connect_timeout=2")
        try:
            with pytest.raises(DatabaseUnavailableError) as caught:
                await check_database(engine)
        finally:
            await engine.dispose()
        message = str(caught.value)
        assert "pbx:***@127.0.0.1:1/pbx" in message
        assert "is not reachable: OperationalError" in message
        assert "s3cret-pw" not in message

    @pytest.mark.parametrize(
        ("error", "transient"),
        [
            (OperationalError("INSERT", {}, Exception("database is locked")), True),
            (InterfaceError("SELECT 1", {}, Exception("connection closed")), True),
            (ConnectionRefusedError(), True),
            (InternalError("INSERT", {}, pg_errors.ReadOnlySqlTransaction("standby")), True),
            (ProgrammingError("INSERT", {}, pg_errors.UndefinedTable("no calls")), True),
            (DataError("INSERT", {}, pg_errors.StringDataRightTruncation("too long")), False),
            (IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")), False),
            (StatementError("naive datetime", "INSERT", {}, ValueError("naive")), False),
            (ValueError("a bug"), False),
        ],
    )
    def test_transient_errors_are_told_from_bad_records(
        self, error: Exception, transient: bool
    ) -> None:
        """Outages are retried; a record the database refuses is not."""
        assert is_transient_error(error) is transient

    def test_mask_url_hides_passwords_in_user_info_and_query(self) -> None:
        """A database URL shown to the sysadmin hides the password in the user part and in the
        query, and keeps the other options."""
        url = "postgresql://pbx:pw1@db/pbx?password=pw2&sslmode=require"
        masked = mask_url(url)
        assert "pw1" not in masked
        assert "pw2" not in masked
        assert "sslmode=require" in masked


class TestBatches:
    """Many records in one transaction store exactly what saving them one by one stores."""

    @staticmethod
    def batch(seed: int) -> list[CallRecord]:
        rng = random.Random(seed)
        records = []
        callers = ["+79160000001", "+79160000002", None]
        for _ in range(rng.randint(1, 12)):
            call = rng.randint(0, 8)  # saved again now and then, as after a reconnect
            started = T0 + timedelta(minutes=(call * 7) % 30)
            record = missed_call(f"b.{call}", started, callers[call % 3])
            if rng.random() < 0.3:
                record = record.replace(
                    attempts=(RingAttempt("101", "PJSIP/101-1", started, None, "noanswer"),)
                )
            records.append(record)
        return records

    async def stored_state(self, engine: AsyncEngine) -> tuple[list[CallRecord], int]:
        async with engine.connect() as conn:
            return await list_calls(conn), await attempt_rows(engine)

    async def save_one_by_one(self, conn: AsyncConnection, records: list[CallRecord]) -> list:
        result = []
        for record in records:
            earlier = await caller_has_earlier_call(
                conn, record.caller or "", record.started_at, (record.node, record.linkedid)
            )
            if record.caller is not None:
                record = record.replace(first_time_caller=not earlier)
            result.append((record.first_time_caller, await save_call(conn, record)))
        return result

    @pytest.mark.parametrize("seed", range(12))
    async def test_batch_matches_one_by_one(self, engine: AsyncEngine, seed: int) -> None:
        """Storing many calls at once gives the same rows and first-time callers as storing them one
        by one."""
        earlier = self.batch(seed + 100)
        records = self.batch(seed)
        async with engine.begin() as conn:
            await save_calls(conn, await mark_first_time_callers(conn, earlier))
        conn_cm = engine.connect()
        async with conn_cm as conn:
            transaction = await conn.begin()
            expected = await self.save_one_by_one(conn, records)
            expected_rows = await list_calls(conn)
            await transaction.rollback()
        async with engine.begin() as conn:
            marked = await mark_first_time_callers(conn, records)
            news = await save_calls(conn, marked)
        assert list(zip([r.first_time_caller for r in marked], news, strict=True)) == expected
        rows, _ = await self.stored_state(engine)
        assert [(r.linkedid, r.first_time_caller, r.attempts) for r in rows] == [
            (r.linkedid, r.first_time_caller, r.attempts) for r in expected_rows
        ]


async def previous_calls(engine: AsyncEngine) -> dict[str, datetime | None]:
    """linkedid -> previous_call_at of every stored inbound call."""
    c = calls_table.c
    async with engine.connect() as conn:
        rows = (await conn.execute(select(c.linkedid, c.previous_call_at))).all()
    return {row.linkedid: row.previous_call_at for row in rows}


def expected_previous(calls: list[tuple[str, datetime, str | None]]) -> dict[str, datetime | None]:
    """previous_call_at worked out by hand: the same caller's previous call by start."""
    found: dict[str, datetime | None] = {}
    for linkedid, start, caller in calls:
        earlier = [s for _, s, c in calls if caller is not None and c == caller and s < start]
        found[linkedid] = max(earlier) if earlier else None
    return found


class TestPreviousCall:
    """calls.previous_call_at (migration 0006's triggers) after any order of writes."""

    async def test_in_order_out_of_order_and_resaved(self, engine: AsyncEngine) -> None:
        """Each stored call points at the same caller's call before it, whether calls arrive in
        order, out of order or are saved again."""
        hour = timedelta(hours=1)
        calls = [
            ("p.3", T0 + 3 * hour, "+79160000001"),
            ("p.1", T0 + hour, "+79160000001"),  # before a stored call: p.3 now follows it
            ("p.other", T0 + 2 * hour, "+79160000002"),
            ("p.hidden", T0 + 2 * hour, None),
            ("p.2", T0 + 2 * hour, "+79160000001"),  # between p.1 and p.3
            ("p.0", T0, "+79160000001"),  # before all of them
        ]
        records = [missed_call(linkedid, start, caller) for linkedid, start, caller in calls]
        async with engine.begin() as conn:
            await save_calls(conn, records[:3])
        async with engine.begin() as conn:
            await save_call(conn, records[3])
            await save_calls(conn, records[4:])
            await save_calls(conn, [records[0], records[1]])  # saved again: no change
        assert await previous_calls(engine) == expected_previous(calls)

    async def test_one_batch_in_any_order(self, engine: AsyncEngine) -> None:
        """Thirty calls of three callers stored at once in random order each point at their caller's
        previous call."""
        minutes = random.Random(6).sample(range(600), 30)  # distinct starts, any order
        calls = [
            (f"b.{i}", T0 + timedelta(minutes=m), f"+7916000000{i % 3}")
            for i, m in enumerate(minutes)
        ]
        records = [missed_call(linkedid, start, caller) for linkedid, start, caller in calls]
        async with engine.begin() as conn:
            await save_calls(conn, records)
        assert await previous_calls(engine) == expected_previous(calls)

    async def test_a_deleted_or_moved_call_hands_over_its_follower(
        self, engine: AsyncEngine
    ) -> None:
        """When a call is deleted or its time changes, the caller's next call points at the call
        that now comes before it."""
        hour = timedelta(hours=1)
        calls = [(f"d.{i}", T0 + i * hour, "+79160000001") for i in range(4)]
        async with engine.begin() as conn:
            await save_calls(conn, [missed_call(*call) for call in calls])
        c = calls_table.c
        async with engine.begin() as conn:
            await conn.execute(calls_table.delete().where(c.linkedid == "d.1"))
            moved = T0 + 10 * hour
            await conn.execute(
                calls_table.update().where(c.linkedid == "d.2").values(started_at=moved)
            )
        left = [calls[0], ("d.2", T0 + 10 * hour, "+79160000001"), calls[3]]
        assert await previous_calls(engine) == expected_previous(left)


async def test_the_answer_speed_is_stored_with_the_call(engine: AsyncEngine) -> None:
    """101's phone rang from second 1 and they answered at second 7: 6 s; a missed call,
    or one whose answering leg is not among the attempts, has none."""
    unknown_leg = answered_call("1732095000.12", answered_by="105")
    async with engine.begin() as conn:
        missed = missed_call("1732095000.11", T0, "+79161234567")
        for record in (answered_call(), missed, unknown_leg):
            await save_call(conn, record)
    async with engine.connect() as conn:
        rows = await conn.execute(select(calls_table.c.linkedid, calls_table.c.answer_seconds))
        found = dict(rows.all())
    assert found["1732095000.10"] == pytest.approx(6.0)
    assert found["1732095000.11"] is None
    assert found["1732095000.12"] is None


async def test_the_cel_read_position_is_kept_per_node_and_log(engine: AsyncEngine) -> None:
    """Where each node's CEL reading stands survives a restart and moves on when saved."""
    first = StoredPositions(engine, "pbx1", "/var/log/asterisk/cel-custom/Master.csv")
    other = StoredPositions(engine, "pbx2", "/var/log/asterisk/cel-custom/Master.csv")
    assert await first.load() is None
    await first.save(Position("2049:1234", 4096, "abc"))
    await first.save(Position("2049:1234", 8192, "abc"))
    await other.save(Position("2049:99", 10, "def"))
    again = StoredPositions(engine, "pbx1", "/var/log/asterisk/cel-custom/Master.csv")
    assert await again.load() == Position("2049:1234", 8192, "abc")
    assert await other.load() == Position("2049:99", 10, "def")
