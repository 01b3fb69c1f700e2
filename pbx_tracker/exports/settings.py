"""Settings of the exports to the ad platforms (``exports:`` in the config).

``ga4``: where Google Analytics 4 Measurement Protocol events go (the
measurement id and API secret of the web data stream; the secret may also
come from ``PBX_TRACKER_EXPORTS__GA4__API_SECRET`` and is never logged).
``metrica``: what the ``Tag`` column of the Yandex Metrica offline-calls file
holds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PositiveFloat, SecretStr, field_validator

from pbx_tracker.config_fields import ConfigModel, NonEmptyStr, lower_text
from pbx_tracker.config_fields import problem as config_problem

__all__ = ["GA4_ENDPOINT", "ExportSettings", "Ga4Settings", "MetricaSettings", "MetricaTag"]

GA4_ENDPOINT = "https://www.google-analytics.com/mp/collect"
MetricaTag = Literal["source", "campaign", "source_campaign", "none"]


def _secret_text(value: Any) -> Any:
    """A number or flag written as the secret is read as text; an empty one as none.

    So the secret never fails validation as a scalar, and no problem line can show it.
    """
    if isinstance(value, bool | int | float):
        value = str(value)
    if isinstance(value, str) and not value.strip():
        return None
    return value


class Ga4Settings(ConfigModel):
    """Google Analytics 4 Measurement Protocol: the stream's ids and how to reach it."""

    measurement_id: NonEmptyStr | None = None
    api_secret: Annotated[SecretStr | None, BeforeValidator(_secret_text)] = None
    endpoint: NonEmptyStr = GA4_ENDPOINT
    timeout: PositiveFloat = 10.0
    attempts: int = Field(default=3, ge=1, le=10)
    backoff: float = Field(default=1.0, ge=0)

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise config_problem("endpoint", "must start with http:// or https://")
        return value

    @property
    def configured(self) -> bool:
        """True when both the measurement id and the API secret are set."""
        return self.measurement_id is not None and self.api_secret is not None


class MetricaSettings(ConfigModel):
    """Yandex Metrica offline calls: what goes in the ``Tag`` column."""

    tag: Annotated[MetricaTag, BeforeValidator(lower_text)] = "source_campaign"


class ExportSettings(ConfigModel):
    """Calls as conversions for the ad platforms."""

    ga4: Ga4Settings = Field(default_factory=Ga4Settings)
    metrica: MetricaSettings = Field(default_factory=MetricaSettings)

    def secret_values(self) -> list[str]:
        """The GA4 API secret, for redacting logs."""
        secret = self.ga4.api_secret
        return [secret.get_secret_value()] if secret and secret.get_secret_value() else []
