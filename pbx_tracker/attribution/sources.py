"""Static attribution: which tracked number (and so which source) a call came in on.

Turns the correlator's raw record into the stored one: caller and DID in E.164,
source / medium / campaign from the config, the target-call flag, and the
attribution the config alone gives (`attribute.static_attribution`; the call
writer credits calls on pool numbers to website visits).  Inbound
calls on numbers that are not tracked get no record (they are counted).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from pbx_tracker.attribution.attribute import static_attribution
from pbx_tracker.calls.records import CallRecord, Direction
from pbx_tracker.phones import normalize_number

if TYPE_CHECKING:
    from pbx_tracker.staff import Directory


class CallLabeler:
    """Applies the config's tracked numbers to finished calls; a call is a target call
    when its talk lasts ``target_seconds`` or more."""

    def __init__(self, directory: Directory, target_seconds: int) -> None:
        self._directory = directory
        self._target_seconds = target_seconds
        self.untracked: Counter[str] = Counter()

    def label(self, record: CallRecord) -> CallRecord | None:
        """The record to store, or None for an inbound call on an untracked number."""
        region = self._directory.region
        caller = normalize_number(record.caller, region)
        is_target = record.talk_seconds >= self._target_seconds
        if record.direction is Direction.OUTBOUND:
            did = normalize_number(record.did, region)
            return record.replace(caller=caller, did=did, is_target=is_target)
        labels = self._directory.find_number(record.did)
        if labels is None:
            self.untracked[record.did or "unknown"] += 1
            return None
        return record.replace(
            did=labels.did,
            caller=caller,
            source=labels.source,
            medium=labels.medium,
            campaign=labels.campaign,
            is_target=is_target,
            attribution=static_attribution(labels.did, labels.source, labels.pool),
        )


class FirstTimeCallers:
    """First-time caller decided in memory, for runs that have no database (dry runs)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def mark(self, record: CallRecord) -> CallRecord:
        if record.direction is not Direction.INBOUND or record.caller is None:
            return record
        first = record.caller not in self._seen
        self._seen.add(record.caller)
        return record.replace(first_time_caller=first)
