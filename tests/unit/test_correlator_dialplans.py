"""Traffic from other dialplans: Local channels, transfers, voicemail, late starts, gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.records import CallRecord

TRACES = Path(__file__).parents[1] / "data" / "asterisk-traces"
ROOT = "1700000000.1"


class Pbx:
    """Builds AMI events for one call rooted at a PJSIP trunk channel."""

    def __init__(self) -> None:
        self.correlator = Correlator()
        self.records: list[CallRecord] = []
        self.names: dict[str, str] = {}
        self.time = 1_700_000_000.0

    def send(self, event: str, uniqueid: str = "", at: float = 0.0, **fields: str) -> None:
        self.time += at
        data = {"Event": event, **fields}
        if uniqueid:
            data.update(Channel=self.names[uniqueid], Uniqueid=uniqueid, Linkedid=ROOT)
        self.records += self.correlator.feed(AmiEvent(data, self.time))

    def channel(self, uniqueid: str, name: str, context: str = "default", exten: str = "s") -> None:
        self.names[uniqueid] = name
        self.send("Newchannel", uniqueid, Context=context, Exten=exten, CallerIDNum="79160000009")

    def dial(self, src: str, dest: str, status: str | None = None, at: float = 0.0) -> None:
        fields = {"DestChannel": self.names[dest], "DestUniqueid": dest, "DestLinkedid": ROOT}
        self.send(
            "DialBegin" if status is None else "DialEnd", src, at, DialStatus=status or "", **fields
        )

    def bridge(self, bridge: str, *members: str, leave: bool = False) -> None:
        for uniqueid in members:
            self.send("BridgeLeave" if leave else "BridgeEnter", uniqueid, BridgeUniqueid=bridge)

    def hangup(self, uniqueid: str, at: float = 0.0, cause: str = "16") -> None:
        self.send("Hangup", uniqueid, at, Cause=cause)

    def ring(self, src: str, uniqueid: str, name: str, answer_after: float, bridge: str) -> None:
        """`src` dials a phone that answers after `answer_after` s and is bridged with `src`."""
        self.channel(uniqueid, name)
        self.dial(src, uniqueid)
        self.dial(src, uniqueid, "ANSWER", at=answer_after)
        self.bridge(bridge, uniqueid, src)

    def start(self) -> None:
        self.channel(ROOT, "PJSIP/trunk-00000001", context="from-trunk", exten="74951110001")


def test_manager_reached_through_local_channels_answers_the_call() -> None:
    """Caller ↔ Local;1, Local;2 ↔ PJSIP/101: one answered call by 101, Local legs not attempts."""
    pbx = Pbx()
    pbx.start()
    pbx.channel("1700000000.2", "Local/101@from-queue-00000001;1")
    pbx.channel("1700000000.3", "Local/101@from-queue-00000001;2")
    pbx.send(
        "LocalBridge",
        LocalOneUniqueid="1700000000.2",
        LocalTwoUniqueid="1700000000.3",
        LocalOneChannel="Local/101@from-queue-00000001;1",
        LocalTwoChannel="Local/101@from-queue-00000001;2",
    )
    pbx.dial(ROOT, "1700000000.2")
    pbx.channel("1700000000.4", "PJSIP/101-00000002")
    pbx.dial("1700000000.3", "1700000000.4")
    pbx.dial("1700000000.3", "1700000000.4", "ANSWER", at=4)
    pbx.dial(ROOT, "1700000000.2", "ANSWER")
    pbx.bridge("b2", "1700000000.3", "1700000000.4")
    pbx.bridge("b1", "1700000000.2", ROOT)
    pbx.hangup(ROOT, at=30)
    (record,) = pbx.records
    assert (record.status, record.answered_by) == ("answered", "101")
    assert [a.manager for a in record.attempts] == ["101"]
    assert abs(record.ring_seconds - 4) <= 1 and abs(record.talk_seconds - 30) <= 1


def test_voicemail_behind_a_local_channel_is_a_missed_call() -> None:
    """Asterisk answered (voicemail picked up) but no manager talked: missed, no answer."""
    pbx = Pbx()
    pbx.start()
    pbx.channel("1700000000.4", "PJSIP/101-00000002")
    pbx.dial(ROOT, "1700000000.4")
    pbx.dial(ROOT, "1700000000.4", "NOANSWER", at=20)
    pbx.hangup("1700000000.4")
    pbx.send("Newstate", ROOT, ChannelStateDesc="Up")
    pbx.send("Newexten", ROOT, Application="VoiceMail", AppData="101@default")
    pbx.hangup(ROOT, at=40)
    (record,) = pbx.records
    assert (record.status, record.missed_reason) == ("missed", "no_answer")
    assert abs(record.ring_seconds - 20) <= 1


def test_blind_transfer_records_who_took_the_caller_last() -> None:
    """101 answers and blind-transfers to 102: answered by 101, transferred to 102, one call."""
    pbx = Pbx()
    pbx.start()
    pbx.ring(ROOT, "1700000000.4", "PJSIP/101-00000002", answer_after=3, bridge="b1")
    pbx.send("BlindTransfer", "1700000000.4", at=10, Extension="102", Result="Success")
    pbx.bridge("b1", ROOT, leave=True)
    pbx.hangup("1700000000.4")
    pbx.ring(ROOT, "1700000000.5", "PJSIP/102-00000003", answer_after=5, bridge="b2")
    pbx.hangup(ROOT, at=20)
    (record,) = pbx.records
    assert (record.answered_by, record.transferred_to) == ("101", "102")
    assert abs(record.talk_seconds - 30) <= 1
    assert [a.manager for a in record.attempts] == ["101", "102"]


def test_attended_transfer_through_a_local_channel_counts_once() -> None:
    """101 consults 102 over a Local channel, then hands the caller over: one answered call."""
    pbx = Pbx()
    pbx.start()
    pbx.ring(ROOT, "1700000000.4", "PJSIP/101-00000002", answer_after=2, bridge="b1")
    pbx.channel("1700000000.6", "Local/102@internal-00000001;1")
    pbx.channel("1700000000.7", "Local/102@internal-00000001;2")
    pbx.channel("1700000000.8", "PJSIP/102-00000004")
    pbx.dial("1700000000.7", "1700000000.8", at=5)
    pbx.dial("1700000000.7", "1700000000.8", "ANSWER", at=3)
    pbx.bridge("b3", "1700000000.7", "1700000000.8")
    pbx.send("AttendedTransfer", "1700000000.4", at=5, Result="Success")
    pbx.bridge("b1", "1700000000.4", leave=True)
    pbx.bridge("b1", "1700000000.6")
    pbx.hangup("1700000000.4")
    pbx.hangup(ROOT, at=12)
    (record,) = pbx.records
    assert (record.status, record.answered_by, record.transferred_to) == ("answered", "101", "102")


def test_call_already_running_when_the_listener_connected_is_recorded() -> None:
    """Events start mid-call: the call is recorded when it ends, marked incomplete."""
    events = list(read_capture(TRACES / "01_answered_simple.jsonl"))
    start = next(i for i, e in enumerate(events) if e.name == "BridgeEnter")
    correlator = Correlator()
    records = correlator.feed_all(events[start:])
    (record,) = records
    assert (record.status, record.answered_by, record.complete) == ("answered", "101", False)
    assert record.started_at.isoformat().startswith("2026-11-22T11:51:53")


def test_call_that_ended_during_an_ami_gap_is_closed_as_incomplete() -> None:
    """After a reconnect, a call whose channels vanished is finished, not left hanging."""
    events = list(read_capture(TRACES / "01_answered_simple.jsonl"))
    cut = next(i for i, e in enumerate(events) if e.name == "BridgeEnter") + 2
    correlator = Correlator()
    correlator.feed_all(events[:cut])
    assert correlator.resync([], events[-1].time) != []
    assert correlator.calls_in_progress == 0
    later = correlator.feed_all(events[cut:])
    assert later == [], "the call must not be written twice"


@pytest.mark.parametrize("told_from_cel", [True, False])
def test_resync_keeps_calls_that_are_still_live(told_from_cel: bool) -> None:
    """A call still live after a reconnect is recorded when it ends; complete only when
    its gap was told from CEL (else what happened in the gap is unknown)."""
    events = list(read_capture(TRACES / "01_answered_simple.jsonl"))
    cut = next(i for i, e in enumerate(events) if e.name == "BridgeEnter") + 2
    correlator = Correlator()
    correlator.feed_all(events[:cut])
    live = [
        {
            "Uniqueid": "1795348313.0",
            "Linkedid": "1795348313.0",
            "Channel": "IAX2/carrier-1902",
            "BridgeId": "d8c7b53a-51ce-4d59-a7f0-3f76e26a0c67",
        },
        {
            "Uniqueid": "1795348313.1",
            "Linkedid": "1795348313.0",
            "Channel": "IAX2/101-11234",
            "BridgeId": "d8c7b53a-51ce-4d59-a7f0-3f76e26a0c67",
        },
    ]
    filled = ["1795348313.0"] if told_from_cel else []
    assert correlator.resync(live, events[cut].time, filled=filled) == []
    (record,) = correlator.feed_all(events[cut:])
    assert (record.answered_by, record.talk_seconds) == ("101", 3)
    assert record.complete is told_from_cel


def test_unknown_and_broken_events_change_nothing() -> None:
    """Lone, partial or unknown events (a Dial of channels never seen) are taken in quietly."""
    correlator = Correlator()
    junk = [
        {},
        {"Event": "Hangup"},
        {"Event": "DialEnd", "DestUniqueid": "x"},
        {"Event": "BridgeEnter", "Uniqueid": "1.1"},
        {"Event": "PeerStatus", "Peer": "IAX2/104"},
        {"Event": "VarSet", "Variable": "", "Value": "x", "Uniqueid": "9.9"},
        {"Event": "DialBegin", "Uniqueid": "2.1", "Channel": "PJSIP/x-1", "DestUniqueid": "2.2"},
        {"Event": "DialBegin", "DestUniqueid": "3.2", "DestChannel": "PJSIP/101-2"},
        {"Event": "AgentCalled", "Uniqueid": "4.1", "DestUniqueid": "4.2", "Queue": "400"},
        {"Event": "LocalBridge", "LocalOneUniqueid": "5.1", "LocalTwoUniqueid": "5.2"},
    ]
    for fields in junk:
        assert correlator.feed(AmiEvent(fields, 1.0)) == []
    assert correlator.events_failed == 0
