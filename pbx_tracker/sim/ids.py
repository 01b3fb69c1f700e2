"""Fresh identifiers for simulated calls: Uniqueids, IAX2 call numbers, bridge ids."""

from __future__ import annotations

import random
import uuid
from typing import Protocol


class CallIds(Protocol):
    """Fresh identifiers (`scenarios.IdAllocator` is one)."""

    def uniqueid(self, at: float) -> str: ...
    def callno(self) -> int: ...
    def bridge_id(self) -> str: ...


class OriginateIds:
    """Identifiers for originated calls: Uniqueids `<epoch>.<seq>`, IAX2 call numbers, bridges.

    The sequence starts high so that it never meets the Uniqueids of calls
    generated alongside by `scenarios.IdAllocator` (which counts from 0).
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
