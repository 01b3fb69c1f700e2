"""Sessions of the pages and the brake on password guessing, kept in the database (SQLite
and PostgreSQL): shared by every daemon on it, kept over a restart, bounded, and cheap
per page.  Two stores on one database stand for two daemons; time is a clock the tests
move."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from browsing import web_user
from clocks import SecondsClock
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.store.models import WebSessionRow
from pbx_tracker.web import users
from pbx_tracker.web.sessions import LoginThrottle, SessionStore, session_key

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements the engine runs meanwhile (their first word: SELECT, UPDATE…)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]).split()[0].upper())

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


class TestSessions:
    async def test_a_session_lives_while_used_and_ends_when_idle(self, engine: AsyncEngine) -> None:
        """A session used within the idle time stays; one left idle longer is over and gone."""
        clock = SecondsClock(NOW.timestamp())
        store = SessionStore(engine, 60.0, clock=clock)
        session = await store.create("anna", "stamp-1")
        for _ in range(3):
            clock.advance(59)
            found = await store.get(session.id)  # used: the idle time starts again
            assert found is not None and (found.user, found.stamp) == ("anna", "stamp-1")
            assert found.csrf == session.csrf
        clock.advance(61)
        assert await store.get(session.id) is None
        assert await store.count() == 0

    async def test_another_daemon_and_a_restart_know_the_session(self, engine: AsyncEngine) -> None:
        """A session made by one daemon is valid on another on the same database, and on a
        store made afresh (a restart); ending it on one ends it everywhere."""
        clock = SecondsClock(NOW.timestamp())
        first = SessionStore(engine, 600.0, clock=clock)
        session = await first.create("anna")
        second = SessionStore(engine, 600.0, clock=clock)
        found = await second.get(session.id)
        assert found is not None and found.user == "anna" and found.csrf == session.csrf
        await second.drop(session.id)
        assert await first.get(session.id) is None

    async def test_the_database_keeps_only_a_hash_of_the_cookie(self, engine: AsyncEngine) -> None:
        """What a reader of the database sees is no cookie that signs anyone in."""
        store = SessionStore(engine, 600.0, clock=SecondsClock(NOW.timestamp()))
        session = await store.create("anna")
        async with engine.connect() as conn:
            [row] = (await conn.execute(select(WebSessionRow.__table__))).all()
        assert session.id not in repr(tuple(row))
        assert row.id_hash == session_key(session.id)
        assert await store.get(row.id_hash) is None

    async def test_ids_and_csrf_tokens_are_random_and_distinct(self, engine: AsyncEngine) -> None:
        """Each sign-in gets a new unguessable id and its own CSRF token."""
        store = SessionStore(engine, 60.0, clock=SecondsClock(NOW.timestamp()))
        first, second = await store.create("anna"), await store.create("anna")
        assert first.id != second.id and first.csrf != second.csrf
        assert len(first.id) >= 40 and first.id != first.csrf

    async def test_unknown_ids_and_dropped_sessions_give_nothing(self, engine: AsyncEngine) -> None:
        """No cookie, a forged or overlong one, or a signed-out session: nobody."""
        store = SessionStore(engine, 60.0, clock=SecondsClock(NOW.timestamp()))
        session = await store.create("anna")
        for forged in (None, "", "forged", "x" * 10_000):
            assert await store.get(forged) is None
        await store.drop(session.id)
        assert await store.get(session.id) is None

    async def test_the_store_is_bounded(self, engine: AsyncEngine) -> None:
        """Past the cap a sign-in ends the least recently used session; sessions that are
        over are deleted at the next sign-in."""
        clock = SecondsClock(NOW.timestamp())
        store = SessionStore(engine, 600.0, clock=clock, max_sessions=3)
        oldest = await store.create("a")
        for name in "bcd":
            clock.advance(1)
            await store.create(name)
        assert await store.count() == 3
        assert await store.get(oldest.id) is None
        clock.advance(601)
        await store.create("e")
        assert await store.count() == 1

    async def test_a_flash_message_is_shown_once_by_any_daemon(self, engine: AsyncEngine) -> None:
        """A message left after a form is shown on the next page, whichever daemon serves it,
        and then never again."""
        first = SessionStore(engine, 600.0, clock=SecondsClock(NOW.timestamp()))
        second = SessionStore(engine, 600.0, clock=SecondsClock(NOW.timestamp()))
        session = await first.create("anna")
        await first.set_flash(session, "Marked as done.")
        found = await second.get(session.id)
        assert found is not None and await second.take_flash(found) == "Marked as done."
        again = await first.get(session.id)
        assert again is not None and await first.take_flash(again) is None

    async def test_a_page_costs_one_read_and_last_used_is_written_a_minute_apart(
        self, engine: AsyncEngine
    ) -> None:
        """Looking a session up is one SELECT; "last used" is written only when a minute old."""
        clock = SecondsClock(NOW.timestamp())
        store = SessionStore(engine, 3600.0, clock=clock)
        session = await store.create("anna")
        with statements(engine) as seen:
            for _ in range(5):
                clock.advance(10)
                assert await store.get(session.id) is not None
        assert seen == ["SELECT"] * 5
        clock.advance(20)  # 70 s since the last write
        with statements(engine) as seen:
            assert await store.get(session.id) is not None
        assert seen[0] == "SELECT" and "UPDATE" in seen

    async def test_removing_a_user_or_changing_their_password_ends_their_sessions(
        self, engine: AsyncEngine
    ) -> None:
        """`web user remove` / `web user password` end the user's sessions on every daemon,
        and no one else's."""
        store = SessionStore(engine, 600.0, clock=SecondsClock(NOW.timestamp()))
        async with engine.begin() as conn:
            await users.add_user(conn, web_user("anna", "manager", "101"), NOW)
            await users.add_user(conn, web_user("mark", "marketer"), NOW)
        anna, mark = await store.create("anna"), await store.create("mark")
        found = await store.get(anna.id)
        assert found is not None and found.stored_user is not None
        assert found.stored_user.extension == "101"  # the user's row comes with the session
        async with engine.begin() as conn:
            assert await users.set_password(
                conn, "anna", web_user("anna", "admin").password_hash, NOW
            )
        assert await store.get(anna.id) is None
        assert await store.get(mark.id) is not None
        async with engine.begin() as conn:
            assert await users.remove_user(conn, "mark")
        assert await store.get(mark.id) is None


class TestLoginThrottle:
    async def test_locks_out_after_repeated_failures_then_lets_try_again(
        self, engine: AsyncEngine
    ) -> None:
        """After too many failures a client waits, per client, doubled for each further one."""
        clock = SecondsClock(NOW.timestamp())
        throttle = LoginThrottle(engine, max_failures=3, lockout=60.0, clock=clock)
        assert [await throttle.failed("10.0.0.1") for _ in range(2)] == [0, 0]
        assert await throttle.retry_after("10.0.0.1") == 0
        assert await throttle.failed("10.0.0.1") == 60
        assert await throttle.retry_after("10.0.0.2") == 0  # per client
        clock.advance(60)
        assert await throttle.retry_after("10.0.0.1") == 0
        assert await throttle.failed("10.0.0.1") == 120  # doubled for each further failure

    async def test_failures_on_one_daemon_count_on_another(self, engine: AsyncEngine) -> None:
        """Alternating daemons does not dodge the brake, nor does a restart."""
        clock = SecondsClock(NOW.timestamp())
        daemons = [LoginThrottle(engine, max_failures=4, clock=clock) for _ in range(2)]
        waits = [await daemons[n % 2].failed("10.0.0.1") for n in range(4)]
        assert waits == [0, 0, 0, 60]
        restarted = LoginThrottle(engine, clock=clock)
        assert await restarted.retry_after("10.0.0.1") == 60

    async def test_the_lockout_is_bounded_and_success_clears_it(self, engine: AsyncEngine) -> None:
        """The wait never exceeds the cap, and a good sign-in forgets the failures."""
        clock = SecondsClock(NOW.timestamp())
        throttle = LoginThrottle(
            engine, max_failures=1, lockout=60.0, max_lockout=300.0, clock=clock
        )
        waits = [await throttle.failed("c") for _ in range(10)]
        assert max(waits) == 300
        await throttle.succeeded("c")
        assert await throttle.retry_after("c") == 0
        assert await throttle.count() == 0

    async def test_failures_far_apart_do_not_add_up(self, engine: AsyncEngine) -> None:
        """A failure after the window starts the count again."""
        clock = SecondsClock(NOW.timestamp())
        throttle = LoginThrottle(engine, max_failures=2, window=100.0, clock=clock)
        await throttle.failed("c")
        clock.advance(101)
        assert await throttle.failed("c") == 0

    async def test_the_table_is_bounded(self, engine: AsyncEngine) -> None:
        """Many clients failing leave at most ``max_clients`` rows; forgotten ones go first."""
        clock = SecondsClock(NOW.timestamp())
        throttle = LoginThrottle(engine, clock=clock, window=30.0, max_clients=10)
        for number in range(50):
            clock.advance(1)
            await throttle.failed(f"10.0.0.{number}")
            assert await throttle.count() <= 10
        clock.advance(31)
        await throttle.failed("10.0.1.1")
        assert await throttle.count() == 1
