"""Settings of call routing (``routing:`` in the config): groups, number rules, missed path.

Checks that span entries (a route naming an unknown group, overflow cycles,
members who are no managers, rules for untracked numbers) are in
`pbx_tracker.routing.checks`, run by the config loader.
"""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from pbx_tracker.config_fields import (
    ConfigModel,
    Extension,
    NonEmptyStr,
    TrackedDid,
    lower_text,
    problem,
)
from pbx_tracker.hours import HoursLine

__all__ = [
    "GroupSettings",
    "MissedSettings",
    "NumberRoute",
    "RoutingSettings",
    "Strategy",
    "zone_of",
]

Strategy = Literal["longest_idle", "round_robin", "ring_all", "queue"]
MissedAction = Literal["voicemail", "message", "hangup"]
_Lower = BeforeValidator(lower_text)


def zone_of(name: str | None) -> ZoneInfo | None:
    """The time zone called ``name``; None for the machine's local zone."""
    return None if name is None else ZoneInfo(name)


class GroupSettings(ConfigModel):
    """Managers who take the same calls, and how one of them is chosen."""

    name: NonEmptyStr
    members: list[Extension] | None = None
    strategy: Annotated[Strategy, _Lower] = "longest_idle"
    queue: NonEmptyStr | None = Field(default=None, validate_default=True)
    sticky_days: int = Field(default=30, ge=0)
    sticky_seconds: int = Field(default=15, ge=1)
    ring_seconds: int = Field(default=20, ge=1)
    hours: list[HoursLine] | None = None
    overflow: NonEmptyStr | None = None
    crm_owner: bool = False

    @field_validator("queue")
    @classmethod
    def _queue_with_its_strategy(cls, value: str | None, info: ValidationInfo) -> str | None:
        strategy = info.data.get("strategy")
        if strategy == "queue" and value is None:
            raise problem("queue", "required for strategy queue (the Asterisk queue's name)")
        if strategy not in (None, "queue") and value is not None:
            raise problem("queue", "only used with strategy queue; set strategy: queue")
        return value


class NumberRoute(ConfigModel):
    """Which group takes the calls of a tracked number, a pool or a source."""

    did: TrackedDid | None = None
    pool: NonEmptyStr | None = None
    source: NonEmptyStr | None = None
    group: NonEmptyStr

    @model_validator(mode="after")
    def _one_match(self) -> NumberRoute:
        given = [value for value in (self.did, self.pool, self.source) if value is not None]
        if len(given) != 1:
            raise problem("number_route", "give exactly one of did, pool or source")
        return self


class MissedSettings(ConfigModel):
    """What the caller gets when nobody answered: the missed-call path."""

    action: Annotated[MissedAction, _Lower] = "message"
    voicemail_box: NonEmptyStr | None = Field(default=None, validate_default=True)
    message: NonEmptyStr | None = None

    @field_validator("voicemail_box")
    @classmethod
    def _box_for_voicemail(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("action") == "voicemail" and value is None:
            raise problem("voicemail_box", "required for action voicemail, e.g. 100@default")
        return value


class RoutingSettings(ConfigModel):
    """Whom the FastAGI router rings for each call, and for how long."""

    timezone: NonEmptyStr | None = None
    dial_template: NonEmptyStr = "PJSIP/{extension}"
    reservation_seconds: int = Field(default=5, ge=0)
    wrapup_seconds: int = Field(default=0, ge=0)
    max_steps: int = Field(default=5, ge=1)
    default_group: NonEmptyStr | None = None
    groups: list[GroupSettings] = Field(default_factory=list)
    numbers: list[NumberRoute] = Field(default_factory=list)
    missed: MissedSettings = Field(default_factory=MissedSettings)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        try:
            zone_of(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise problem(
                "timezone", "unknown time zone, use a name such as Europe/Moscow"
            ) from None
        return value

    @field_validator("dial_template")
    @classmethod
    def _usable_template(cls, value: str) -> str:
        try:
            dialled = value.format(extension="101")
        except (KeyError, IndexError, ValueError):
            dialled = value
        if dialled == value or "/" not in dialled:
            raise problem("dial_template", "must contain {extension}, e.g. PJSIP/{extension}")
        return value
