"""`MemoryVisitPool`: one number pool kept in memory, over the real `PoolAllocator`.

Enough for the API's tests and a single daemon without history; the
database-backed pool is `stored_pool.StoredVisitPool`.

`network_of`: the network a client key (`pbx_tracker.web.clients.client_key`: an
address, or an IPv6 /64) counts in for the per-network cap: its /24 for IPv4 (an
IPv4-mapped IPv6 address is IPv4), its /48 for IPv6; anything else (no address)
counts alone.  IPv6 networks are remembered per string.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import structlog

from pbx_tracker.attribution.pool import Lease, PoolAllocator
from pbx_tracker.attribution.visit_pool import (
    KeepAliveAnswer,
    TooManyVisits,
    UnknownPool,
    VisitAnswer,
    VisitStart,
)
from pbx_tracker.phones import display_number

__all__ = [
    "IPV4_PREFIX",
    "IPV6_PREFIX",
    "Clock",
    "LiveVisit",
    "MemoryVisitPool",
    "network_cap",
    "network_of",
    "utc_now",
]

Clock = Callable[[], datetime]

log = structlog.get_logger(__name__)

IPV4_PREFIX = 24
IPV6_PREFIX = 48
_CACHED = 4096


@dataclass(slots=True)
class LiveVisit:
    visit_id: str
    client: str
    network: str
    visitor_id: str | None
    number: str | None
    last_seen: datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def network_of(client: str) -> str:
    """``203.0.113.0/24`` for ``203.0.113.7`` (or ``::ffff:203.0.113.7``),
    ``2001:db8:1::/48`` for an address or /64 in it; ``client`` itself otherwise."""
    head, dot, last = client.rpartition(".")
    if dot and last.isdigit() and ":" not in head and head.count(".") == 2:
        return f"{head}.0/{IPV4_PREFIX}"  # an IPv4 client key (a tenth of parsing it)
    return _network_of(client)


@functools.lru_cache(maxsize=_CACHED)
def _network_of(client: str) -> str:
    try:
        network: IPv4Network | IPv6Network = ip_network(client, strict=False)
    except ValueError:
        return client
    if isinstance(network, IPv6Network):
        mapped = ip_address(network.network_address)
        assert isinstance(mapped, IPv6Address)
        if mapped.ipv4_mapped is not None and network.prefixlen == 128:
            return str(ip_network(f"{mapped.ipv4_mapped}/{IPV4_PREFIX}", strict=False))
        prefix = IPV6_PREFIX
    else:
        prefix = IPV4_PREFIX
    if network.prefixlen <= prefix:
        return str(network)
    return str(network.supernet(new_prefix=prefix))


def network_cap(numbers: int, max_visits_per_client: int) -> int:
    """The default cap of live visits per network: a quarter of the pool's numbers,
    never fewer than one client may hold."""
    return max(max_visits_per_client, math.ceil(numbers / 4))


class MemoryVisitPool:
    """One number pool in memory: visits live while kept alive and ``hold_seconds`` after.

    A visit with no number (pool exhausted) shows ``fallback`` (none: the page keeps its
    own number) and stays so.  A client holds at most ``max_visits_per_client`` live
    visits, and the clients of one network (`network_of`: an IPv4 /24, an
    IPv6 /48) at most ``max_visits_per_network`` together (None: `network_cap`);
    a visit beyond either is refused (`TooManyVisits`: the page keeps its own
    number) and counted in ``capped_visits``.  With ``static_number_for_bots``, a
    visit the API took for a bot (`start`'s ``bot``) gets the fallback answer and
    no number; nothing is kept of it (its keep-alive is a 404) and it is counted
    in ``bot_visits``.  The last number of each of the ``remembered_visitors``
    most recent visitors is kept for their return.
    """

    def __init__(
        self,
        numbers: Sequence[str],
        *,
        fallback: str | None,
        name: str = "default",
        region: str = "RU",
        hold_seconds: float = 1800.0,
        quarantine_seconds: float = 0.0,
        max_visits_per_client: int = 5,
        max_visits_per_network: int | None = None,
        static_number_for_bots: bool = True,
        remembered_visitors: int = 10_000,
        clock: Clock = utc_now,
    ) -> None:
        if max_visits_per_network is None:
            max_visits_per_network = network_cap(len(numbers), max_visits_per_client)
        if min(max_visits_per_client, max_visits_per_network, remembered_visitors) < 1:
            raise ValueError("the caps and remembered_visitors must be positive")
        self.allocator = PoolAllocator(
            numbers, hold_seconds=hold_seconds, quarantine_seconds=quarantine_seconds
        )
        self.name = name
        self.fallback = fallback
        self.region = region
        self.max_visits_per_client = max_visits_per_client
        self.max_visits_per_network = max_visits_per_network
        self.static_number_for_bots = static_number_for_bots
        self.capped_visits = 0
        self.bot_visits = 0
        self._remembered = remembered_visitors
        self._clock = clock
        self._visits: OrderedDict[str, LiveVisit] = OrderedDict()
        self._by_visitor: dict[str, str] = {}
        self._per_client: Counter[str] = Counter()
        self._per_network: Counter[str] = Counter()
        self._last_number: OrderedDict[str, str] = OrderedDict()
        self._displays: dict[str | None, str] = {}

    @property
    def live_visits(self) -> int:
        return len(self._visits)

    def holds(self, visit_id: str) -> bool:
        """The visit is live in this pool's memory (as of the last request)."""
        return visit_id in self._visits

    async def start(self, request: VisitStart, client: str, *, bot: bool = False) -> VisitAnswer:
        now = self._tick()
        if request.pool is not None and request.pool != self.name:
            raise UnknownPool(request.pool)
        if bot and self.static_number_for_bots:
            return self._bot_answer()
        resumed = self._resume(request.visitor_id, client, now)
        if resumed is not None:
            return self._answer(resumed)
        network = self._check_caps(client)
        visit_id = secrets.token_urlsafe(16)
        previous = self._last_number.get(request.visitor_id) if request.visitor_id else None
        assignment = self.allocator.assign(visit_id, now, previous)
        visit = LiveVisit(visit_id, client, network, request.visitor_id, assignment.number, now)
        self._add(visit)
        log.debug(
            "attribution.visit_started", visit_id=visit_id, number=visit.number, client=client
        )
        return self._answer(visit)

    async def keep_alive(self, visit_id: str, client: str) -> KeepAliveAnswer | None:
        now = self._tick()
        visit = self._visits.get(visit_id)
        if visit is None:
            return None
        if visit.number is not None and self.allocator.keep_alive(visit_id, now) is None:
            self._drop(visit)
            return None
        self._touch(visit, now)
        return KeepAliveAnswer(
            visit_id=visit_id,
            number=visit.number,
            display=self._display(visit.number),
            expires_in=self._hold_seconds,
        )

    # internals

    @property
    def _hold_seconds(self) -> int:
        return int(self.allocator.hold.total_seconds())

    def _tick(self) -> datetime:
        """The time now; ends the visits whose hold ran out."""
        now = self._clock()
        self._leases_ended(self.allocator.expire(now))
        while self._visits:
            oldest = next(iter(self._visits.values()))
            if oldest.last_seen + self.allocator.hold > now:
                break
            self._drop(oldest)
        return now

    def _leases_ended(self, leases: list[Lease]) -> None:
        """The allocator ended these leases (hold run out): nothing to keep in memory."""

    def _check_caps(self, client: str) -> str:
        """The client's network; `TooManyVisits` when the client or its network already
        holds as many live visits as it may."""
        network = network_of(client)
        if (
            self._per_client[client] >= self.max_visits_per_client
            or self._per_network[network] >= self.max_visits_per_network
        ):
            self.capped_visits += 1
            raise TooManyVisits(retry_after=self._hold_seconds)
        return network

    def _bot_answer(self) -> VisitAnswer:
        """The fallback answer for a bot: the page keeps the site's number."""
        self.bot_visits += 1
        return VisitAnswer(
            visit_id=secrets.token_urlsafe(16),
            number=None,
            display=self._display(None),
            fallback=True,
            keep_alive_seconds=max(5, self._hold_seconds // 3),
        )

    def _resume(self, visitor_id: str | None, client: str, now: datetime) -> LiveVisit | None:
        """The visitor's live visit, from wherever they ask now: the visitor id is a
        secret of their browser, and a phone that moves from Wi-Fi to mobile data must
        keep the number on its page (the visit then counts for the new address)."""
        visit = self._visits.get(self._by_visitor.get(visitor_id, "")) if visitor_id else None
        if visit is None:
            return None
        if visit.client != client:
            self._count(visit, -1)
            visit.client, visit.network = client, network_of(client)
            self._count(visit, +1)
        if visit.number is not None:
            self.allocator.assign(visit.visit_id, now)
        self._touch(visit, now)
        return visit

    def _count(self, visit: LiveVisit, change: int) -> None:
        """Count the visit (+1) or no more (-1) for its client and its network."""
        per_client, per_network = self._per_client, self._per_network
        left = per_client[visit.client] = per_client[visit.client] + change
        if left <= 0:
            del per_client[visit.client]
        left = per_network[visit.network] = per_network[visit.network] + change
        if left <= 0:
            del per_network[visit.network]

    def _add(self, visit: LiveVisit) -> None:
        self._visits[visit.visit_id] = visit
        self._count(visit, +1)
        if visit.visitor_id is None:
            return
        self._by_visitor[visit.visitor_id] = visit.visit_id
        if visit.number is not None:
            self._last_number[visit.visitor_id] = visit.number
            self._last_number.move_to_end(visit.visitor_id)
            while len(self._last_number) > self._remembered:
                self._last_number.popitem(last=False)

    def _touch(self, visit: LiveVisit, now: datetime) -> None:
        visit.last_seen = max(now, visit.last_seen)
        self._visits.move_to_end(visit.visit_id)

    def _drop(self, visit: LiveVisit) -> None:
        del self._visits[visit.visit_id]
        self._count(visit, -1)
        if visit.visitor_id and self._by_visitor.get(visit.visitor_id) == visit.visit_id:
            del self._by_visitor[visit.visitor_id]

    def _display(self, number: str | None) -> str:
        """``number`` (None: the fallback) formatted for people; remembered per number,
        as formatting costs more than the rest of a request's decision."""
        shown = self._displays.get(number)
        if shown is None:
            shown = self._displays[number] = display_number(number or self.fallback, self.region)
        return shown

    def _answer(self, visit: LiveVisit) -> VisitAnswer:
        return VisitAnswer(
            visit_id=visit.visit_id,
            number=visit.number,
            display=self._display(visit.number),
            fallback=visit.number is None,
            keep_alive_seconds=max(5, self._hold_seconds // 3),
        )
