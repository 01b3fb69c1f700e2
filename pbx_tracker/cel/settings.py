"""Settings of the recovery from Asterisk's CEL log (``cel:`` in the config).

``file``: the CSV file `cel_custom` writes (config/asterisk/cel_custom_pbx_tracker.conf);
``table`` / ``database_url``: read `cel_pgsql`'s table instead, on the PostgreSQL
``database_url`` (default: pbx-tracker's own database); ``longest_call_hours``: a call
still without its end after this long will never end (Asterisk stopped mid-call).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveFloat, SecretStr

from pbx_tracker.config_fields import ConfigModel, NonEmptyStr, ResolvedPath

__all__ = ["CelSettings"]


class CelSettings(ConfigModel):
    """Where Asterisk logs its calls, for the ones made while pbx-tracker did not listen."""

    enabled: bool = True
    file: ResolvedPath = Path("/var/log/asterisk/cel-custom/Master.csv")
    table: NonEmptyStr | None = None
    database_url: SecretStr | None = Field(default=None, repr=False)
    longest_call_hours: PositiveFloat = 12.0

    @property
    def source(self) -> str:
        """What the read position belongs to: the file, or ``table:<name>``."""
        return f"table:{self.table}" if self.table else str(self.file)

    def secret_values(self) -> list[str]:
        return [self.database_url.get_secret_value()] if self.database_url else []
