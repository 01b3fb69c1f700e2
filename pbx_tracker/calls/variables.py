"""What the dialplan's channel variables tell about a call: the tracked number
(the topology's DID variable), the recording file, the variables kept on the
record (``TRACK_*``, ``CALLBACK_*``, ``ROUTE_*``) and, on the caller's own
channel, how a Dial (``DIALSTATUS``) or a queue (``QUEUESTATUS``) ended.
"""

from __future__ import annotations

from pbx_tracker.calls.events import AmiEvent, channel_variables
from pbx_tracker.calls.offers import dial_status, queue_status
from pbx_tracker.calls.records import Direction
from pbx_tracker.calls.state import Call

__all__ = ["KEPT_VARIABLE_PREFIXES", "apply_variable", "apply_variables"]

KEPT_VARIABLE_PREFIXES = ("TRACK_", "CALLBACK_", "ROUTE_")


def apply_variables(call: Call, event: AmiEvent, did_variable: str) -> None:
    """Every ``ChanVariable`` a channel event carries."""
    for name, value in channel_variables(event.fields).items():
        apply_variable(call, event, name.lstrip("_"), value, did_variable)


def apply_variable(call: Call, event: AmiEvent, name: str, value: str, did_variable: str) -> None:
    """One variable of the event's channel (``name`` without its inheritance underscores)."""
    on_root = event.get("Uniqueid") == call.root
    is_did = name == did_variable and call.direction is Direction.INBOUND
    if is_did and value and (on_root or not call.did_from_variable):
        call.did, call.did_from_variable = value, True
    if name == "MIXMONITOR_FILENAME" and value and (on_root or call.recording is None):
        call.recording = value
    if name.startswith(KEPT_VARIABLE_PREFIXES) and value:
        call.variables[name] = value
    if not on_root:
        return
    if name == "DIALSTATUS":
        dial_status(call.offers, value, event.time)
    elif name == "QUEUESTATUS" and value:
        queue_status(call.offers, value, event.time, call.queue)
