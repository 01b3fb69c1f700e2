"""Settings of missed-call callbacks (``callbacks:`` in the config).

Which missed calls open a callback task, when the assignee is reminded and
when the task is escalated, through which channels (email over SMTP, an HTTP
webhook, "ring me": a call that rings the manager and then the customer), and
how those channels are reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PositiveFloat,
    SecretStr,
    field_validator,
    model_validator,
)

from pbx_tracker.config_fields import (
    ConfigModel,
    Did,
    Email,
    Extension,
    HttpUrl,
    NonEmptyStr,
    ResolvedPath,
    SecretFile,
    lower_text,
)
from pbx_tracker.config_fields import problem as config_problem
from pbx_tracker.hours import HoursLine
from pbx_tracker.staff import NotifyChannel

__all__ = [
    "CallbackSettings",
    "Channel",
    "MissedReasonName",
    "RingMeSettings",
    "SmtpSettings",
    "TelegramSettings",
    "WebhookSettings",
    "callback_problems",
]

Channel = NotifyChannel
MissedReasonName = Literal["no_answer", "abandoned", "busy", "unavailable", "failed"]
_Lower = BeforeValidator(lower_text)
ALL_REASONS: tuple[MissedReasonName, ...] = (
    "no_answer",
    "abandoned",
    "busy",
    "unavailable",
    "failed",
)


class SmtpSettings(ConfigModel):
    """The mail server reminders are sent through."""

    host: NonEmptyStr = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Annotated[Literal["none", "starttls", "tls"], _Lower] = "none"
    username: str | None = None
    password: SecretStr | None = None
    sender: Email = "pbx-tracker@localhost"
    timeout: PositiveFloat = 10.0
    ca_file: ResolvedPath | None = None

    @model_validator(mode="after")
    def _port_of_the_security(self) -> SmtpSettings:
        """Without a port: 25 plain, 587 for STARTTLS (submission), 465 for TLS."""
        if "port" not in self.model_fields_set:
            self.port = {"none": 25, "starttls": 587, "tls": 465}[self.security]
        return self


class WebhookSettings(ConfigModel):
    """An HTTP endpoint that receives every reminder as signed JSON."""

    url: HttpUrl
    secret: SecretStr | None = None
    timeout: PositiveFloat = 5.0
    attempts: int = Field(default=5, ge=1, le=20)
    backoff: PositiveFloat = 1.0


class RingMeSettings(ConfigModel):
    """The click-to-call callback: Asterisk rings the manager, then dials the customer."""

    enabled: bool = True
    context: NonEmptyStr = "pbx-tracker-callback"
    manager_ring_seconds: int = Field(default=20, ge=5, le=120)
    customer_ring_seconds: int = Field(default=30, ge=5, le=300)
    max_attempts: int = Field(default=3, ge=1, le=20)
    caller_id: Did | None = None


class TelegramSettings(ConfigModel):
    """Reminders in Telegram: a bot managers talk to (long polling; no public URL).

    ``token_file``: a file holding the token @BotFather gave; each manager's
    ``telegram_chat`` is their chat with the bot (they send it /start, the bot
    answers with the chat's id).
    """

    token_file: SecretFile
    api_url: HttpUrl = "https://api.telegram.org"
    poll_seconds: int = Field(default=25, ge=1, le=50)
    timeout: PositiveFloat = 10.0

    @field_validator("api_url")
    @classmethod
    def _no_end_slash(cls, value: str) -> str:
        return value.rstrip("/")


class CallbackSettings(ConfigModel):
    """Which missed calls must be called back, and how the managers are told."""

    enabled: bool = True
    reasons: list[MissedReasonName] = Field(default_factory=lambda: list(ALL_REASONS))
    remind_after_minutes: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: [0.0, 10.0, 30.0, 60.0, 120.0], min_length=1
    )
    sla_minutes: float = Field(default=15, gt=0)
    hours: list[HoursLine] | None = None
    notify: list[Channel] = Field(default_factory=list)
    group_notify: dict[NonEmptyStr, list[Channel]] = Field(default_factory=dict)
    supervisors: dict[NonEmptyStr, Extension] = Field(default_factory=dict)
    smtp: SmtpSettings | None = None
    webhook: WebhookSettings | None = None
    telegram: TelegramSettings | None = None
    ring_me: RingMeSettings = Field(default_factory=RingMeSettings)
    link_template: str | None = None

    @field_validator("remind_after_minutes")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        if value != sorted(set(value)):
            raise config_problem("remind_after_minutes", "must be ascending, each once")
        return value

    def secret_values(self) -> list[str]:
        """The SMTP password and webhook secret, for redacting logs."""
        found = [self.smtp.password if self.smtp else None]
        found.append(self.webhook.secret if self.webhook else None)
        found.append(self.telegram.token_file if self.telegram else None)
        return [s.get_secret_value() for s in found if s is not None and s.get_secret_value()]


def callback_problems(raw: Mapping[str, Any]) -> list[str]:
    """Problems across keys: a channel in use without its settings, unknown supervisors."""
    callbacks = raw.get("callbacks")
    if not isinstance(callbacks, dict):
        return []
    managers = [m for m in raw.get("managers") or [] if isinstance(m, dict)]
    used = set(_names(callbacks.get("notify")))
    by_group = callbacks.get("group_notify")
    for channels in by_group.values() if isinstance(by_group, dict) else []:
        used.update(_names(channels))
    for manager in managers:
        used.update(_names(manager.get("notify")))
    problems = [
        f"callbacks.{key}: missing; notify uses {channel}"
        for channel, key in (("email", "smtp"), ("webhook", "webhook"), ("telegram", "telegram"))
        if channel in used and not callbacks.get(key)
    ]
    extensions = {str(m.get("extension", "")).strip() for m in managers}
    supervisors = callbacks.get("supervisors")
    for group, extension in supervisors.items() if isinstance(supervisors, dict) else []:
        if isinstance(extension, str) and extension.strip() not in extensions:
            problems.append(f"callbacks.supervisors.{group}: {extension} is no manager")
    return problems


def _names(value: Any) -> list[str]:
    return [str(v).lower() for v in value] if isinstance(value, list) else []
