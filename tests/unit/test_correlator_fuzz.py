"""Random and mutated AMI traffic never makes the parser or the correlator raise."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx_tracker.ami.capture import parse_raw, read_capture
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.events import AmiEvent

TRACES = Path(__file__).parents[1] / "data" / "asterisk-traces"
TRACE = [e.fields for e in read_capture(TRACES / "11_concurrent.jsonl")]
KEYS = sorted({k for fields in TRACE for k in fields})
NAMES = sorted({fields.get("Event", "") for fields in TRACE})
VALUES = sorted({v for fields in TRACE for v in fields.values()})[:400]

header_values = st.one_of(st.sampled_from(VALUES), st.text(max_size=30))
messages = st.dictionaries(
    st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), header_values, max_size=12
).map(lambda d: {**d, "Event": d.get("Event") or "Newchannel"})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(messages, st.sampled_from(TRACE)), max_size=60))
def test_random_messages_never_raise(stream: list[dict[str, str]]) -> None:
    """Random AMI events in any order, followed by a resync, never crash the correlator, so one odd
    event cannot stop call tracking."""
    correlator = Correlator()
    for time, fields in enumerate(stream):
        correlator.feed(AmiEvent(fields, float(time)))
    correlator.resync([], 100.0)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mutated_trace_never_raises(data: st.DataObject) -> None:
    """Drop, duplicate, reorder and corrupt messages of a real capture."""
    stream = list(TRACE)
    for _ in range(data.draw(st.integers(0, 20))):
        i = data.draw(st.integers(0, len(stream) - 1))
        action = data.draw(st.sampled_from(["drop", "dup", "swap", "corrupt"]))
        if action == "drop":
            del stream[i]
        elif action == "dup":
            stream.insert(i, stream[i])
        elif action == "swap":
            j = data.draw(st.integers(0, len(stream) - 1))
            stream[i], stream[j] = stream[j], stream[i]
        else:
            key = data.draw(st.sampled_from(KEYS))
            stream[i] = {**stream[i], key: data.draw(header_values)}
    correlator = Correlator()
    records = correlator.feed_all(AmiEvent(f, float(t)) for t, f in enumerate(stream))
    assert len({r.linkedid for r in records}) == len(records), "a call recorded twice"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_raw_parser_takes_any_bytes(data: bytes) -> None:
    """Any bytes from the AMI socket parse into text fields without an exception."""
    for fields in parse_raw(data):
        assert all(isinstance(v, str) for v in fields.values())
