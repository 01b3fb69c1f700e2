"""Generated calls look exactly like the captured ones, with every identity rewritten."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from pbx_tracker.sim.call_template import KINDS
from pbx_tracker.sim.generated_day import generate_day
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import ExpectedCall, SimCall, make_call, merge
from pbx_tracker.sim.traces import trace_events

TRACES = Path(__file__).parents[1] / "data" / "asterisk-traces"
DIDS = [("74990000041", "vk-ads"), ("74990000042", "avito"), ("74990000043", "site")]
OUTCOMES = {
    "answered": ("answered", None),
    "no_answer": ("missed", "no_answer"),
    "abandoned": ("missed", "abandoned"),
    "busy": ("missed", "busy"),
    "ringgroup": ("answered", None),
    "queue": ("answered", None),
}
MANAGER_TOKEN = re.compile(r"(?<![\w.])101(?!\w)")


def template(kind: str) -> list[dict[str, str]]:
    return trace_events(TRACES / f"{KINDS[kind].file}.jsonl")


def call(kind: str, **options: object) -> SimCall:
    arguments: dict[str, object] = {
        "start": 100.0,
        "did": "74990000042",
        "caller": "79035550101",
        "caller_name": "Анна Смирнова",
        "source": "avito",
        "manager": "103",
        "ids": IdAllocator(),
    }
    arguments.update(options)
    return make_call(kind, **arguments)  # type: ignore[arg-type]


def events(sim: SimCall, name: str) -> list[dict[str, str]]:
    return [m for m in sim.messages if m.get("Event") == name]


def varset(sim: SimCall, variable: str) -> list[str]:
    return [m["Value"] for m in events(sim, "VarSet") if m["Variable"] == variable]


# -- shape --------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_call_has_the_template_events_and_headers_in_order(kind: str) -> None:
    """A simulated call of each kind sends the same AMI events with the same headers in the same
    order as the captured call it is made from."""
    original = template(kind)
    generated = call(kind).messages
    assert [m["Event"] for m in generated] == [m["Event"] for m in original]
    assert [list(m) for m in generated] == [list(m) for m in original]


def test_packaged_templates_are_the_captured_traces() -> None:
    """The call templates shipped in the package are byte for byte the captured traces in the
    tests."""
    folder = resources.files("pbx_tracker.sim") / "templates"
    for spec in KINDS.values():
        packaged = (folder / f"{spec.file}.jsonl").read_bytes()
        assert packaged == (TRACES / f"{spec.file}.jsonl").read_bytes(), spec.file


@pytest.mark.parametrize("kind", list(KINDS))
def test_messages_of_a_call_are_time_ordered_from_its_start(kind: str) -> None:
    """A simulated call's events come in time order starting at the requested moment, with
    microsecond timestamps as Asterisk writes them."""
    sim = call(kind, start=42.5)
    times = [float(m["_ts"]) for m in sim.messages]
    assert times == sorted(times)
    assert times[0] == 42.5 == sim.expected.start
    assert all(re.fullmatch(r"\d+\.\d{6}", m["_ts"]) for m in sim.messages)


# -- rewriting ----------------------------------------------------------------


def _identities(messages: list[dict[str, str]]) -> set[str]:
    keys = ("Uniqueid", "Linkedid", "DestUniqueid", "DestLinkedid", "UniqueID", "BridgeUniqueid")
    return {m[k] for m in messages for k in keys if m.get(k)}


@pytest.mark.parametrize("kind", list(KINDS))
def test_template_identity_appears_nowhere(kind: str) -> None:
    """No number, name, channel or id of the captured calls leaks into a simulated call, so demo
    data never shows a real customer."""
    original = template(kind)
    first = original[0]
    source = next(m["Value"] for m in original if m.get("Variable") == "__TRACK_SOURCE")
    channels = {m["Channel"] for m in original if m["Event"] == "Newchannel"}
    text = json.dumps(call(kind).messages, ensure_ascii=False)
    values = {v for m in call(kind).messages for v in m.values()}
    for token in (first["Exten"], first["CallerIDNum"], source, *_identities(original)):
        assert not re.search(rf"(?<![\w.]){re.escape(token)}(?!\w)", text), token
    for name in ("Ivan Petrov", "Мария Иванова"):
        assert name not in text
    assert not channels & values
    assert "1795348308" not in text  # queue members' LoginTime of the capture


@pytest.mark.parametrize("kind", ["answered", "no_answer"])
def test_single_leg_calls_ring_the_chosen_manager(kind: str) -> None:
    """A simulated call for manager 103 rings 103's phone and queue entry only, except the
    dialplan's fixed ring-all fallback."""
    sim = call(kind, manager="103")
    for message in sim.messages:
        for value in message.values():
            if MANAGER_TOKEN.search(value):  # only the dialplan's fixed fallback keeps 101
                assert "&" in value, (message["Event"], value)
    dial = events(sim, "DialBegin")[0]
    assert dial["DestChannel"].startswith("IAX2/103-")
    assert dial["DialString"] == "103/103"
    assert "IAX2/103/103" in varset(sim, "ROUTE_TO")
    members = {m["MemberName"] for m in events(sim, "QueueMemberStatus")}
    assert members == {"Manager 103"}


@pytest.mark.parametrize("kind", list(KINDS))
def test_did_caller_source_and_recording_are_consistent(kind: str) -> None:
    """A simulated call's tracked number, caller, source and recording file agree in every event,
    dialplan step and CDR."""
    sim = call(kind, did="74990000043", caller="79035550199", source="site")
    expected = sim.expected
    inbound = events(sim, "Newchannel")[0]
    assert (inbound["Exten"], inbound["CallerIDNum"]) == ("74990000043", "79035550199")
    assert set(varset(sim, "__TRACK_DID")) == {"74990000043"}
    assert set(varset(sim, "__TRACK_SOURCE")) == {"site"}
    assert set(varset(sim, "__TRACK_RECORDING")) == {f"{expected.linkedid}.wav"}
    assert varset(sim, "MIXMONITOR_FILENAME") == [expected.recording_path]
    assert expected.recording_path == f"/var/spool/asterisk/monitor/{expected.linkedid}.wav"
    appdata = {m["AppData"] for m in events(sim, "Newexten")}
    assert {"__TRACK_SOURCE=site", "CDR(userfield)=site", "__TRACK_DID=74990000043"} <= appdata
    assert "agi://127.0.0.1:4573/route,74990000043,79035550199" in appdata
    for cdr in events(sim, "Cdr"):
        assert (cdr["Source"], cdr["Destination"], cdr["UserField"]) == (
            "79035550199",
            "74990000043",
            "site",
        )


@pytest.mark.parametrize("name", ["Анна Смирнова", "John Smith", ""])
def test_caller_name_is_shown_wherever_the_caller_number_is(name: str) -> None:
    """The caller's name, Cyrillic, Latin or none, appears with the caller's number in every event
    and the CDR."""
    sim = call("ringgroup", caller_name=name)
    shown = name or "<unknown>"
    pairs = [("CallerIDNum", "CallerIDName"), ("ConnectedLineNum", "ConnectedLineName")]
    checked = 0
    for message in sim.messages:
        for prefix in ("", "Dest"):
            for number, label in pairs:
                if message.get(prefix + number) == "79035550101":
                    assert message[prefix + label] == shown
                    checked += 1
    assert checked > 50
    assert {m["CallerID"] for m in events(sim, "Cdr")} == {f'"{name}" <79035550101>'}


def test_every_channel_gets_a_fresh_uniqueid_epoch_and_name() -> None:
    """Each channel of a simulated call gets a new unique id from the call's moment and a fresh
    channel name, all linked to the call."""
    ids = IdAllocator(seed=9)
    sim = call("queue", start=3600.25, ids=ids)
    for new in events(sim, "Newchannel"):
        epoch, _, seq = new["Uniqueid"].partition(".")
        assert int(epoch) == int(ids.epoch + float(new["_ts"]))
        assert seq.isdigit()
        assert new["Linkedid"] == sim.expected.linkedid
    names = [m["Channel"] for m in events(sim, "Newchannel")]
    assert re.fullmatch(r"IAX2/carrier-\d+", names[0])
    assert [n.split("-")[0] for n in names[1:]] == ["IAX2/101", "IAX2/102"]


# -- outcomes and timing ------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_expected_outcome_matches_the_kind_and_the_events(kind: str) -> None:
    """The outcome a simulated call promises (answered by whom, or missed and why) is what its dial
    and bridge events show."""
    sim = call(kind)
    expected = sim.expected
    inbound = events(sim, "Newchannel")[0]
    assert (expected.linkedid, expected.did, expected.caller) == (
        inbound["Uniqueid"],
        inbound["Exten"],
        inbound["CallerIDNum"],
    )
    assert (expected.status, expected.missed_reason) == OUTCOMES[kind]
    assert expected.kind == kind
    statuses = [m["DialStatus"] for m in events(sim, "DialEnd")]
    if expected.status == "answered":
        answer = next(m for m in events(sim, "DialEnd") if m["DialStatus"] == "ANSWER")
        assert answer["DestChannel"].startswith(f"IAX2/{expected.answered_by}-")
        bridged = {m["Channel"] for m in events(sim, "BridgeEnter")}
        assert {answer["DestChannel"], inbound["Channel"]} == bridged
        assert expected.talk_seconds > 0
    else:
        assert expected.answered_by is None
        assert "ANSWER" not in statuses
        assert expected.talk_seconds == 0.0
    reason_status = {"no_answer": "NOANSWER", "abandoned": "CANCEL", "busy": "BUSY"}
    if expected.missed_reason:
        assert set(statuses) == {reason_status[expected.missed_reason]}


def test_expected_answerers_follow_the_readme() -> None:
    """A simulated call is answered by the chosen manager for the answered, ring group and queue
    kinds and by nobody for the missed kinds, as the traces' README says."""
    answered = {kind: call(kind, manager="102").expected.answered_by for kind in KINDS}
    assert answered == {
        "answered": "102",
        "no_answer": None,
        "abandoned": None,
        "busy": None,
        "ringgroup": "102",
        "queue": "102",
    }


def test_template_ring_and_talk_times_are_kept_by_default() -> None:
    """Without asking for other times a simulated call keeps the captured call's ring and talk
    seconds."""
    rounded = {kind: (round(e.ring_seconds), round(e.talk_seconds)) for kind, e in _all()}
    assert rounded == {
        "answered": (3, 3),
        "no_answer": (10, 0),
        "abandoned": (2, 0),
        "busy": (0, 0),
        "ringgroup": (3, 4),
        "queue": (8, 4),
    }


def _all() -> list[tuple[str, ExpectedCall]]:
    return [(kind, call(kind).expected) for kind in KINDS]


def test_ring_and_talk_stretch_every_reported_duration() -> None:
    """Asking for 7.5 s of ringing and 42 s of talk changes every duration Asterisk reports for the
    call, in variables and the CDR."""
    sim = call("answered", start=10.0, ring=7.5, talk=42.0)
    assert (sim.expected.ring_seconds, sim.expected.talk_seconds) == (7.5, 42.0)
    assert varset(sim, "ANSWEREDTIME")[-1] == "42"
    assert abs(int(varset(sim, "ANSWEREDTIME_MS")[-1]) - 42000) < 10
    assert varset(sim, "DIALEDTIME")[-1] in ("49", "50")
    (cdr,) = events(sim, "Cdr")
    assert cdr["BillableSeconds"] == "42"
    assert cdr["Duration"] in ("49", "50")
    start = datetime.strptime(cdr["StartTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    answer = datetime.strptime(cdr["AnswerTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert start.timestamp() == int(IdAllocator().epoch + 10.0)
    assert (answer - start).total_seconds() in (7, 8)


def test_queue_talk_time_reaches_the_queue_events() -> None:
    """A queue call's talk time reaches the queue's own events and the members' last-call time."""
    sim = call("queue", talk=30.0)
    assert sim.expected.talk_seconds == 30.0
    assert events(sim, "AgentComplete")[0]["TalkTime"] == "30"
    assert set(varset(sim, "QUEUETALKTIME")) == {"0", "30"}
    last_call = [m["LastCall"] for m in events(sim, "QueueMemberStatus") if m["LastCall"] != "0"]
    hangup = float(events(sim, "Hangup")[-1]["_ts"]) + IdAllocator().epoch
    assert {int(v) for v in last_call} == {int(hangup)}


def test_no_answer_ring_time_is_the_dial_timeout() -> None:
    """A missed call asked to ring 15 s is dialled with a 15 s timeout, set by the router over AGI,
    and its CDR shows 15 s."""
    sim = call("no_answer", manager="102", ring=15.0)
    assert abs(sim.expected.ring_seconds - 15.0) < 0.01
    dials = [m["AppData"] for m in events(sim, "Newexten") if m["Application"] == "Dial"]
    assert dials == ["IAX2/102/102,15,t"]
    assert varset(sim, "ROUTE_TIMEOUT") == ["20", "15"]
    commands = {m["Command"] for m in events(sim, "AGIExecStart")}
    assert 'SET VARIABLE ROUTE_TIMEOUT "15"' in commands
    (cdr,) = events(sim, "Cdr")
    assert (cdr["LastData"], cdr["Duration"]) == ("IAX2/102/102,15,t", "15")


def test_abandon_after_a_longer_ring() -> None:
    """A caller asked to hang up after 12 s of ringing hangs up 12 s after the call starts."""
    sim = call("abandoned", ring=12.0)
    assert sim.expected.ring_seconds == 12.0
    hangup = next(m for m in events(sim, "HangupRequest") if m["Channel"].startswith("IAX2/c"))
    assert float(hangup["_ts"]) - 100.0 == pytest.approx(12.0, abs=0.01)


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("busy", {"ring": 3.0}),
        ("queue", {"ring": 3.0}),
        ("busy", {"talk": 3.0}),
        ("no_answer", {"talk": 3.0}),
        ("answered", {"ring": 25.0}),
        ("answered", {"ring": 0.2}),
        ("ringgroup", {"talk": -1.0}),
        ("transfer", {}),
    ],
)
def test_impossible_calls_are_refused(kind: str, options: dict[str, object]) -> None:
    """The simulator refuses calls that cannot happen (ringing on a busy line, talk on a missed
    call, too long or too short a ring) with an error."""
    with pytest.raises(ValueError, match=r"ring|talk|unknown call kind"):
        call(kind, **options)


# -- a day --------------------------------------------------------------------


def test_a_day_of_calls_never_reuses_an_identifier() -> None:
    """A simulated day of 50 calls never reuses a unique id, channel, linked id or number between
    calls."""
    day = generate_day(50, dids=DIDS, seed=7)
    assert len(day) == 50
    uniqueids = [m["Uniqueid"] for c in day for m in c.messages if m["Event"] == "Newchannel"]
    channels = [m["Channel"] for c in day for m in c.messages if m["Event"] == "Newchannel"]
    assert len(set(uniqueids)) == len(uniqueids)
    assert len(set(channels)) == len(channels)
    assert len({c.expected.linkedid for c in day}) == 50
    seqs = [int(u.partition(".")[2]) for u in uniqueids]
    assert len(set(seqs)) == len(seqs)
    owners: dict[str, int] = {}
    for number, sim in enumerate(day):
        for identity in _identities(sim.messages):
            assert owners.setdefault(identity, number) == number, identity
        own = {m["Uniqueid"] for m in events(sim, "Newchannel")}
        assert {m["Linkedid"] for m in sim.messages if "Linkedid" in m} == {sim.expected.linkedid}
        assert {m["Uniqueid"] for m in sim.messages if "Uniqueid" in m} <= own


def test_a_day_mixes_kinds_scripts_and_overlaps() -> None:
    """A simulated day mixes every kind of call, mostly answered, with Cyrillic and Latin caller
    names, overlapping calls and only the configured numbers and sources."""
    day = generate_day(50, dids=DIDS, seed=7)
    kinds = [c.expected.kind for c in day]
    assert set(kinds) == set(KINDS)
    answered = sum(c.expected.status == "answered" for c in day)
    assert answered > 25
    assert {c.expected.missed_reason for c in day} == {None, "no_answer", "abandoned", "busy"}
    names = {m["CallerIDName"] for c in day for m in events(c, "Newchannel")[:1]}
    assert any(re.search("[\u0400-\u04ff]", n) for n in names)
    assert any(re.fullmatch("[A-Za-z ]+", n) for n in names)
    ends = [float(c.messages[-1]["_ts"]) for c in day]
    starts = [c.expected.start for c in day]
    assert any(starts[i + 1] < ends[i] for i in range(len(day) - 1))
    assert {c.expected.did for c in day} <= {d for d, _ in DIDS}
    assert all(dict(DIDS)[c.expected.did] == c.expected.source for c in day)


def test_a_day_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same simulated day and another seed a different one, so a demo can be
    replayed."""
    assert generate_day(20, dids=DIDS, seed=3) == generate_day(20, dids=DIDS, seed=3)
    assert generate_day(20, dids=DIDS, seed=3) != generate_day(20, dids=DIDS, seed=4)


def test_a_day_uses_the_given_epoch_and_managers() -> None:
    """A simulated day uses the given start time and only the given managers, and refuses to run
    without tracked numbers."""
    day = generate_day(30, dids=DIDS, managers=("102",), seed=2, epoch=1_800_000_000.0)
    for sim in day:
        assert sim.expected.linkedid.startswith("18000")
        if sim.expected.kind == "answered":
            assert sim.expected.answered_by == "102"
    with pytest.raises(ValueError, match="did"):
        generate_day(3, dids=[])


def test_merge_orders_all_messages_by_time() -> None:
    """A day's calls merged into one stream keep every event, in time order, with each call's own
    order unchanged."""
    day = generate_day(20, dids=DIDS, seed=11)
    merged = merge(day)
    assert len(merged) == sum(len(c.messages) for c in day)
    times = [float(m["_ts"]) for m in merged]
    assert times == sorted(times)
    for sim in day[:3]:  # a call's own order survives the merge
        own = [m for m in merged if m.get("Linkedid") == sim.expected.linkedid]
        assert own == [m for m in sim.messages if m.get("Linkedid") == sim.expected.linkedid]
