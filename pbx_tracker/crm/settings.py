"""Settings of the CRMs (``crm:`` in the config): the generic webhook, Bitrix24, amoCRM.

Every CRM gets the stored calls from the outbox (`pbx_tracker.crm.outbox`); while
one is down its events wait and are retried after ``retry_initial`` seconds,
doubling up to ``retry_max``, for ``give_up_hours``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PositiveFloat, SecretStr, field_validator

from pbx_tracker.callbacks.settings import WebhookSettings
from pbx_tracker.config_fields import (
    ConfigModel,
    HttpUrl,
    NonEmptyStr,
    SecretFile,
    lower_text,
    problem,
)

__all__ = ["AmoCrmSettings", "Bitrix24Settings", "CrmSettings"]

# what a CRM field can be filled with: the call record's labels of its source
RecordField = Literal[
    "source",
    "medium",
    "campaign",
    "did",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
]
_Lower = BeforeValidator(lower_text)
DEFAULT_FIELDS: dict[str, RecordField] = {
    "UTM_SOURCE": "utm_source",
    "UTM_MEDIUM": "utm_medium",
    "UTM_CAMPAIGN": "utm_campaign",
    "UTM_TERM": "utm_term",
    "UTM_CONTENT": "utm_content",
    "SOURCE_DESCRIPTION": "source",
}


class Bitrix24Settings(ConfigModel):
    """Bitrix24 telephony through an incoming webhook (scopes ``telephony`` and ``crm``).

    ``webhook_url_file``: a file holding the webhook's URL
    (``https://portal.bitrix24.ru/rest/1/<code>/``; the code is the secret);
    ``create_leads``: a caller the CRM does not know becomes a lead;
    ``show_card``: the call's card pops up for the managers whose phones ring;
    ``fields``: the lead's or deal's fields to fill from the call (``UTM_SOURCE:
    utm_source``); ``application_token_file``: the token of the outgoing webhook for
    ``OnExternalCallStart`` (click-to-call from the CRM; off without it).
    """

    webhook_url_file: SecretFile
    create_leads: bool = True
    show_card: bool = True
    fields: dict[NonEmptyStr, Annotated[RecordField, _Lower]] = Field(
        default_factory=lambda: dict(DEFAULT_FIELDS)
    )
    application_token_file: SecretFile | None = None
    timeout: PositiveFloat = 10.0

    @field_validator("webhook_url_file")
    @classmethod
    def _webhook_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(("https://", "http://")) or "/rest/" not in url:
            raise problem(
                "webhook_url_file",
                "the file must hold the webhook's URL: https://<portal>/rest/<user>/<code>/",
            )
        return SecretStr(url if url.endswith("/") else f"{url}/")

    @property
    def webhook_url(self) -> str:
        return self.webhook_url_file.get_secret_value()

    def secret_values(self) -> list[str]:
        token = self.application_token_file
        url = self.webhook_url.rstrip("/")
        code = url.rsplit("/", 1)[-1]  # the secret part of the URL, as logs could show it
        return [url, code, *([token.get_secret_value()] if token else [])]


class AmoCrmSettings(ConfigModel):
    """amoCRM: each call added to the caller's contact (API v4, a long-lived token).

    ``base_url``: the account's address (``https://example.amocrm.ru``);
    ``token_file``: a file holding the long-lived token; ``unknown_callers``: what
    an unknown caller's call creates (``contact``, ``unsorted``: an incoming lead
    in Unsorted, or ``none``); ``recording_link``: where a manager opens the
    call's recording, ``{linkedid}`` filled in (none: the call is added without).
    """

    base_url: HttpUrl
    token_file: SecretFile
    unknown_callers: Annotated[Literal["contact", "unsorted", "none"], _Lower] = "contact"
    recording_link: NonEmptyStr | None = None
    pipeline_id: int | None = Field(default=None, ge=1)
    timeout: PositiveFloat = 10.0

    @field_validator("base_url")
    @classmethod
    def _account_url(cls, value: str) -> str:
        return value if value.endswith("/") else f"{value}/"

    @field_validator("recording_link")
    @classmethod
    def _link_template(cls, value: str | None) -> str | None:
        if value is not None and "{linkedid}" not in value:
            raise problem("recording_link", "must contain {linkedid}")
        return value

    def secret_values(self) -> list[str]:
        return [self.token_file.get_secret_value()]


class CrmSettings(ConfigModel):
    """Where finished calls go, and how long a call that cannot be delivered is retried.

    ``webhook``: the CRM's endpoint, signed like the callback webhook (its ``attempts``
    and ``backoff`` are the tries within one delivery round); ``bitrix24`` /
    ``amocrm``: those CRMs' own APIs; ``retry_initial`` / ``retry_max``: seconds
    between rounds while a CRM is down, doubling; ``give_up_hours``: a call still
    undelivered after this is left (logged, counted); ``owner_deadline_ms``: how
    long routing waits for the CRM to name a caller's owner (routing groups with
    ``crm_owner``); ``owner_cache_minutes``: how long an answer is kept.
    """

    webhook: WebhookSettings | None = None
    bitrix24: Bitrix24Settings | None = None
    amocrm: AmoCrmSettings | None = None
    retry_initial: PositiveFloat = 10.0
    retry_max: PositiveFloat = 300.0
    give_up_hours: float = Field(default=72.0, gt=0)
    owner_deadline_ms: int = Field(default=400, ge=50, le=5000)
    owner_cache_minutes: float = Field(default=10.0, ge=0)

    @property
    def targets(self) -> list[str]:
        """The outbox's targets for stored calls, in a fixed order."""
        return [
            name
            for name, on in (
                ("webhook", self.webhook),
                ("bitrix24", self.bitrix24),
                ("amocrm", self.amocrm),
            )
            if on is not None
        ]

    def secret_values(self) -> list[str]:
        secret = self.webhook.secret if self.webhook else None
        found = [secret.get_secret_value()] if secret else []
        for crm in (self.bitrix24, self.amocrm):
            found += crm.secret_values() if crm is not None else []
        return found
