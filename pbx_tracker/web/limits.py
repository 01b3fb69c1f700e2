"""A token-bucket rate limiter per client key, with an injectable clock and bounded memory.

Each key has a bucket of ``burst`` tokens refilled at ``per_minute / 60`` tokens a
second; a request takes one token.  Memory is bounded: at most ``max_keys``
buckets are kept, the least recently used one is dropped first (a dropped key
starts again with a full bucket, which is what an idle key would have anyway).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_KEYS", "RateLimiter"]

DEFAULT_MAX_KEYS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``check(key)``: 0.0 when the request may go, else the seconds to wait."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if per_minute <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate, burst and max_keys must be positive")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """Keys currently tracked (never more than ``max_keys``)."""
        return len(self._buckets)

    def check(self, key: str) -> float:
        """Take a token for ``key``: 0.0 if there was one, else seconds until there is."""
        now = self._clock()
        bucket = self._bucket(key, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def retry_after(self, key: str) -> int:
        """``check`` as whole seconds for a Retry-After header (0: allowed)."""
        wait = self.check(key)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=self.burst, updated=now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return bucket
        self._buckets.move_to_end(key)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.updated = max(now, bucket.updated)
        return bucket
