"""Settings of the CRM webhook (``crm:`` in the config)."""

from __future__ import annotations

from pydantic import Field, PositiveFloat

from pbx_tracker.callbacks.settings import WebhookSettings
from pbx_tracker.config_fields import ConfigModel

__all__ = ["CrmSettings"]


class CrmSettings(ConfigModel):
    """Where finished calls go, and how long a call that cannot be delivered is retried.

    ``webhook``: the CRM's endpoint, signed like the callback webhook (its ``attempts``
    and ``backoff`` are the tries within one delivery round); ``retry_initial`` /
    ``retry_max``: seconds between rounds while the CRM is down, doubling;
    ``give_up_hours``: a call still undelivered after this is left (logged, counted).
    """

    webhook: WebhookSettings | None = None
    retry_initial: PositiveFloat = 10.0
    retry_max: PositiveFloat = 3600.0
    give_up_hours: float = Field(default=72.0, gt=0)

    def secret_values(self) -> list[str]:
        secret = self.webhook.secret if self.webhook else None
        return [secret.get_secret_value()] if secret else []
