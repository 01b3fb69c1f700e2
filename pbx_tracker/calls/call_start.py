"""How a call starts: its direction and first facts, from the channel that started it.

A call rooted at a Local channel is outbound (an Originate starts with one);
a channel in an inbound context starts an inbound call; a manager's phone
starts an outbound one.  A root channel first met late (the call began before
we were listening) starts an inbound call unless it is a manager's phone or a
Local channel outside the inbound contexts, and the call is marked incomplete.
"""

from __future__ import annotations

from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.records import Direction
from pbx_tracker.calls.state import Call, Channel, uniqueid_epoch
from pbx_tracker.calls.topology import Topology

__all__ = ["known_caller_id", "start_call"]


def start_call(
    channel: Channel, event: AmiEvent, topology: Topology, *, late: bool = False
) -> Call | None:
    """The call ``channel`` starts, None when it starts none we track."""
    direction = _direction(channel, event, topology, late=late)
    if direction is None:
        return None
    started = event.time
    if late:
        started = min(uniqueid_epoch(channel.uniqueid) or started, started)
    call = Call(
        linkedid=channel.linkedid,
        root=channel.uniqueid,
        root_channel=channel.name,
        direction=direction,
        started_at=started,
        complete=not late,
    )
    call.channels.add(channel.uniqueid)
    call.placed_by = channel.manager
    if direction is Direction.INBOUND:
        call.did = event.get("Exten") or None
        call.caller = known_caller_id(event.get("CallerIDNum"))
        call.caller_name = known_caller_id(event.get("CallerIDName"))
    return call


def _direction(
    channel: Channel, event: AmiEvent, topology: Topology, *, late: bool
) -> Direction | None:
    if channel.is_local and not late:
        return Direction.OUTBOUND
    if topology.is_inbound_context(event.get("Context")):
        return Direction.INBOUND
    if channel.manager is not None or channel.is_local:
        return Direction.OUTBOUND
    if late:
        return Direction.INBOUND
    return None


def known_caller_id(value: str) -> str | None:
    """A CallerID number or name, None when Asterisk says it is unknown."""
    value = value.strip()
    return None if not value or value.lower() in {"<unknown>", "unknown"} else value
