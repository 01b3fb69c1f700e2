"""Secrets that are no secrets, in any section, are refused by name before the daemon
starts; real ones pass."""

from __future__ import annotations

from typing import Any

from pbx_tracker.config import Settings, settings_from_mapping
from pbx_tracker.config.weak_secrets import weak_secret_problems

STRONG = "d41d8cd98f00b204"


def settings(**sections: Any) -> Settings:
    raw: dict[str, Any] = {
        "ami": {"secret": STRONG},
        "tracked_numbers": [{"did": "+74951234567", "source": "flyer"}],
        "managers": [{"name": "Anna", "extension": "101"}],
    }
    return settings_from_mapping(raw | sections, environ={})


def test_real_secrets_pass() -> None:
    """A config whose every secret is long and random has no problem."""
    found = settings(
        database={"url": f"postgresql://tracker:{STRONG}@db.example/pbx"},
        callbacks={"smtp": {"username": "pbx", "password": STRONG}},
        cel={"table": "cel", "database_url": f"postgresql://cel:{STRONG}@db.example/ast"},
    )
    assert weak_secret_problems(found) == []


def test_each_weak_secret_is_named_by_its_key() -> None:
    """A short database password, the SMTP password 'password', a short CEL database
    password and webhook secret are each one line with the key, never the value."""
    found = settings(
        database={"url": "postgresql://tracker:pw@db.example/pbx"},
        callbacks={
            "smtp": {"username": "pbx", "password": "Password"},
            "webhook": {"url": "https://hooks.example/r", "secret": "k3y"},
        },
        cel={"table": "cel", "database_url": "postgresql://cel:ast@db.example/asterisk"},
    )
    problems = weak_secret_problems(found)
    keys = sorted(line.split(":", 1)[0] for line in problems)
    expected = ["callbacks.smtp.password", "callbacks.webhook.secret", "cel.database_url"]
    assert keys == sorted([*expected, "database.url"])
    assert not any(value in line for line in problems for value in (": pw", "Password", "k3y"))


def test_a_database_url_without_a_password_is_not_a_weak_secret() -> None:
    """Peer or trust authentication (no password in the URL) is not a problem."""
    assert weak_secret_problems(settings(database={"url": "postgresql:///pbx"})) == []
