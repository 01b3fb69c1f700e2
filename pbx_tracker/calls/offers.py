"""What the caller went through while waiting: each Dial and each queue stint, and how it ended.

A missed call is judged from the caller's side first: the result of the last
thing that tried to reach a manager for them.  Each `Dial()` the caller's own
channel runs is one offer (all its destinations, Local channels included, as
Asterisk reported them in `DialEnd` and `DIALSTATUS`); each time the caller
joins a queue is one offer (its `QUEUESTATUS`, `QueueCallerAbandon`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pbx_tracker.calls.records import MissedReason

__all__ = [
    "DIAL",
    "QUEUE",
    "Offer",
    "caller_dial",
    "dial_status",
    "latest",
    "queue_abandoned",
    "queue_status",
    "reason_of",
]

DIAL = "dial"
QUEUE = "queue"

ANSWER = "ANSWER"
CANCEL = "CANCEL"
NOANSWER = "NOANSWER"
BUSY = "BUSY"
CHANUNAVAIL = "CHANUNAVAIL"

_QUEUE_RESULTS = {
    "TIMEOUT": NOANSWER,
    "CONTINUE": NOANSWER,
    "JOINEMPTY": CHANUNAVAIL,
    "LEAVEEMPTY": CHANUNAVAIL,
    "JOINUNAVAIL": CHANUNAVAIL,
    "LEAVEUNAVAIL": CHANUNAVAIL,
    "FULL": CHANUNAVAIL,
}
_REASONS = {
    ANSWER: MissedReason.NO_ANSWER,  # something answered (voicemail behind a Local), no manager
    CANCEL: MissedReason.ABANDONED,
    NOANSWER: MissedReason.NO_ANSWER,
    BUSY: MissedReason.BUSY,
    "CONGESTION": MissedReason.BUSY,
    CHANUNAVAIL: MissedReason.UNAVAILABLE,
}


@dataclass(slots=True)
class Offer:
    """One Dial of the caller's channel, or one stint in a queue."""

    kind: str
    started_at: float
    ended_at: float | None = None
    queue: str | None = None
    statuses: dict[str, str] = field(default_factory=dict)  # destination → DialStatus
    ringing: set[str] = field(default_factory=set)  # destinations without a DialEnd yet
    status: str | None = None  # DIALSTATUS / QUEUESTATUS, Asterisk's own summary
    abandoned: bool = False  # QueueCallerAbandon

    @property
    def fresh(self) -> bool:
        """Nothing happened in it yet: no destination, no summary."""
        return not self.statuses and not self.ringing and self.status is None

    @property
    def open(self) -> bool:
        """Still trying to reach someone (no summary yet, a destination still ringing)."""
        return self.status is None and (bool(self.ringing) or not self.statuses)

    def dest_begins(self, dest: str) -> None:
        if dest not in self.statuses:
            self.ringing.add(dest)

    def dest_ends(self, dest: str, status: str, time: float) -> None:
        """The first DialEnd of a destination wins (queues repeat NOANSWER as CANCEL)."""
        self.ringing.discard(dest)
        self.statuses.setdefault(dest, status.upper())
        self.ended_at = time

    def summary(self, status: str, time: float) -> None:
        self.status = status.upper()
        self.ended_at = time

    def result(self, caller_hung_up: bool) -> str | None:
        """How this offer ended, as a Dial status: ANSWER, CANCEL, NOANSWER, BUSY, ...

        A queue stint the caller left by hanging up (QueueCallerAbandon without
        a timeout or empty-queue status) is CANCEL; so is anything still
        ringing or queued when the caller hung up.
        """
        if self.kind == QUEUE:
            if self.status in _QUEUE_RESULTS:
                return _QUEUE_RESULTS[self.status]
            if self.abandoned or caller_hung_up:
                return CANCEL
            return None
        if self.status:
            return self.status
        found = set(self.statuses.values())
        for status in (ANSWER, CANCEL, NOANSWER):
            if status in found:
                return status
        if self.ringing and caller_hung_up:
            return CANCEL
        if found & {BUSY, "CONGESTION"}:
            return BUSY
        return CHANUNAVAIL if CHANUNAVAIL in found else None


def reason_of(result: str | None) -> MissedReason | None:
    """The missed reason an offer's result gives (None: it says nothing)."""
    return _REASONS.get(result) if result else None


def latest(offers: list[Offer], kind: str | None = None) -> Offer | None:
    """The latest offer (of that kind)."""
    for offer in reversed(offers):
        if kind is None or offer.kind == kind:
            return offer
    return None


def caller_dial(offers: list[Offer], time: float) -> Offer:
    """The offer a Dial of the caller's channel belongs to (the open one, or a new one)."""
    last = latest(offers)
    if last is not None and last.kind == QUEUE and last.ended_at is None:
        return last  # the queue rings its members with Dial events of its own
    if last is not None and last.kind == DIAL and last.open:
        return last
    offer = Offer(DIAL, time)
    offers.append(offer)
    return offer


def dial_status(offers: list[Offer], value: str, time: float) -> None:
    """DIALSTATUS on the caller's channel: empty when a Dial starts, its result after."""
    last = latest(offers)
    if not value:
        if last is None or last.kind != DIAL or not last.fresh:
            offers.append(Offer(DIAL, time))
        return
    if last is not None and last.kind == DIAL and last.status is None:
        last.summary(value, time)
    elif last is None or last.kind != DIAL:
        offer = Offer(DIAL, time)
        offer.summary(value, time)
        offers.append(offer)


def queue_status(offers: list[Offer], value: str, time: float, queue: str | None) -> None:
    """QUEUESTATUS after Queue() returns; alone when the caller never joined (JOINEMPTY)."""
    last = latest(offers)
    if last is None or last.kind != QUEUE or last.status is not None:
        last = Offer(QUEUE, time, queue=queue)
        offers.append(last)
    last.summary(value, time)


def queue_abandoned(offers: list[Offer], time: float, queue: str | None) -> None:
    """QueueCallerAbandon: the caller hung up while queued (a stint of its own if none)."""
    stint = latest(offers, QUEUE)
    if stint is None:
        stint = Offer(QUEUE, time, queue=queue)
        offers.append(stint)
    stint.abandoned = True
    stint.ended_at = stint.ended_at or time
