"""Settings of the AMI connection (``ami:`` in the config): where Asterisk is, how to log
in, how often to check the link and how to reconnect."""

from __future__ import annotations

from pydantic import ConfigDict, Field, PositiveFloat, SecretStr, ValidationInfo, field_validator

from pbx_tracker.config_fields import ConfigModel, ResolvedPath, problem

__all__ = ["AmiSettings"]


class AmiSettings(ConfigModel):
    """How to reach and log in to the Asterisk Manager Interface."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=5038, ge=1, le=65535)
    username: str = "pbx-tracker"
    secret: SecretStr
    secret_file: ResolvedPath | None = None
    events: str = "on"
    connect_timeout: PositiveFloat = 5.0
    ping_interval: PositiveFloat = 10.0
    ping_timeout: PositiveFloat = 5.0
    reconnect_initial: PositiveFloat = 1.0
    reconnect_max: PositiveFloat = Field(default=30.0, validate_default=True)

    @field_validator("reconnect_max")
    @classmethod
    def _not_below_initial(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("reconnect_initial")
        if initial is not None and value < initial:
            raise problem("reconnect_max", f"must be at least reconnect_initial ({initial})")
        return value
