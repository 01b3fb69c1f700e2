"""Who a rung channel reaches, and the ring attempt (`Leg`) it starts.

A channel reaches a manager's device (the topology knows the phone), a
manager's external number (its dial string), or whoever the Local channels that
dialled it ring; else someone nobody declared.  It is decided once, when first
needed, and kept on the channel.
"""

from __future__ import annotations

from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.state import Channel, Leg
from pbx_tracker.calls.switchboard import Switchboard
from pbx_tracker.calls.topology import VIA_DEVICE, Reach, Topology, local_target

__all__ = ["new_leg", "reach_of"]


def reach_of(channel: Channel, topology: Topology, board: Switchboard) -> Reach:
    """Who a channel reaches: a manager's device or number, or someone undeclared."""
    if channel.reach is None:
        channel.reach = _find_reach(channel, topology, board)
    return channel.reach


def _find_reach(channel: Channel, topology: Topology, board: Switchboard) -> Reach:
    if channel.manager is not None:
        return Reach(channel.manager, VIA_DEVICE)
    reach = topology.reach_of_number(channel.dial_string or "")
    if reach is not None:
        return reach
    for local in board.dialling_locals(channel):
        target = local_target(local.name)
        reach = topology.reach_of_local(target) if target else None
        if reach is not None:
            return reach
    return Reach(None, VIA_DEVICE)


def new_leg(dest: Channel, event: AmiEvent, topology: Topology, board: Switchboard) -> Leg:
    """The ring attempt of a channel a `DialBegin` (or `AgentCalled`) rang."""
    reach = reach_of(dest, topology, board)
    locals_ = list(board.dialling_locals(dest))
    queue = dest.queue or next((local.queue for local in locals_ if local.queue), None)
    return Leg(
        dest.uniqueid,
        dest.name,
        reach.manager,
        event.time,
        queue=queue,
        dialed=_dialed_number(event),
        via=reach.via,
        number=reach.number,
        caller_dest=(locals_[-1] if locals_ else dest).uniqueid,
    )


def _dialed_number(event: AmiEvent) -> str | None:
    exten = event.get("DestExten")
    if exten and exten != "s":
        return exten
    dial_string = event.get("DialString")
    return dial_string.rsplit("/", 1)[-1] or None if dial_string else None
