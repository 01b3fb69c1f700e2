"""The token bucket per client key: burst, refill, Retry-After, bounded memory."""

from __future__ import annotations

import pytest
from clocks import SecondsClock

from pbx_tracker.web.limits import RateLimiter


def limiter(
    per_minute: float = 60, burst: int = 3, **kwargs: int
) -> tuple[RateLimiter, SecondsClock]:
    clock = SecondsClock()
    return RateLimiter(per_minute, burst, clock=clock, **kwargs), clock


def test_a_burst_passes_then_the_next_waits_one_token() -> None:
    """A client may send its burst of requests at once; the next one is told to wait one token's
    time, rounded up to 1 s in Retry-After."""
    bucket, _ = limiter(per_minute=60, burst=3)
    assert [bucket.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.check("a") == pytest.approx(1.0)
    assert bucket.retry_after("a") == 1


def test_tokens_come_back_with_time_up_to_the_burst() -> None:
    """Requests become allowed again as time passes, but a client idle for an hour gets no more than
    its burst."""
    bucket, clock = limiter(per_minute=30, burst=2)
    for _ in range(2):
        bucket.check("a")
    assert bucket.check("a") == pytest.approx(2.0)
    clock.advance(2.0)
    assert bucket.check("a") == 0.0
    assert bucket.check("a") > 0
    clock.advance(3600)
    assert [bucket.check("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(2.0)]


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    """A client that must wait 0.75 s is told Retry-After: 1, never 0."""
    bucket, clock = limiter(per_minute=60, burst=1)
    assert bucket.retry_after("a") == 0
    clock.advance(0.25)
    assert bucket.check("a") == pytest.approx(0.75)
    assert bucket.retry_after("a") == 1


def test_keys_have_their_own_buckets() -> None:
    """One client using up its requests does not slow down another client."""
    bucket, _ = limiter(burst=1)
    assert bucket.check("a") == 0.0
    assert bucket.check("a") > 0
    assert bucket.check("b") == 0.0


def test_a_clock_going_back_gives_no_tokens() -> None:
    """A clock stepped back (an NTP correction) gives no client extra requests, and coming forward
    again does not either."""
    bucket, clock = limiter(per_minute=60, burst=1)
    bucket.check("a")
    clock.advance(-100)
    assert bucket.check("a") > 0
    clock.advance(100)
    assert bucket.check("a") > 0


def test_memory_is_bounded_dropping_the_least_recently_used_key() -> None:
    """The limiter remembers at most its configured number of clients, forgetting the one idle
    longest, so a flood of addresses cannot eat the daemon's memory."""
    bucket, _ = limiter(burst=1, max_keys=3)
    for key in ("a", "b", "c"):
        bucket.check(key)
    bucket.check("a")  # a is used again: b is now the oldest
    bucket.check("d")
    assert len(bucket) == 3
    assert bucket.check("a") > 0  # still tracked, still empty
    assert bucket.check("b") == 0.0  # dropped, starts full again
    for key in (str(n) for n in range(1000)):
        bucket.check(key)
    assert len(bucket) == 3


@pytest.mark.parametrize(
    ("per_minute", "burst", "max_keys"), [(0, 1, 1), (-1, 1, 1), (60, 0, 1), (60, 1, 0)]
)
def test_nonsense_limits_are_refused(per_minute: float, burst: int, max_keys: int) -> None:
    """A rate of zero or less, a burst of zero or a memory of zero clients is refused at once with
    an error saying the value must be positive."""
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(per_minute, burst, max_keys=max_keys)
