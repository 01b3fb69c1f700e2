"""What a supervisor's board reads of the calls going on now (`Correlator.live_calls`),
from captured traffic of a real Asterisk cut at moments of the call."""

from __future__ import annotations

from pathlib import Path

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.live import LiveCall
from pbx_tracker.config import load_settings
from pbx_tracker.replay import topology_of
from traces import TRACES

FREEPBX = TRACES / "freepbx"


def _until(
    stem: str, event: str, nth: int = 1, *, folder: Path = TRACES, **fields: str
) -> tuple[list[LiveCall], list[AmiEvent]]:
    """The live calls just after the ``nth`` ``event`` (with those ``fields``) of the
    capture, and its events; a FreePBX capture (``folder``) on its own topology."""
    events = list(read_capture(folder / f"{stem}.jsonl"))
    topology = topology_of(load_settings(folder / "pbx-tracker.yaml", environ={}))
    seen = 0
    correlator = Correlator(topology)
    for index, item in enumerate(events):
        correlator.feed(item)
        seen += item.name == event and all(
            item.get(key).startswith(value) for key, value in fields.items()
        )
        if seen == nth:
            return correlator.live_calls(), events[index + 1 :]
    raise AssertionError(f"{stem} has no {nth} {event}")


def test_a_queued_caller_is_shown_waiting_in_the_queue_with_the_phone_that_rings() -> None:
    """While the sales queue rings 101, the caller waits in "sales" and 101 is ringing."""
    (call,), _ = _until("07_queue_answered", "AgentCalled")
    assert call.queue == "sales"
    assert call.ringing == ("101",)
    assert call.waiting_since == call.started_at
    assert call.talking_to is None
    assert call.caller is not None and call.did is not None


def test_an_answered_caller_talks_to_the_manager_and_no_longer_waits() -> None:
    """Once 102 picks the queue call up, the caller talks to 102 since then and waits no more."""
    live, _ = _until("07_queue_answered", "BridgeEnter", nth=2)
    (call,) = live
    assert (call.talking_to, call.waiting_since, call.queue) == ("102", None, None)
    assert call.talking_since is not None and call.talking_since >= call.started_at
    assert call.ringing == ()


def test_two_concurrent_callers_are_listed_oldest_first() -> None:
    """Two callers at once are two lines, the one who called first on top."""
    live, _ = _until("11_concurrent", "DialBegin", nth=2)
    assert len(live) == 2
    assert live[0].started_at <= live[1].started_at
    assert len({call.caller for call in live}) == 2


def test_a_finished_call_leaves_the_live_list() -> None:
    """After the last hang-up nothing is shown as going on."""
    correlator = Correlator()
    correlator.feed_all(read_capture(TRACES / "01_answered_simple.jsonl"))
    assert correlator.live_calls() == []


def test_a_freepbx_ring_group_rings_every_phone_through_its_local_channels() -> None:
    """FreePBX rings 101, 102 and 103 through Local channels: the caller waits and all three
    phones (not the Local halves) are shown ringing."""
    (call,), _ = _until("f01_ivr_ringgroup", "DialBegin", folder=FREEPBX, DestChannel="IAX2/103")
    assert call.ringing == ("101", "102", "103")
    assert call.talking_to is None and call.waiting_since is not None


def test_a_freepbx_ring_group_answered_by_one_stops_the_others_ringing() -> None:
    """Once the caller is bridged with 102, the caller talks to 102 and nobody rings any more."""
    # the last of the bridges: Local;2 of 102 joins 102's phone once the caller is with ;1
    (call,), _ = _until("f01_ivr_ringgroup", "BridgeEnter", 2, folder=FREEPBX, Channel="Local/102")
    assert (call.talking_to, call.waiting_since, call.ringing) == ("102", None, ())
