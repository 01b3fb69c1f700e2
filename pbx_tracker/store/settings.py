"""Settings of the database (``database:`` in the config): where finished calls are
stored, and where they wait while it is away."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from pbx_tracker.config_fields import ConfigModel, ResolvedPath, context_base_dir, problem

__all__ = ["DatabaseSettings"]

_DB_DIALECTS = ("sqlite", "postgresql")


class DatabaseSettings(ConfigModel):
    """Where finished calls are stored, and where they wait while it is away."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(default="sqlite:////var/lib/pbx-tracker/pbx-tracker.sqlite3", repr=False)
    queue_size: int = Field(default=10000, ge=1)
    spill_path: ResolvedPath = Path("/var/lib/pbx-tracker/pending-calls.jsonl")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str, info: ValidationInfo) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.partition("+")[0].lower() not in _DB_DIALECTS:
            raise problem(
                "database_url",
                "must be a SQLAlchemy URL: sqlite:///path/to/file.sqlite3 "
                "or postgresql://user:password@host/dbname",
            )
        if scheme.lower().startswith("sqlite"):
            return f"{scheme}://{_sqlite_location(rest, context_base_dir(info))}"
        return value

    @property
    def display_url(self) -> str:
        """`url` with the password replaced by ``***`` (for logs and repr)."""
        return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", self.url)

    def password_values(self) -> list[str]:
        """The URL's password as written and percent-decoded (empty without one)."""
        password = urlsplit(self.url).password
        return list(dict.fromkeys([password, unquote(password)])) if password else []

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "url", self.display_url
        yield from super().__repr_args__()


def _sqlite_location(rest: str, base_dir: Path) -> str:
    """The part after ``sqlite://`` with a relative file made absolute."""
    location, sep, query = rest.partition("?")
    if location.startswith("/") and not location.startswith("//"):
        file = location[1:]
        if file and file != ":memory:" and not Path(file).is_absolute():
            location = "/" + str(base_dir / file)
    return location + sep + query
