"""The ``routing`` section and the managers' routing keys as the administrator meets them."""

from __future__ import annotations

from typing import Any

import pytest

from pbx_tracker.config import ConfigError, Settings, settings_from_mapping
from pbx_tracker.routing.plan import RoutingPlan

MANAGERS = [
    {"name": "Anna", "extension": "101", "group": "sales"},
    {"name": "Boris", "extension": "102", "group": "sales"},
    {"name": "Vera", "extension": "103", "group": "support"},
]
TRACKED = [{"did": "+74951110001", "source": "yandex-direct"}]
POOLS = [{"name": "site", "numbers": ["74951110010-74951110019"]}]


def config(routing: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ami": {"secret": "s3cret"},
        "tracked_numbers": TRACKED,
        "number_pools": POOLS,
        "managers": MANAGERS,
        **extra,
    }
    if routing is not None:
        data["routing"] = routing
    return data


def load(data: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    return settings_from_mapping(data, environ=environ or {})


def problems(routing: dict[str, Any] | None = None, **extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(config(routing, **extra))
    return caught.value.problems


def test_defaults_route_every_call_to_all_managers() -> None:
    """Without a routing section calls ring all managers over PJSIP with a 5 s reservation, no
    wrap-up time, at most 5 steps and a message when nobody answers."""
    routing = load(config()).routing
    assert routing.timezone is None
    assert routing.dial_template == "PJSIP/{extension}"
    assert (routing.reservation_seconds, routing.wrapup_seconds, routing.max_steps) == (5, 0, 5)
    assert (routing.default_group, routing.groups, routing.numbers) == (None, [], [])
    assert (routing.missed.action, routing.missed.voicemail_box) == ("message", None)


def test_group_defaults() -> None:
    """A group that names only itself rings everyone of that group, longest idle first, remembers
    callers for 30 days with 15 s sticky ringing, and rings each manager 20 s."""
    group = load(config({"groups": [{"name": "sales"}]})).routing.groups[0]
    assert group.members is None
    assert (group.strategy, group.queue, group.overflow, group.hours) == (
        "longest_idle",
        None,
        None,
        None,
    )
    assert (group.sticky_days, group.sticky_seconds, group.ring_seconds) == (30, 15, 20)


def test_full_routing_section_loads() -> None:
    """A full routing section as documented loads: the strategy name in any case, a number in
    national form turned into E.164, a manager's own hours and dial string."""
    settings = load(
        config(
            {
                "timezone": "Europe/Moscow",
                "dial_template": "IAX2/{extension}/{extension}",
                "default_group": "sales",
                "groups": [
                    {
                        "name": "sales",
                        "strategy": "Round_Robin",
                        "hours": ["mon-fri 09:00-18:00"],
                        "overflow": "support",
                    },
                    {"name": "support", "members": ["103", "101"], "overflow": "reception"},
                    {"name": "reception", "strategy": "queue", "queue": "reception"},
                ],
                "numbers": [
                    {"did": "84951110001", "group": "support"},
                    {"pool": "site", "group": "sales"},
                    {"source": "yandex-direct", "group": "sales"},
                ],
                "missed": {"action": "voicemail", "voicemail_box": "100@default"},
            },
            managers=[
                {**MANAGERS[0], "hours": ["sat 10:00-14:00"], "dial": "IAX2/101/101"},
                *MANAGERS[1:],
            ],
        )
    )
    routing = settings.routing
    assert routing.groups[0].strategy == "round_robin"
    assert routing.numbers[0].did == "+74951110001"
    assert settings.managers[0].hours == ["sat 10:00-14:00"]
    assert settings.managers[0].dial == "IAX2/101/101"


def test_environment_sets_routing_keys() -> None:
    """PBX_TRACKER_ROUTING__WRAPUP_SECONDS sets the wrap-up time without editing the config file."""
    settings = load(config(), environ={"PBX_TRACKER_ROUTING__WRAPUP_SECONDS": "30"})
    assert settings.routing.wrapup_seconds == 30


@pytest.mark.parametrize(
    ("routing", "expected"),
    [
        ({"timezone": "Mars/Olympus"}, "routing.timezone: unknown time zone"),
        ({"dial_template": "PJSIP/101"}, "routing.dial_template: must contain {extension}"),
        ({"max_steps": 0}, "routing.max_steps: Input should be greater than or equal to 1"),
        ({"groups": [{"name": "x", "strategy": "fewest"}]}, "routing.groups[0].strategy: Input"),
        (
            {"groups": [{"name": "x", "strategy": "queue"}]},
            "routing.groups[0].queue: required for strategy queue",
        ),
        (
            {"groups": [{"name": "sales", "queue": "sales"}]},
            "routing.groups[0].queue: only used with strategy queue",
        ),
        (
            {"groups": [{"name": "sales", "hours": ["weekdays 9-18"]}]},
            "routing.groups[0].hours[0]: unknown day 'weekdays'",
        ),
        (
            {"numbers": [{"did": "+74951110001", "pool": "site", "group": "sales"}]},
            "routing.numbers[0]: give exactly one of did, pool or source",
        ),
        ({"missed": {"action": "voicemail"}}, "routing.missed.voicemail_box: required"),
        ({"missed": {"action": "ivr"}}, "routing.missed.action: Input should be"),
        ({"colour": "blue"}, "routing.colour: unknown key"),
    ],
)
def test_value_problems_name_the_key(routing: dict[str, Any], expected: str) -> None:
    """Each bad routing value (an unknown time zone, a dial template without {extension}, zero
    steps, an unknown strategy, queue settings that do not fit the strategy and so on) is reported
    with its key."""
    assert any(line.startswith(expected) for line in problems(routing)), problems(routing)


def test_manager_hours_problem_names_the_key() -> None:
    """A manager's working hours written wrong are reported at managers[0].hours[0] with an example
    of the right form and what was written."""
    managers = [{**MANAGERS[0], "hours": ["mon-fri 18:00"]}]
    assert problems(managers=managers) == [
        "managers[0].hours[0]: time range '18:00': e.g. 'mon-fri 09:00-18:00' "
        "(days, then HH:MM-HH:MM) (got 'mon-fri 18:00')"
    ]


def test_routes_naming_unknown_groups() -> None:
    """A default group, overflow or number rule naming a group that does not exist (a typo such as
    'suport') is reported with its key."""
    found = problems(
        {
            "default_group": "night",
            "groups": [{"name": "sales", "overflow": "suport"}],
            "numbers": [{"pool": "site", "group": "salse"}],
        }
    )
    assert found == [
        "routing.default_group: no group named 'night'",
        "routing.groups[0].overflow: no group named 'suport'",
        "routing.numbers[0].group: no group named 'salse'",
    ]


def test_overflow_cycle_is_reported_once() -> None:
    """Groups that overflow into each other in a circle are reported once per cycle, showing the
    circle and saying to end it with null."""
    groups = [
        {"name": "sales", "overflow": "support"},
        {"name": "support", "overflow": "backoffice"},
        {"name": "backoffice", "members": ["101"], "overflow": "support"},
        {"name": "solo", "members": ["102"], "overflow": "solo"},
    ]
    assert problems({"groups": groups}) == [
        "routing.groups[1].overflow: support -> backoffice -> support is a cycle; "
        "end it with null (the missed-call path)",
        "routing.groups[3].overflow: solo -> solo is a cycle; "
        "end it with null (the missed-call path)",
    ]


def test_members_must_be_managers_and_groups_must_have_some() -> None:
    """A duplicate group name, a member who is no manager and a group with nobody in it are each
    reported with their key."""
    groups = [
        {"name": "sales", "members": ["101", "104"]},
        {"name": "night"},
        {"name": "empty", "members": []},
        {"name": "reception", "strategy": "queue", "queue": "reception"},
        {"name": "sales"},
    ]
    assert problems({"groups": groups}) == [
        "routing.groups[4].name: sales is already routing.groups[0]",
        "routing.groups[0].members[1]: 104 is no manager (not in managers)",
        "routing.groups[1]: nobody is in this group; list members or set managers' group: night",
        "routing.groups[2]: nobody is in this group; list members or set managers' group: empty",
    ]


def test_number_rules_must_name_what_is_tracked() -> None:
    """A routing rule for a number, pool or source that is not tracked, or a second rule for the
    same number, is reported with its key."""
    numbers = [
        {"did": "+74959999999", "group": "sales"},
        {"pool": "landing", "group": "sales"},
        {"source": "tiktok", "group": "sales"},
        {"did": "84951110001", "group": "sales"},
        {"did": "+74951110001", "group": "sales"},
        {"source": "pool", "group": "sales"},
    ]
    assert problems({"groups": [{"name": "sales"}], "numbers": numbers}) == [
        "routing.numbers[0].did: +74959999999 is not a tracked number "
        "(add it to tracked_numbers or a pool)",
        "routing.numbers[1].pool: no number pool named 'landing'",
        "routing.numbers[2].source: no tracked number or pool has source 'tiktok'",
        "routing.numbers[4].did: +74951110001 already has a rule, routing.numbers[3]",
    ]


def test_routing_problems_come_with_the_others() -> None:
    """Routing problems are reported together with the rest of the config's problems, not only after
    those are fixed."""
    found = problems({"groups": [{"name": "sales", "overflow": "x"}]}, node="")
    assert found[0].startswith("node: ")
    assert "routing.groups[0].overflow: no group named 'x'" in found


def test_a_rule_may_name_a_short_tracked_number() -> None:
    """A ring group's internal number tracked as a DID (600) can have its own routing rule,
    and a call the carrier delivers to 600 goes to that group."""
    data = config(
        {
            "groups": [{"name": "sales"}, {"name": "support", "members": ["103"]}],
            "numbers": [{"did": "600", "group": "support"}],
        },
        tracked_numbers=[*TRACKED, {"did": "600", "source": "ring-group"}],
    )
    settings = load(data)
    plan = RoutingPlan(settings.routing, settings.directory)
    assert plan.group_for_number("600").name == "support"
    assert plan.group_for_number("74951110001").name != "support"
