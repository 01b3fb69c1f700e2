"""The pool allocator with a controllable clock: hold, keep-alive, expiry, LRU, quarantine,
returning visitors, exhaustion, attribution candidates and the recommended pool size."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from clocks import DateClock
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx_tracker.attribution.pool import (
    Assignment,
    Lease,
    PoolAllocator,
    recommended_pool_size,
)

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
A, B, C, D = "+74950000001", "+74950000002", "+74950000003", "+74950000004"
HOLD = 15 * 60
QUARANTINE = 5 * 60


def pool(*numbers: str, hold: float = HOLD, quarantine: float = 0.0) -> PoolAllocator:
    return PoolAllocator(numbers or (A, B, C), hold_seconds=hold, quarantine_seconds=quarantine)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class TestHold:
    def test_first_visits_get_numbers_in_pool_order(self) -> None:
        """The first visitors to the site are shown the pool's numbers in the order the pool lists
        them."""
        allocator = pool()
        assert allocator.assign("v1", T0) == Assignment(A, False, False, started=True)
        assert allocator.assign("v2", T0).number == B
        assert allocator.assign("v3", T0).number == C
        assert allocator.in_use == 3

    def test_a_live_visit_keeps_its_number(self) -> None:
        """A visitor who comes back to another page while their visit is live keeps seeing the same
        number."""
        allocator = pool()
        allocator.assign("v1", T0)
        allocator.assign("v2", T0)
        again = allocator.assign("v1", at(60))
        assert again == Assignment(A, reused=True, exhausted=False, started=False)

    def test_lease_lives_for_the_hold_after_the_last_keep_alive(self) -> None:
        """A number stays with a visitor for the whole hold after their last keep-alive, and only
        then goes to another visitor."""
        allocator = pool(A)
        allocator.assign("v1", T0)
        assert allocator.keep_alive("v1", at(HOLD - 1)) is not None
        assert allocator.assign("v2", at(2 * HOLD - 2)).exhausted  # still held
        assert allocator.assign("v2", at(2 * HOLD - 1)).number == A  # hold ran out

    def test_expired_lease_is_gone_and_reported_once(self) -> None:
        """A visit whose hold ran out frees its number, is reported as ended once with the moment
        the hold ended, and can no longer be kept alive."""
        allocator = pool()
        allocator.assign("v1", T0)
        assert allocator.expire(at(HOLD - 1)) == []
        (ended,) = allocator.expire(at(HOLD + 10))
        assert ended == Lease(A, "v1", T0, T0, released_at=at(HOLD))
        assert allocator.expire(at(HOLD + 20)) == []
        assert allocator.keep_alive("v1", at(HOLD + 20)) is None
        assert allocator.in_use == 0

    def test_keep_alive_moves_the_expiry(self) -> None:
        """A visitor who keeps the page open keeps their number while a visitor who left loses
        theirs when the hold runs out."""
        allocator = pool()
        allocator.assign("v1", T0)
        allocator.assign("v2", at(10))
        allocator.keep_alive("v1", at(20))
        ended = allocator.expire(at(HOLD + 15))
        assert [lease.visit_id for lease in ended] == ["v2"]

    def test_release_ends_the_lease_now(self) -> None:
        """A visitor who leaves the site frees the number at once, only once, and is reported as
        ended at that moment."""
        allocator = pool()
        allocator.assign("v1", T0)
        released = allocator.release("v1", at(30))
        assert released is not None and released.released_at == at(30)
        assert allocator.release("v1", at(31)) is None
        assert allocator.expire(at(40)) == [released]

    def test_time_never_goes_back(self) -> None:
        """A keep-alive stamped earlier than the last one (a clock stepped back) does not shorten
        the visitor's hold."""
        allocator = pool(A)
        allocator.assign("v1", at(100))
        lease = allocator.keep_alive("v1", at(50))
        assert lease is not None and lease.last_seen_at == at(100)


class TestLeastRecentlyUsed:
    def test_never_used_first_then_released_longest_ago(self) -> None:
        """New visitors get a number never shown before, then the one released longest ago, so a
        number shown recently is not shown to someone else at once."""
        allocator = pool(A, B, C, D)
        for visit in ("v1", "v2", "v3"):
            allocator.assign(visit, T0)
        allocator.release("v2", at(10))
        allocator.release("v1", at(20))
        assert allocator.assign("v4", at(30)).number == D  # never used
        assert allocator.assign("v5", at(30)).number == B  # released at 10
        assert allocator.assign("v6", at(30)).number == A  # released at 20

    def test_expired_numbers_in_the_order_their_hold_ran_out(self) -> None:
        """Numbers whose hold ran out are given again in the order their holds ended."""
        allocator = pool(A, B)
        allocator.assign("v1", T0)
        allocator.assign("v2", at(5))
        allocator.keep_alive("v1", at(10))  # v1 runs out after v2
        assert allocator.assign("v3", at(HOLD + 60)).number == B
        assert allocator.assign("v4", at(HOLD + 60)).number == A

    def test_quarantine_rests_a_released_number(self) -> None:
        """A released number is not shown to anyone during the quarantine, so a late call on it is
        not credited to the wrong visitor."""
        allocator = pool(A, B, quarantine=QUARANTINE)
        allocator.assign("v1", T0)
        allocator.assign("v2", T0)
        allocator.release("v1", at(10))
        assert allocator.assign("v3", at(10 + QUARANTINE - 1)).exhausted
        assert allocator.assign("v3", at(10 + QUARANTINE)).number == A

    def test_quarantine_prefers_the_rested_number(self) -> None:
        """A number that has finished its quarantine is shown next, while one still resting is
        not."""
        allocator = pool(A, B, C, quarantine=QUARANTINE)
        for visit in ("v1", "v2", "v3"):
            allocator.assign(visit, T0)
        allocator.release("v2", at(10))
        allocator.release("v1", at(QUARANTINE))
        assert allocator.assign("v4", at(QUARANTINE + 10)).number == B
        assert allocator.assign("v5", at(QUARANTINE + 10)).exhausted


class TestReturningVisitor:
    def test_gets_the_previous_number_back_when_free(self) -> None:
        """A returning visitor sees the same number they saw before when it is free, so they can
        call the number they wrote down."""
        allocator = pool(A, B, C)
        allocator.assign("v1", T0)
        allocator.assign("v2", T0)
        allocator.release("v2", at(10))
        allocator.release("v1", at(20))
        # LRU would give C (never used), then B; the visitor had A
        assert allocator.assign("v3", at(30), previous_number=A) == Assignment(
            A, reused=True, exhausted=False, started=True
        )

    def test_not_when_someone_else_holds_it(self) -> None:
        """A returning visitor whose number is held by someone else gets another number."""
        allocator = pool(A, B)
        allocator.assign("v1", T0)
        assignment = allocator.assign("v2", at(10), previous_number=A)
        assert assignment == Assignment(B, reused=False, exhausted=False, started=True)

    def test_not_during_quarantine(self) -> None:
        """A returning visitor does not get their old number back while it is in quarantine."""
        allocator = pool(A, B, quarantine=QUARANTINE)
        allocator.assign("v1", T0)
        allocator.release("v1", at(10))
        assert allocator.assign("v2", at(20), previous_number=A).number == B

    def test_unknown_previous_number_is_ignored(self) -> None:
        """A previous number that is not in the pool is ignored and the visitor gets a pool number
        as usual."""
        allocator = pool(A, B)
        assert allocator.assign("v1", T0, previous_number="+70000000000").number == A


class TestExhaustion:
    def test_exhausted_then_recovers(self) -> None:
        """When every number is held new visitors see the site's fallback number and each miss is
        counted as an exhaustion, until a hold runs out."""
        allocator = pool(A, B)
        allocator.assign("v1", T0)
        allocator.assign("v2", T0)
        assert allocator.assign("v3", at(1)) == Assignment(None, reused=False, exhausted=True)
        assert allocator.assign("v4", at(2)).exhausted
        assert allocator.exhaustions == 2
        assert allocator.peak_in_use == 2
        assert allocator.assign("v3", at(HOLD + 1)).number == A
        assert allocator.in_use == 1


class TestHolderAt:
    def test_live_and_released_holders(self) -> None:
        """A call on a pool number is credited to the visitor who held it at that moment, and to
        nobody when nobody did."""
        allocator = pool(A)
        allocator.assign("v1", T0)
        allocator.release("v1", at(100))
        allocator.assign("v2", at(200))
        assert [h.visit_id for h in allocator.holder_at(A, at(50))] == ["v1"]
        assert [h.visit_id for h in allocator.holder_at(A, at(250))] == ["v2"]
        assert allocator.holder_at(A, at(150)) == []
        assert allocator.holder_at(A, at(-1)) == []

    def test_grace_after_release_and_ambiguity(self) -> None:
        """A call shortly after a visitor left is still matched to them within the grace time,
        alongside the visitor holding the number now."""
        allocator = pool(A)
        allocator.assign("v1", T0)
        allocator.release("v1", at(100))
        allocator.assign("v2", at(110))
        graced = allocator.holder_at(A, at(150), grace_seconds=60)
        assert [(h.visit_id, h.in_grace) for h in graced] == [("v2", False), ("v1", True)]
        assert graced[1].ended_at == at(100)
        alone = allocator.holder_at(A, at(105), grace_seconds=60)
        assert [(h.visit_id, h.in_grace) for h in alone] == [("v1", True)]

    def test_a_live_lease_is_held_until_its_hold_runs_out(self) -> None:
        """A visit counts as holding its number up to the end of its hold and not a second later,
        and a number outside the pool has no holder."""
        allocator = pool(A)
        allocator.assign("v1", T0)
        assert [h.visit_id for h in allocator.holder_at(A, at(HOLD))] == ["v1"]
        assert allocator.holder_at(A, at(HOLD + 1)) == []
        assert allocator.holder_at("+70000000000", T0) == []


class TestRestart:
    def test_stored_leases_restore_holders_lru_and_quarantine(self) -> None:
        """After a restart the pool restores live visits, who held which number, the order of use
        and the quarantine from the stored leases, and ignores numbers no longer in the pool."""
        stored = [
            Lease(A, "old", at(-900), at(-800), released_at=at(-700)),
            Lease(A, "v1", at(-100), at(-10)),
            Lease(B, "v2", at(-600), at(-600), released_at=at(-50)),
            Lease(C, "v3", at(-600), at(-600), released_at=at(-500)),
            Lease("+70000000000", "gone", at(-600), at(-600)),  # no longer in the pool
        ]
        allocator = PoolAllocator(
            (A, B, C, D), hold_seconds=HOLD, quarantine_seconds=100, leases=stored
        )
        assert allocator.assign("v1", T0).reused
        assert allocator.assign("v4", T0).number == D
        assert allocator.assign("v5", T0).number == C
        assert allocator.assign("v6", T0).exhausted  # B rests until +50
        assert allocator.assign("v6", at(50)).number == B
        assert [h.visit_id for h in allocator.holder_at(A, at(-750))] == ["old"]

    def test_lapsed_stored_lease_ends_at_its_hold(self) -> None:
        """A stored visit whose hold ran out while the daemon was down is reported as ended at the
        end of its hold."""
        stored = [Lease(A, "v1", at(-2 * HOLD), at(-2 * HOLD))]
        allocator = PoolAllocator((A,), hold_seconds=HOLD, leases=stored)
        assert allocator.in_use == 1
        assert allocator.expire(T0) == [Lease(A, "v1", at(-2 * HOLD), at(-2 * HOLD), at(-HOLD))]


class TestValidation:
    @pytest.mark.parametrize(
        ("numbers", "hold", "quarantine"),
        [((), 60, 0), ((A, A), 60, 0), ((A,), 0, 0), ((A,), 60, -1)],
    )
    def test_refused(self, numbers: tuple[str, ...], hold: float, quarantine: float) -> None:
        """A pool with no numbers, a number listed twice, no hold time or a negative quarantine is
        refused."""
        with pytest.raises(ValueError):
            PoolAllocator(numbers, hold_seconds=hold, quarantine_seconds=quarantine)


class TestRecommendedSize:
    @pytest.mark.parametrize(
        ("visits_per_hour", "minutes_on_site", "hold_minutes", "headroom", "expected"),
        [
            (100, 5, 15, 0.2, 40),  # 100 * 20 / 60 = 33.3, +20% = 40 exactly
            (100, 5, 15, 0.0, 34),
            (60, 3, 15, 0.2, 22),  # 18 * 1.2 = 21.6
            (1000, 4, 20, 0.25, 500),
            (2, 1, 15, 0.2, 4),  # never below 4
            (0, 0, 0, 0.2, 4),
        ],
    )
    def test_examples(
        self,
        visits_per_hour: float,
        minutes_on_site: float,
        hold_minutes: float,
        headroom: float,
        expected: int,
    ) -> None:
        """The recommended pool size is visits per hour times minutes on site plus hold, with
        headroom, and never below 4 numbers."""
        size = recommended_pool_size(visits_per_hour, minutes_on_site, hold_minutes, headroom)
        assert size == expected

    def test_default_headroom_and_negative_input(self) -> None:
        """The recommended size adds 20 % headroom by default and refuses a negative number of
        visits."""
        assert recommended_pool_size(100, 5, 15) == 40
        with pytest.raises(ValueError):
            recommended_pool_size(-1, 5, 15)


def test_ten_thousand_operations_a_second_with_room_to_spare() -> None:
    """A pool of 500 numbers handles well over 10,000 visits and keep-alives a second."""
    numbers = [f"+7495{i:07d}" for i in range(500)]
    allocator = PoolAllocator(numbers, hold_seconds=HOLD, quarantine_seconds=60)
    operations = 50_000
    started = time.perf_counter()
    for i in range(operations):
        now = at(i * 0.1)
        if i % 2:
            allocator.keep_alive(f"v{(i - 1) % 2000}", now)
        else:
            allocator.assign(f"v{i % 2000}", now)
        if i % 1000 == 0:
            allocator.expire(now)
    elapsed = time.perf_counter() - started
    assert operations / elapsed > 10_000 * 2, f"{operations / elapsed:.0f} operations/s"


# --- property: no number is shared, quarantine is respected ----------------

VISITS = [f"v{i}" for i in range(8)]
Step = tuple[str, int, bool]
steps = st.lists(
    st.tuples(
        st.sampled_from(["assign", "keep", "release", "tick"]),
        st.integers(min_value=0, max_value=len(VISITS) - 1),
        st.booleans(),
    ),
    max_size=80,
)


@dataclass
class Witness:
    """What the property test saw: the start and the end of every lease."""

    hold: timedelta
    quarantine: timedelta
    numbers: dict[str, str] = field(default_factory=dict)  # visit -> last number shown
    starts: list[tuple[datetime, str, str]] = field(default_factory=list)
    ended: list[Lease] = field(default_factory=list)

    def check(self, allocator: PoolAllocator) -> None:
        live = allocator.live_leases()
        assert len({lease.number for lease in live}) == len(live), "a number shared"
        assert len({lease.visit_id for lease in live}) == len(live), "a visit with two numbers"
        for start_at, number, _ in self.starts:
            for lease in self.ended:
                if lease.number == number and lease.started_at < start_at:
                    assert lease.released_at is not None
                    assert lease.released_at + self.quarantine <= start_at, "quarantine broken"


def run(allocator: PoolAllocator, witness: Witness, step: Step, clock: DateClock) -> None:
    action, index, flag = step
    visit = VISITS[index]
    if action == "tick":
        clock.advance(400 if flag else 37)
    elif action == "assign":
        previous = witness.numbers.get(visit) if flag else None
        assignment = allocator.assign(visit, clock.now, previous)
        if assignment.started and assignment.number is not None:
            witness.starts.append((clock.now, assignment.number, visit))
            witness.numbers[visit] = assignment.number
        assert assignment.exhausted == (assignment.number is None)
    elif action == "keep":
        allocator.keep_alive(visit, clock.now)
    else:
        allocator.release(visit, clock.now)
    witness.ended += allocator.expire(clock.now)


@settings(max_examples=300, deadline=None)
@given(steps=steps, size=st.integers(min_value=1, max_value=4))
def test_concurrent_visits_never_share_a_number(steps: list[Step], size: int) -> None:
    """However visits start, keep alive, leave and run out, no two visitors are ever shown the same
    number at once and a quarantined number is never given early."""
    hold, quarantine = 600.0, 120.0
    allocator = PoolAllocator([A, B, C, D][:size], hold_seconds=hold, quarantine_seconds=quarantine)
    witness = Witness(timedelta(seconds=hold), timedelta(seconds=quarantine))
    clock = DateClock(T0)
    for step in steps:
        run(allocator, witness, step, clock)
        witness.check(allocator)
    assert allocator.in_use <= size
    for lease in witness.ended:
        assert lease.released_at is not None
        assert lease.started_at <= lease.released_at <= lease.last_seen_at + witness.hold
