"""One CEL record as cel_custom writes it, and the channel snapshot it reads.

A record is the line the shipped mapping writes (20 double-quoted columns,
config/asterisk/cel_custom_pbx_tracker.conf; read back by `pbx_tracker.cel.log`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass

AMA_FLAGS = "3"  # DOCUMENTATION, Asterisk's default
UNKNOWN = "<unknown>"  # how AMI shows an empty caller ID
_COMPACT = (",", ":")  # jansson's compact dump, UTF-8 as it is
_FIELDS = {
    "Channel": "name",
    "ChannelState": "state",
    "CallerIDName": "cid_name",
    "CallerIDNum": "cid_num",
    "Context": "context",
    "Exten": "exten",
    "AccountCode": "account",
    "Linkedid": "linkedid",
}
Message = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What CEL reads of a channel at one moment (Asterisk's channel snapshot)."""

    uniqueid: str
    linkedid: str
    name: str = ""
    state: str = ""
    cid_name: str = ""
    cid_num: str = ""
    ani: str = ""
    context: str = ""
    exten: str = ""
    account: str = ""
    app: str = ""
    data: str = ""


def snapshot_fields(message: Message, prefix: str = "") -> dict[str, str]:
    """The snapshot columns an AMI message shows of the channel whose headers start ``prefix``."""
    changes: dict[str, str] = {}
    for header, name in _FIELDS.items():
        value = message.get(prefix + header)
        if value is not None:
            changes[name] = "" if value == UNKNOWN and name.startswith("cid") else value
    return changes


@dataclass(frozen=True, slots=True)
class CelRecord:
    """One CEL record: its event, time, the channel's snapshot and the event's own columns."""

    event: str
    time: float
    channel: Snapshot
    peer: str = ""
    userdeftype: str = ""
    extra: Mapping[str, object] | None = None

    def columns(self) -> list[str]:
        """The 20 columns of the shipped cel_custom mapping, in order."""
        c = self.channel
        extra = ""
        if self.extra is not None:
            extra = json.dumps(self.extra, separators=_COMPACT, ensure_ascii=False)
        return [
            *(self.event, format_time(self.time), c.cid_name, c.cid_num, c.ani, "", ""),
            *(c.exten, c.context, c.name, c.app, c.data, AMA_FLAGS, c.account),
            *(c.uniqueid, c.linkedid, self.peer, "", self.userdeftype, extra),
        ]

    def line(self) -> str:
        """The record as cel_custom writes it (``CSV_QUOTE`` on every column), no newline."""
        out = io.StringIO()
        csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="").writerow(self.columns())
        return out.getvalue()


def format_time(moment: float) -> str:
    """``<epoch>.<6-digit microseconds>``, cel.conf without a dateformat."""
    micro = round(moment * 1_000_000)
    return f"{micro // 1_000_000}.{micro % 1_000_000:06d}"
