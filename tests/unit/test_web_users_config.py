"""`web.users` against `managers:`: a user with role manager sees the callbacks of their
extension, so the config must name a manager with that extension."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pbx_tracker.config import ConfigError, ConfigLoader, settings_from_mapping
from pbx_tracker.web.auth import hash_password
from pbx_tracker.web.settings import web_user_problems

HASH = hash_password("long enough password", n=2**10, r=8, p=1)
MANAGERS = [{"name": "Anna", "extension": "101"}, {"name": "Boris", "extension": "102"}]


def config(*users: dict[str, Any], managers: Any = MANAGERS) -> dict[str, Any]:
    return {
        "ami": {"secret": "unused"},
        "managers": managers,
        "web": {"users": [{"password_hash": HASH, **user} for user in users]},
    }


def test_a_manager_user_with_a_managers_extension_is_fine() -> None:
    """Web users with the manager role whose extensions are in managers: raise no problem and load
    with those extensions."""
    raw = config(
        {"name": "anna", "role": "manager", "extension": "101"},
        {"name": "boris", "role": "manager", "extension": "102"},
    )
    assert web_user_problems(raw) == []
    settings = settings_from_mapping(raw, environ={})
    assert [user.extension for user in settings.web.users] == ["101", "102"]


def test_a_manager_user_with_an_unknown_extension_is_named() -> None:
    """A manager web user whose extension is in no manager's entry is reported by key, with the
    extensions managers does list."""
    raw = config(
        {"name": "anna", "role": "manager", "extension": "101"},
        {"name": "vera", "role": "manager", "extension": "105"},
    )
    assert web_user_problems(raw) == [
        "web.users[1].extension: user 'vera' is a manager with extension 105, which is not "
        "in managers (their extensions: 101, 102)"
    ]


def test_without_managers_every_manager_user_is_a_problem() -> None:
    """With no managers: (missing or empty) every manager web user is reported, saying that managers
    lists none."""
    for managers in (None, []):
        raw = config({"name": "anna", "role": "manager", "extension": "101"}, managers=managers)
        assert web_user_problems(raw) == [
            "web.users[0].extension: user 'anna' is a manager with extension 101, which is "
            "not in managers (it lists none)"
        ]


def test_long_lists_of_extensions_are_cut() -> None:
    """The message about an unknown manager extension lists at most ten of the known extensions and
    says how many more there are."""
    many = [{"name": f"M{n}", "extension": str(200 + n)} for n in range(12)]
    raw = config({"name": "anna", "role": "manager", "extension": "101"}, managers=many)
    [line] = web_user_problems(raw)
    assert line.endswith(
        "(their extensions: 200, 201, 202, 203, 204, 205, 206, 207, 208, 209 and 2 more)"
    )


def test_marketers_and_admins_need_no_managers_extension() -> None:
    """An admin may have an extension to ring for "Call now" that is no manager's."""
    raw = config(
        {"name": "mark", "role": "marketer"},
        {"name": "root", "role": "admin", "extension": "900"},
        {"name": "rita", "role": "marketer", "extension": "901"},
    )
    assert web_user_problems(raw) == []


def test_extensions_read_from_yaml_compare_as_written() -> None:
    """YAML reads an unquoted 101 as a number: the model asks for quotes, this check
    does not add a second, wrong line about it."""
    raw = yaml.load(  # ConfigLoader: the config's safe loader
        """
        managers:
          - {name: Anna, extension: 101}
        web:
          users:
            - {name: anna, role: manager, extension: "101"}
            - {name: vera, role: manager, extension: "0105"}
        """,
        Loader=ConfigLoader,
    )
    assert web_user_problems(raw) == [
        "web.users[1].extension: user 'vera' is a manager with extension 0105, which is not "
        "in managers (their extensions: 101)"
    ]


@pytest.mark.parametrize(
    "web",
    [
        None,
        "users",
        {"users": "anna"},
        {"users": ["anna", None]},
        {"users": [{"name": "anna", "role": "manager"}]},  # no extension: the model says so
        {"users": [{"name": "anna", "role": "manager", "extension": "ten"}]},
        {"users": [{"name": "anna", "role": "manager", "extension": " 105"}]},
        {"users": [{"name": "anna", "role": "manager", "extension": 105}]},  # needs quotes
        {"users": [{"name": "anna", "role": "Manager", "extension": "105"}]},  # no such role
    ],
)
def test_entries_the_models_refuse_are_left_to_them(web: Any) -> None:
    """Malformed web or users entries are not reported twice here: the config model's own message
    about them is the one the sysadmin sees."""
    assert web_user_problems({"managers": MANAGERS, "web": web}) == []


def test_loading_the_config_refuses_it() -> None:
    """What `pbx-tracker check-config` prints: every problem, naming the user and the
    extension."""
    raw = config({"name": "vera", "role": "manager", "extension": "105"})
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(raw, environ={})
    assert caught.value.problems == [
        "web.users[0].extension: user 'vera' is a manager with extension 105, which is not "
        "in managers (their extensions: 101, 102)"
    ]
