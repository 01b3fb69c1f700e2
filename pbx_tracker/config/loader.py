"""Read, overlay and validate the configuration into `Settings`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pbx_tracker.config.models import Settings
from pbx_tracker.config.problems import MISSING_SECRET, ConfigError, cross_entry_problems, describe
from pbx_tracker.config.sources import (
    CONFIG_ENV,
    overlay_environ,
    raw_secrets,
    read_yaml,
    region_of,
    resolve_secret,
    without_empty_sections,
)

DEFAULT_CONFIG_PATH = Path("/etc/pbx-tracker/config.yaml")


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    need_ami_secret: bool = True,
) -> Settings:
    """Read, overlay and validate the configuration; ConfigError lists every problem.

    The file is ``path``, else ``$PBX_TRACKER_CONFIG``, else
    ``/etc/pbx-tracker/config.yaml``.  ``environ`` defaults to `os.environ`.
    Commands that never talk to Asterisk pass ``need_ami_secret=False``: a
    missing or unreadable secret is then an empty one instead of a problem.
    """
    env = os.environ if environ is None else environ
    file = Path(path or env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    data = read_yaml(file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        found = type(data).__name__
        message = f"the top level must be a mapping of keys to values, not a {found}"
        raise ConfigError([f"{file}: {message}"], file)
    try:
        base_dir = file.absolute().parent
        return settings_from_mapping(data, env, base_dir, need_ami_secret=need_ami_secret)
    except ConfigError as exc:
        raise ConfigError(exc.problems, file) from None


def settings_from_mapping(
    data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    *,
    need_ami_secret: bool = True,
) -> Settings:
    """Validate a configuration given as a dict (as the YAML file would give it).

    ``environ`` (default `os.environ`) is overlaid and ``need_ami_secret`` works
    as in `load_settings`; relative paths are resolved against ``base_dir``
    (default: the working directory).
    """
    env = os.environ if environ is None else environ
    base = Path.cwd() if base_dir is None else base_dir
    raw = without_empty_sections(data)
    from_env = overlay_environ(raw, env)
    secret_problems = resolve_secret(raw, env, base, required=need_ami_secret)
    region = region_of(raw)
    settings, problems = _validate(raw, {"phone_region": region, "base_dir": base}, from_env)
    if secret_problems:
        problems = [line for line in problems if line != f"ami.secret: {MISSING_SECRET}"]
    problems += secret_problems + cross_entry_problems(raw, region)
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def _validate(
    raw: dict[str, Any], context: dict[str, Any], from_env: Mapping[str, str]
) -> tuple[Settings | None, list[str]]:
    """Settings from the prepared data, or None and one line per pydantic error."""
    try:
        return Settings.model_validate(raw, context=context), []
    except ValidationError as exc:
        secrets = raw_secrets(raw)
        return None, [describe(error, from_env, secrets) for error in exc.errors()]
