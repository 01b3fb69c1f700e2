"""The callbacks section of the config: defaults, and problems named by key."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from services import callback_service

from pbx_tracker.callbacks.policy import TaskStatus
from pbx_tracker.callbacks.tasks import CallbackTask
from pbx_tracker.config import ConfigError, settings_from_mapping
from pbx_tracker.store.engine import make_async_engine

MANAGERS = [{"name": "Anna", "extension": "101", "group": "sales", "email": "anna@example.ru"}]


def load(callbacks: dict[str, Any], **more: Any) -> Any:
    data = {"ami": {"secret": "s"}, "managers": MANAGERS, "callbacks": callbacks, **more}
    return settings_from_mapping(data, environ={})


def problems(callbacks: dict[str, Any], **more: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(callbacks, **more)
    return caught.value.problems


def test_defaults_open_tasks_for_every_missed_reason_and_only_log() -> None:
    """With no callbacks section, every kind of missed call opens a task, reminders come at 0, 10,
    30, 60 and 120 minutes, and nobody is notified beyond the log."""
    settings = settings_from_mapping({"ami": {"secret": "s"}}, environ={})
    assert settings.callbacks.enabled and settings.callbacks.notify == []
    assert settings.callbacks.reasons == ["no_answer", "abandoned", "busy", "unavailable", "failed"]
    assert settings.callbacks.remind_after_minutes == [0, 10, 30, 60, 120]


def test_a_channel_in_use_needs_its_settings() -> None:
    """A sysadmin who turns on email or webhook reminders (for everyone or one manager) without the
    smtp or webhook section is told which section is missing and why."""
    assert problems({"notify": ["email", "webhook"]}) == [
        "callbacks.smtp: missing; notify uses email",
        "callbacks.webhook: missing; notify uses webhook",
    ]
    managers = [{**MANAGERS[0], "notify": ["webhook"]}]
    assert problems({}, managers=managers) == ["callbacks.webhook: missing; notify uses webhook"]


def test_bad_values_are_named_by_key() -> None:
    """Each bad value in the callbacks section is reported with its full key path
    (remind_after_minutes, notify[0], webhook.url, smtp.security, supervisors.sales) and what is
    wrong with it."""
    found = problems(
        {
            "remind_after_minutes": [10, 0],
            "notify": ["sms"],
            "supervisors": {"sales": "109"},
            "webhook": {"url": "crm.example.ru/hook"},
            "smtp": {"security": "ssl"},
        }
    )
    assert found[0].startswith("callbacks.remind_after_minutes: must be ascending")
    assert any(line.startswith("callbacks.notify[0]:") for line in found)
    assert any(line.startswith("callbacks.webhook.url: must start with http") for line in found)
    assert any(line.startswith("callbacks.smtp.security:") for line in found)
    assert "callbacks.supervisors.sales: 109 is no manager" in found


def test_smtp_password_and_webhook_secret_are_redacted_secrets() -> None:
    """The SMTP password and the webhook secret are known as secrets and never appear when the
    settings are printed."""
    settings = load(
        {
            "smtp": {"password": "mail-pass-1"},
            "webhook": {"url": "http://127.0.0.1/hook", "secret": "hook-key-2"},
        }
    )
    assert {"mail-pass-1", "hook-key-2"} <= set(settings.secret_values())
    assert "mail-pass-1" not in repr(settings) and "hook-key-2" not in repr(settings)


def test_a_group_can_have_its_own_channels() -> None:
    """A group's own notify channels are checked like the global ones: a webhook for the sales group
    needs the webhook section."""
    assert problems({"group_notify": {"sales": ["webhook"]}}) == [
        "callbacks.webhook: missing; notify uses webhook"
    ]


def test_channels_are_the_managers_then_the_groups_then_the_default() -> None:
    """Who is told how: a manager's own `notify` wins, then the task's group's, then the rest."""
    managers = [
        {**MANAGERS[0], "notify": ["ring_me"]},
        {"name": "Boris", "extension": "102", "group": "sales"},
    ]
    callbacks = {
        "notify": ["email"],
        "group_notify": {"sales": ["ring_me", "email"]},
        "smtp": {"host": "127.0.0.1"},
    }
    settings = load(callbacks, managers=managers)
    service = callback_service(settings, make_async_engine("sqlite://"))  # never started
    now = datetime.now(UTC)
    task = CallbackTask(
        1, "pbx", "+79161234501", True, TaskStatus.OPEN, "102", "sales", None, None, 1,
        now, now, now, 0, None, None, None, None, 0, None, None, None, None, now,
    )  # fmt: skip
    anna, boris = (settings.manager_for_extension(e) for e in ("101", "102"))
    assert service.sender.channels(task, anna) == ["ring_me"]
    assert service.sender.channels(task, boris) == ["ring_me", "email"]
    assert service.sender.channels(dataclasses.replace(task, group_name=None), boris) == ["email"]


def test_the_smtp_port_follows_the_security_unless_given() -> None:
    """The SMTP port defaults to 25, 587 with STARTTLS and 465 with TLS, unless the config names a
    port."""
    ports = [
        load({"smtp": smtp}).callbacks.smtp.port
        for smtp in (
            {},
            {"security": "starttls"},
            {"security": "tls"},
            {"security": "tls", "port": 2525},
        )
    ]
    assert ports == [25, 587, 465, 2525]
