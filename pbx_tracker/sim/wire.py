"""The AMI wire format exactly as Asterisk writes it.

The banner line `Asterisk Call Manager/13.0.0`, `Key: Value` lines ended by
CRLF, a blank line after every message, the ActionID echoed on every response
(and on every event of an EventList).
"""

from __future__ import annotations

from collections.abc import Mapping

BANNER = b"Asterisk Call Manager/13.0.0\r\n"
Fields = list[tuple[str, str]]


def encode_message(message: Mapping[str, str], timestamp: float | None = None) -> bytes:
    """One AMI message as bytes; `_ts` is dropped, multi-line values become repeated headers.

    With `timestamp`, events get `Timestamp: <epoch>` where Asterisk puts it
    (`timestampevents = yes`): after `Event` and `Privilege`.
    """
    lines: list[str] = []
    stamp_after = "Privilege" if "Privilege" in message else "Event"
    stamp = timestamp is not None and "Event" in message and "Timestamp" not in message
    for key, value in message.items():
        if key == "_ts":
            continue
        lines.extend(f"{key}: {part}\r\n" for part in value.split("\n"))
        if stamp and key == stamp_after:
            lines.append(f"Timestamp: {timestamp:.6f}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")


def frame(fields: Fields) -> bytes:
    """One message of `fields` in their order."""
    return "".join(f"{key}: {value}\r\n" for key, value in fields).encode("utf-8") + b"\r\n"


def response(action: Mapping[str, str], answer: str, rest: Fields) -> bytes:
    """`Response: <answer>`, the action's ActionID if it had one, then `rest`."""
    return frame([("Response", answer), *with_action_id(action), *rest])


def event_list(action: Mapping[str, str], what: str, items: list[Fields], name: str) -> bytes:
    """An EventList answer: the start response, the items, `<name>Complete`.

    Each item's first field (its `Event`) is followed by the action's ActionID.
    """
    action_id = with_action_id(action)
    start = [("EventList", "start"), ("Message", f"{what} will follow")]
    parts = [frame([("Response", "Success"), *action_id, *start])]
    parts += [frame([item[0], *action_id, *item[1:]]) for item in items]
    complete = [("EventList", "Complete"), ("ListItems", str(len(items)))]
    parts.append(frame([("Event", f"{name}Complete"), *action_id, *complete]))
    return b"".join(parts)


def with_action_id(action: Mapping[str, str]) -> Fields:
    """`[("ActionID", ...)]` of the action, or nothing when it had none."""
    action_id = header(action, "ActionID")
    return [("ActionID", action_id)] if action_id else []


def header(action: Mapping[str, str], name: str) -> str:
    """The value of header `name` (any case) of an action; empty when absent."""
    wanted = name.lower()
    for key, value in action.items():
        if key.lower() == wanted:
            return value
    return ""
