"""Fresh identifiers for simulated calls: Uniqueids, IAX2 call numbers, bridge ids."""

from __future__ import annotations

import random
import uuid
from typing import Protocol

DEFAULT_EPOCH = 1795424400.0  # 2026-11-23 09:00:00 UTC, the day after the captures


class IdAllocator:
    """Fresh identifiers for one simulated day: Uniqueids, IAX2 call numbers, bridge ids.

    Uniqueids are `<epoch seconds>.<seq>` like Asterisk's, with `seq` counting
    up across the whole day; everything random comes from `seed`.
    """

    def __init__(self, epoch: float = DEFAULT_EPOCH, *, seed: int = 1, first_seq: int = 0) -> None:
        self.epoch = epoch
        self._next_seq = first_seq
        self._rng = random.Random(f"pbx-tracker-ids-{seed}")
        self._callno = self._rng.randrange(1, 16000)

    def uniqueid(self, at: float) -> str:
        """A new Uniqueid for a channel created at epoch time `at`."""
        uniqueid = self.peek_uniqueid(at)
        self._next_seq += 1
        return uniqueid

    def peek_uniqueid(self, at: float) -> str:
        """The Uniqueid the next channel created at `at` will get (nothing is used up).

        The first channel of a call is the caller's: this is the call's Linkedid,
        known before the call is made (the router is asked with it).
        """
        return f"{int(at)}.{self._next_seq}"

    def callno(self) -> int:
        self._callno = self._callno % 32767 + 1
        return self._callno

    def bridge_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def command_id(self) -> str:
        return str(self._rng.randrange(1, 2**31))


class CallIds(Protocol):
    """Fresh identifiers (`IdAllocator` is one)."""

    def uniqueid(self, at: float) -> str: ...
    def callno(self) -> int: ...
    def bridge_id(self) -> str: ...


class OriginateIds:
    """Identifiers for originated calls: Uniqueids `<epoch>.<seq>`, IAX2 call numbers, bridges.

    The sequence starts high so that it never meets the Uniqueids of calls
    generated alongside by `IdAllocator` (which counts from 0).
    """

    def __init__(self, *, seed: int = 12, first_seq: int = 900_000) -> None:
        self._seq = first_seq
        self._rng = random.Random(f"pbx-tracker-originate-{seed}")
        self._callno = self._rng.randrange(1, 16000)

    def uniqueid(self, at: float) -> str:
        self._seq += 1
        return f"{int(at)}.{self._seq}"

    def callno(self) -> int:
        self._callno = self._callno % 32767 + 1
        return self._callno

    def bridge_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
