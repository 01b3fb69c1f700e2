"""Who the caller is talking to: the first answer, talk time, the wait between
parties after it, and transfers to someone else.

The correlator works out which channel the caller is bridged with whenever a
bridge changes; these functions write what that means on the `Call`.
"""

from __future__ import annotations

from pbx_tracker.calls.state import Call, Channel
from pbx_tracker.calls.topology import VIA_NUMBER, Reach, device_of

__all__ = ["connect", "connect_outbound", "disconnect"]


def connect(call: Call, channel: Channel, reach: Reach, time: float, *, swap: bool) -> None:
    """The caller is now talking to ``channel``, which reaches ``reach``.

    ``swap``: the channel took another's place in a bridge (Local channels optimised
    away): a moment without a person just before it is no pause in the talk.
    """
    number = reach.number if reach.via == VIA_NUMBER else None
    if reach.manager is None and number is None:
        number = device_of(channel.name)  # a phone nobody declared: name the device
    party = (reach.manager, None if reach.manager else number)
    disconnect(call, time)
    if call.answered_at is None:
        call.answered_at, call.answered_by = time, reach.manager
        call.answered_via, call.answered_number = reach.via, number
    elif call.disconnected_at is not None:
        gap = max(0.0, time - call.disconnected_at)
        if swap and party == call.connected_party:
            call.talk += gap  # the same conversation, its channels swapped
        else:
            call.transfer_wait += gap
    if call.connected_party is not None and party != call.connected_party:
        call.transferred_to = reach.manager
    call.connected_party = party
    call.connected_to, call.connected_since = channel.uniqueid, time
    leg = call.legs.get(channel.uniqueid)
    if leg is not None:
        leg.connected = True


def disconnect(call: Call, time: float) -> None:
    """The caller talks to nobody now: the talk so far is counted."""
    if call.connected_since is not None:
        call.talk += max(0.0, time - call.connected_since)
        call.disconnected_at = time
    call.connected_to, call.connected_since = None, None


def connect_outbound(call: Call, customer_leg: str | None, time: float) -> None:
    """A manager's call: talking while the customer's leg is bridged with them."""
    if customer_leg is None:
        disconnect(call, time)
        return
    if call.answered_at is None:
        call.answered_at = time
        leg = call.legs.get(customer_leg)
        if leg is not None:
            leg.end(time, "ANSWER")
    call.answered_by = call.answered_by or call.placed_by
    if call.connected_since is None:
        call.connected_to, call.connected_since = customer_leg, time
