"""The calls going on now, as a supervisor's board shows them: who is calling, since
when they wait, in which queue, which managers' phones ring, who talks to them.

`live_call` reads a `Call` the correlator is still following; nothing here
changes it.  A caller *waits* while nobody is connected to them (ringing,
queued, between a hang-up of the manager and a transfer) and they are not in
voicemail; their wait runs from the call's start, or from the moment the last
party left them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbx_tracker.calls.offers import QUEUE
from pbx_tracker.calls.records import Direction
from pbx_tracker.calls.state import Call

__all__ = ["LiveCall", "live_call"]


@dataclass(frozen=True, slots=True)
class LiveCall:
    """One call in progress.  ``talking_to``: the manager's extension (or the number
    reached) connected to the caller now; ``waiting_since``: None while connected."""

    linkedid: str
    direction: Direction
    caller: str | None
    caller_name: str | None
    did: str | None
    source: str | None  # TRACK_SOURCE as the dialplan (or the router) set it
    started_at: float
    waiting_since: float | None
    queue: str | None
    ringing: tuple[str, ...]  # managers whose phones ring for it now
    talking_to: str | None
    talking_since: float | None
    at_voicemail: bool


def live_call(call: Call) -> LiveCall:
    """What a board shows of ``call`` now."""
    party = call.connected_party
    talking_to = None if party is None or call.connected_since is None else party[0] or party[1]
    inbound = call.direction is Direction.INBOUND
    if not inbound:  # a manager's own call: the manager talks while the customer is on
        talking_to = None if call.connected_since is None else call.placed_by
    waiting = inbound and call.connected_since is None and call.voicemail_at is None
    stint = call.last_offer(QUEUE)
    ringing = {
        leg.manager
        for leg in call.legs.values()
        if leg.manager is not None and leg.ended_at is None and not leg.connected
    }
    return LiveCall(
        linkedid=call.linkedid,
        direction=call.direction,
        caller=call.caller if inbound else call.customer,
        caller_name=call.caller_name,
        did=call.did,
        source=call.variables.get("TRACK_SOURCE"),
        started_at=call.started_at,
        waiting_since=(call.disconnected_at or call.started_at) if waiting else None,
        queue=stint.queue if stint is not None and stint.ended_at is None else None,
        ringing=tuple(sorted(ringing)),
        talking_to=talking_to,
        talking_since=call.connected_since,
        at_voicemail=call.voicemail_at is not None,
    )
