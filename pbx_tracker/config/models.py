"""The validated configuration: `Settings` and the sections that belong to no room.

Each room owns its settings model (`pbx_tracker.routing.settings`, ...);
`Settings` puts them together, and `Settings.directory` is the lookup of
tracked numbers and managers (`pbx_tracker.staff.Directory`) that services
are handed with their own section.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
)

from pbx_tracker.agi.settings import AgiSettings
from pbx_tracker.ami.settings import AmiSettings
from pbx_tracker.attribution.settings import AttributionSettings, NumberPool
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.calls.topology import DEFAULT_LOCAL_CHANNELS, local_pattern_problem
from pbx_tracker.cel.settings import CelSettings
from pbx_tracker.config_fields import (
    DEFAULT_REGION,
    ConfigModel,
    NonEmptyStr,
    Region,
    ResolvedPath,
    lower_text,
    problem,
)
from pbx_tracker.crm.settings import CrmSettings
from pbx_tracker.exports.settings import ExportSettings
from pbx_tracker.reports.settings import ReportRules, ReportSettings
from pbx_tracker.routing.settings import RoutingSettings
from pbx_tracker.spam.settings import SpamSettings
from pbx_tracker.staff import Directory, Manager, NumberLabels, TrackedNumber
from pbx_tracker.store.settings import DatabaseSettings
from pbx_tracker.web.settings import HttpSettings, WebSettings


def _check_inbound_context(value: str) -> str:
    if not value.strip("*"):
        raise problem(
            "inbound_context",
            "matches every context, internal calls too; name the trunks' contexts, "
            "e.g. from-trunk*",
        )
    return value


def _check_local_channel(value: str) -> str:
    reason = local_pattern_problem(value)
    if reason is not None:
        raise problem("local_channel", reason)
    return value


def _without_inheritance(value: Any) -> Any:
    """``__FROM_DID`` (as the dialplan sets it, inherited) is the variable ``FROM_DID``."""
    return value.strip().lstrip("_") if isinstance(value, str) else value


InboundContext = Annotated[NonEmptyStr, AfterValidator(_check_inbound_context)]
LocalChannel = Annotated[NonEmptyStr, AfterValidator(_check_local_channel)]


class CallsSettings(ConfigModel):
    """Which calls are inbound calls, and what makes a call count."""

    model_config = ConfigDict(extra="forbid")

    inbound_contexts: list[InboundContext] = Field(
        default_factory=lambda: ["from-trunk"], min_length=1
    )
    did_variable: Annotated[NonEmptyStr, BeforeValidator(_without_inheritance)] = "TRACK_DID"
    target_seconds: int = Field(default=30, ge=0)
    local_channels: list[LocalChannel] = Field(
        default_factory=lambda: list(DEFAULT_LOCAL_CHANNELS), min_length=1
    )
    dead_letters: ResolvedPath = Path("/var/lib/pbx-tracker/dead-letters.jsonl")
    dead_letters_max_events: int = Field(default=10_000, ge=1)


_Lower = BeforeValidator(lower_text)


class LoggingSettings(ConfigModel):
    """How much is logged, and as JSON lines or for people ("auto": by terminal)."""

    model_config = ConfigDict(extra="forbid")

    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(lower_text)] = (
        "info"
    )
    format: Annotated[Literal["auto", "json", "console"], BeforeValidator(lower_text)] = "auto"


class Settings(ConfigModel):
    """Everything the daemon is configured with.  Build it with `load_settings`."""

    model_config = ConfigDict(extra="forbid")

    node: NonEmptyStr = "asterisk"
    phone_region: Region = DEFAULT_REGION
    ami: AmiSettings
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    calls: CallsSettings = Field(default_factory=CallsSettings)
    recordings_dir: ResolvedPath = Path("/var/spool/asterisk/monitor")
    tracked_numbers: list[TrackedNumber] = Field(default_factory=list)
    number_pools: list[NumberPool] = Field(default_factory=list)
    managers: list[Manager] = Field(default_factory=list)
    http: HttpSettings = Field(default_factory=HttpSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    crm: CrmSettings = Field(default_factory=CrmSettings)
    attribution: AttributionSettings = Field(default_factory=AttributionSettings)
    agi: AgiSettings = Field(default_factory=AgiSettings)
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
    spam: SpamSettings = Field(default_factory=SpamSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    exports: ExportSettings = Field(default_factory=ExportSettings)
    cel: CelSettings = Field(default_factory=CelSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    _directory: Directory = PrivateAttr(default_factory=Directory)

    def model_post_init(self, context: Any, /) -> None:
        """Build the lookups once (changing the lists afterwards is not seen)."""
        self._directory = Directory(self.managers, self._number_labels(), self.phone_region)

    def _number_labels(self) -> Iterator[NumberLabels]:
        for tracked in self.tracked_numbers:
            yield NumberLabels(tracked.did, tracked.source, tracked.medium, tracked.campaign, None)
        for pool in self.number_pools:
            for did in pool.numbers:
                yield NumberLabels(did, pool.source, pool.medium, pool.campaign, pool.name)

    @property
    def directory(self) -> Directory:
        """The lookups of tracked numbers and managers, for the services."""
        return self._directory

    def find_number(self, did: str | None) -> NumberLabels | None:
        """`Directory.find_number` of this configuration."""
        return self._directory.find_number(did)

    def manager_for_number(self, number: str) -> Manager | None:
        """`Directory.manager_for_number` of this configuration."""
        return self._directory.manager_for_number(number)

    def manager_for_channel(self, channel: str) -> Manager | None:
        """`Directory.manager_for_channel` of this configuration."""
        return self._directory.manager_for_channel(channel)

    def manager_for_extension(self, extension: str) -> Manager | None:
        """`Directory.manager_for_extension` of this configuration."""
        return self._directory.manager_for_extension(extension)

    def report_rules(self) -> ReportRules:
        """The rules reports follow: the ``reports:`` section, with the defaults of the
        other sections (calls' target, attribution model, callbacks' SLA, routing zone)."""
        target, zone = self.reports.target_seconds, self.routing.timezone
        return ReportRules(
            target_seconds=self.calls.target_seconds if target is None else target,
            unique_days=self.reports.unique_days,
            model=self.reports.model or self.attribution.model,
            sla_minutes=self.callbacks.sla_minutes,
            zone=None if zone is None else ZoneInfo(zone),
        )

    def secret_values(self) -> list[str]:
        """Every secret string in the settings, for redacting logs."""
        values = [
            self.ami.secret.get_secret_value(),
            *self.database.password_values(),
            *self.callbacks.secret_values(),
            *self.exports.secret_values(),
            *self.crm.secret_values(),
            *self.cel.secret_values(),
            *([self.http.status_token.get_secret_value()] if self.http.status_token else []),
        ]
        return [value for value in dict.fromkeys(values) if value]
