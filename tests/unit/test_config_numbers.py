"""Numbers and managers as the PBX sees them: one rule for every number the config names
and every number Asterisk reports, managers reached on any device or a mobile, and the
topology the correlator gets from the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pbx_tracker.calls.topology import Reach
from pbx_tracker.config import ConfigError, Settings, load_settings, settings_from_mapping
from pbx_tracker.phones import canonical_number
from pbx_tracker.replay import topology_of

REPO = Path(__file__).resolve().parents[2]
FREEPBX = REPO / "tests" / "data" / "asterisk-traces" / "freepbx" / "pbx-tracker.yaml"
SECRET = "s3cret-Ami-Pass"
DELIVERED_FORMS = ["74951110002", "84951110002", "4951110002", "+74951110002", "+7 495 111-00-02"]


def load(**data: Any) -> Settings:
    return settings_from_mapping({"ami": {"secret": SECRET}, **data}, environ={})


def problems_of(**data: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(**data)
    return caught.value.problems


def tracked(*dids: str) -> list[dict[str, str]]:
    return [{"did": did, "source": f"source-{index}"} for index, did in enumerate(dids)]


def manager(extension: str, *numbers: str) -> dict[str, Any]:
    return {"name": f"M{extension}", "extension": extension, "external_numbers": list(numbers)}


@pytest.fixture(scope="module")
def freepbx() -> Settings:
    return load_settings(FREEPBX, environ={})


# --- the rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("+74951110002", "+74951110002"),
        ("74951110002", "+74951110002"),
        ("84951110002", "+74951110002"),
        ("4951110002", "+74951110002"),
        ("8 (495) 111-00-02", "+74951110002"),
        ("401", "401"),
        (" 600 ", "600"),
        ("0401", "0401"),
        ("123456", "123456"),
        ("1234567", None),
        ("401-409", None),
        ("+401", None),
        ("s", None),
        ("", None),
        (None, None),
    ],
)
def test_one_rule_for_every_number(written: str | None, canonical: str | None) -> None:
    """A phone number in any form becomes E.164, a short internal number stays its digits,
    anything else is unreadable."""
    assert canonical_number(written, "RU") == canonical


@pytest.mark.parametrize("written", ["84951110002", "4951110002", "+74951110002"])
@pytest.mark.parametrize("delivered", DELIVERED_FORMS)
def test_a_national_did_matches_every_form_the_carrier_delivers(
    written: str, delivered: str
) -> None:
    """A DID written in national form matches the E.164 number the carrier delivers, and
    the other way round."""
    settings = load(tracked_numbers=tracked(written))
    assert settings.tracked_numbers[0].did == "+74951110002"
    labels = settings.find_number(delivered)
    assert labels is not None
    assert (labels.did, labels.source) == ("+74951110002", "source-0")


def test_a_short_number_is_tracked_as_its_digits() -> None:
    """A queue's or ring group's number (401, 600) is tracked as written and found when
    Asterisk reports it, and no other number is taken for it."""
    settings = load(
        tracked_numbers=tracked("401"),
        number_pools=[{"name": "site", "numbers": ["600", "84951110020"]}],
    )
    assert settings.tracked_numbers[0].did == "401"
    assert settings.number_pools[0].numbers == ["600", "+74951110020"]
    found = {did: settings.find_number(did) for did in ("401", " 401", "600", "4951110020")}
    assert {did: labels and labels.did for did, labels in found.items()} == {
        "401": "401",
        " 401": "401",
        "600": "600",
        "4951110020": "+74951110020",
    }
    assert settings.find_number("0401") is None
    assert settings.find_number("+401") is None
    assert settings.find_number("74950000401") is None


def test_dids_are_read_with_the_phone_region() -> None:
    """A German site writes its DIDs the German way and still finds them in any form."""
    settings = settings_from_mapping(
        {
            "ami": {"secret": SECRET},
            "phone_region": "DE",
            "tracked_numbers": tracked("030 12345678", "555"),
        },
        environ={},
    )
    assert [t.did for t in settings.tracked_numbers] == ["+493012345678", "555"]
    for delivered in ("03012345678", "493012345678", "+49 30 12345678", "555"):
        assert settings.find_number(delivered) is not None


# --- numbers check-config refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            {"tracked_numbers": tracked("+74951110001", "84951110001")},
            "tracked_numbers[1].did: 84951110001 is already tracked_numbers[0]",
        ),
        (
            {"tracked_numbers": tracked("401", "401")},
            "tracked_numbers[1].did: 401 is already tracked_numbers[0]",
        ),
        (
            {
                "tracked_numbers": tracked("600"),
                "number_pools": [{"name": "site", "numbers": ["4951110010", " 600"]}],
            },
            "number_pools[0].numbers[1]: 600 is already tracked_numbers[0]",
        ),
        (
            {
                "tracked_numbers": tracked("74951110001"),
                "managers": [manager("101", "84951110001")],
            },
            "managers[0].external_numbers[0]: 84951110001 is already tracked_numbers[0]",
        ),
        (
            {
                "number_pools": [{"name": "site", "numbers": ["74951110010-74951110019"]}],
                "managers": [manager("101", "+7 495 111-00-15")],
            },
            "managers[0].external_numbers[0]: +7 495 111-00-15 is already"
            " number_pools[0].numbers[0]",
        ),
        (
            {"managers": [manager("101", "79160000101"), manager("102", "89160000101")]},
            "managers[1].external_numbers[0]: 89160000101 is already"
            " managers[0].external_numbers[0]",
        ),
        (
            {"managers": [manager("101", "79160000101", "+79160000101")]},
            "managers[0].external_numbers[1]: +79160000101 is already"
            " managers[0].external_numbers[0]",
        ),
    ],
)
def test_the_same_number_in_two_forms_is_refused(data: dict[str, Any], line: str) -> None:
    """One number written twice, in any two forms and in any two places, is one problem line
    naming the second place and the first."""
    assert problems_of(**data) == [line]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            {"tracked_numbers": tracked("12ab")},
            "tracked_numbers[0].did: not a phone number, nor an internal number of 1 to 6"
            " digits (got '12ab')",
        ),
        (
            {"tracked_numbers": tracked("1234567")},
            "tracked_numbers[0].did: not a phone number, nor an internal number",
        ),
        (
            {"number_pools": [{"name": "site", "numbers": ["401-409"]}]},
            "number_pools[0].numbers[0]: not a phone number, nor an internal number",
        ),
        (
            {"number_pools": [{"name": "site", "numbers": ["40101-40109"]}]},
            "number_pools[0].numbers[0]: range 40101-40109: not phone numbers",
        ),
        (
            {"managers": [manager("101", "101")]},
            "managers[0].external_numbers[0]: an internal number (1 to 6 digits); a phone"
            " number is needed here (got '101')",
        ),
        (
            {"managers": [manager("101", "mobile")]},
            "managers[0].external_numbers[0]: not a phone number (got 'mobile')",
        ),
    ],
)
def test_a_number_that_cannot_be_read_is_refused(data: dict[str, Any], line: str) -> None:
    """A number that is neither a phone number nor a short internal one is one problem line
    naming its key."""
    (problem,) = problems_of(**data)
    assert problem.startswith(line)


# --- managers reached in several ways ----------------------------------------------------


@pytest.mark.parametrize(
    "dialled",
    ["79160000103", "89160000103", "+79160000103", "9160000103", "+7 916 000-01-03"],
)
def test_a_mobile_is_found_in_every_form_a_trunk_dials_it(dialled: str) -> None:
    """A manager's mobile, written in any form, is recognised in whatever form the dial
    string or the carrier writes it."""
    settings = load(managers=[manager("101", "+79160000101"), manager("103", "89160000103")])
    assert settings.managers[1].external_numbers == ["+79160000103"]
    found = settings.manager_for_number(dialled)
    assert found is not None and found.extension == "103"


@pytest.mark.parametrize("dialled", ["79160000199", "103", "", "carrier-out"])
def test_other_numbers_are_nobody_s_mobile(dialled: str) -> None:
    """An outside number nobody declared, or an internal one, reaches no manager's mobile."""
    settings = load(managers=[manager("103", "79160000103")])
    assert settings.manager_for_number(dialled) is None


@pytest.mark.parametrize(
    ("channel", "name"),
    [
        ("PJSIP/anna-0000001a", "Anna"),
        ("SIP/anna-mobile-00000003", "Anna"),
        ("IAX2/101-1234", "Anna"),
        ("DAHDI/4-1", "Anna"),
        ("PJSIP/boris-00000002", "Boris"),
        ("PJSIP/102-00000002", None),
        ("Local/101@from-internal-00000001;1", None),
        ("IAX2/carrier-out-17", None),
    ],
)
def test_a_manager_s_devices_on_any_channel_driver(channel: str, name: str | None) -> None:
    """Every phone a manager has, on any channel driver, rings as that manager; trunks and
    Local channels are nobody's phone."""
    settings = load(
        managers=[
            {
                "name": "Anna",
                "extension": "101",
                "devices": ["PJSIP/anna", "SIP/anna-mobile", "IAX2/101", "DAHDI/4"],
            },
            {"name": "Boris", "extension": "102", "devices": ["PJSIP/boris"]},
        ]
    )
    found = settings.manager_for_channel(channel)
    assert (found.name if found else None) == name


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("LC-@*", "must hold exactly one {extension} or {number}"),
        ("{extension}-{number}@*", "must hold exactly one {extension} or {number}"),
        ("from-internal@{extension}", "write it as EXTEN@CONTEXT with the placeholder in EXTEN"),
        ("Local/{extension}@from-internal", "no spaces, slashes or ';'"),
    ],
)
def test_a_bad_local_channel_pattern_is_refused_with_its_key(pattern: str, problem: str) -> None:
    """A Local-channel pattern that could never match is one problem line naming which one."""
    calls = {"local_channels": ["{extension}@from-internal", "LC-{number}@*", pattern]}
    (line,) = problems_of(calls=calls)
    assert line.startswith(f"calls.local_channels[2]: {problem}")


def test_inbound_contexts_may_hold_wildcards_but_not_only_wildcards() -> None:
    """``from-trunk*`` covers every per-trunk context; ``*`` alone, which would make
    internal calls inbound, is refused."""
    settings = load(calls={"inbound_contexts": ["from-trunk*", "from-pstn"]})
    assert settings.calls.inbound_contexts == ["from-trunk*", "from-pstn"]
    (line,) = problems_of(calls={"inbound_contexts": ["from-pstn", "*"]})
    assert line.startswith("calls.inbound_contexts[1]: matches every context")


def test_the_did_variable_may_be_written_as_the_dialplan_sets_it() -> None:
    """``__FROM_DID``, copied from the dialplan's Set(), is the variable FROM_DID."""
    settings = load(calls={"did_variable": "__FROM_DID"})
    assert settings.calls.did_variable == "FROM_DID"


# --- the topology the correlator gets ------------------------------------------------------


def test_the_freepbx_config_is_the_pbx_of_the_captures(freepbx: Settings) -> None:
    """The FreePBX site's config names its trunks' contexts, FROM_DID, its managers' desk
    phones and mobiles, and tracks the advertised numbers only."""
    assert (freepbx.node, freepbx.calls.did_variable) == ("pbx-freepbx", "FROM_DID")
    assert [(m.extension, m.name, m.group) for m in freepbx.managers] == [
        ("101", "Anna", "sales"),
        ("102", "Boris", "sales"),
        ("103", "Vera", "sales"),
    ]
    assert [m.external_numbers for m in freepbx.managers] == [
        ["+79160000101"],
        ["+79160000102"],
        ["+79160000103"],
    ]
    assert [t.source for t in freepbx.tracked_numbers] == [
        "yandex-direct",
        "google-ads",
        "offline-flyer",
    ]
    assert freepbx.number_pools[0].numbers[0] == "+74951110010"
    assert len(freepbx.number_pools[0].numbers) == 10
    assert freepbx.find_number("74959999999") is None
    assert freepbx.recordings_dir == Path("/var/spool/asterisk/monitor")


@pytest.mark.parametrize(
    ("channel", "extension"),
    [
        ("IAX2/101-1234", "101"),
        ("IAX2/103-77", "103"),
        ("IAX2/carrier-5803", None),
        ("IAX2/carrier-out-2942", None),
        ("Local/101@from-internal-00000001;2", None),
    ],
)
def test_topology_knows_the_desk_phones(
    freepbx: Settings, channel: str, extension: str | None
) -> None:
    """The correlator takes a desk phone's leg as its manager's and a trunk's as nobody's."""
    assert topology_of(freepbx).manager_for_channel(channel) == extension


@pytest.mark.parametrize(
    ("target", "reach"),
    [
        ("LC-79160000103@from-internal", Reach("103", "number", "+79160000103")),
        ("79160000101@from-internal", Reach("101", "number", "+79160000101")),
        ("FMPR-103@from-internal", Reach("103", "device")),
        ("102@from-internal", Reach("102", "device")),
        ("101@from-queue", Reach("101", "device")),
        ("600@from-internal", None),
        ("LC-79161230007@from-internal", None),
        ("101@ext-local", None),
    ],
)
def test_topology_reads_freepbx_local_channels(
    freepbx: Settings, target: str, reach: Reach | None
) -> None:
    """Ring groups, queues and follow-me ring a manager through Local channels: their desk
    phone by extension, their mobile by number; a ring group's own number is nobody."""
    assert topology_of(freepbx).reach_of_local(target) == reach


def test_topology_reads_trunk_legs_and_numbers(freepbx: Settings) -> None:
    """A trunk leg to a manager's mobile is that manager reached by number; to any other
    outside number it is nobody's, and internal numbers are no phone numbers."""
    topology = topology_of(freepbx)
    assert topology.reach_of_number("IAX2/carrier-out/89160000102") == Reach(
        "102", "number", "+79160000102"
    )
    assert topology.reach_of_number("IAX2/carrier-out/79161230007") == Reach(
        None, "number", "+79161230007"
    )
    assert topology.manager_for_number("+79160000103") == "103"
    assert topology.manager_for_extension("102") == "102"
    assert topology.manager_for_extension("104") is None
    assert topology.phone_number("84951110002") == "+74951110002"
    assert topology.phone_number("101") is None
    assert topology.phone_number("600") is None
    assert topology.did_variable == "FROM_DID"
    assert topology.is_inbound_context("from-trunk")
    assert topology.is_inbound_context("from-trunk-iax2-carrier")
    assert topology.is_inbound_context("from-pstn")
    assert not topology.is_inbound_context("from-internal")


def test_without_managers_a_phone_named_by_digits_is_its_extension() -> None:
    """A site that lists no managers still sees who answered on phones named after their
    extension, and no mobile is anybody's."""
    topology = topology_of(load(calls={"local_channels": ["{extension}@from-internal"]}))
    assert topology.manager_for_channel("PJSIP/101-0000001a") == "101"
    assert topology.manager_for_channel("PJSIP/carrier-0000001b") is None
    assert topology.manager_for_number("79160000103") is None
    assert topology.reach_of_local("101@from-internal") == Reach("101", "device")
    assert topology.reach_of_local("101@from-queue") is None
    assert topology.phone_number("89160000103") == "+79160000103"
