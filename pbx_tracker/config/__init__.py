"""Configuration: YAML file, environment and secret files -> validated `Settings`.

Steps, each in its module: `sources` reads the YAML with `ConfigLoader` (no
YAML 1.1 traps) into a plain dict, overlays ``PBX_TRACKER_<SECTION>__<KEY>``
variables and finds the AMI secret (``PBX_TRACKER_AMI__SECRET`` >
``ami.secret_file`` > ``$CREDENTIALS_DIRECTORY/ami_secret`` > ``ami.secret``);
`loader` validates with pydantic into `models.Settings` (every model forbids
unknown keys); `problems` checks what spans several entries (a number or an
extension given twice).  Every problem found is reported at once in
`ConfigError.problems`, one ``key.path: message`` line each, and no line ever
shows a secret.  `weak_secrets` refuses placeholders and well-known defaults.

Rooms own their settings models and never import this package; services are
handed their own section and `Settings.directory` (`pbx_tracker.staff`).

Relative paths (``sqlite:///name.sqlite3``, ``spill_path``, ``secret_file``,
``recordings_dir``) are resolved against the config file's folder, or against
``base_dir`` (default: the working directory) in `settings_from_mapping`.
Phone numbers are read with ``phone_region``; models built directly in code,
without `settings_from_mapping`, read them with ``RU``.  Tracked numbers,
managers' external numbers and the numbers Asterisk reports follow one rule
(`pbx_tracker.phones.canonical_number`): a phone number in any form becomes
E.164, a short internal number (``401``) stays its digits.
"""

from pbx_tracker.ami.settings import AmiSettings
from pbx_tracker.attribution.settings import NumberPool
from pbx_tracker.config.loader import DEFAULT_CONFIG_PATH, load_settings, settings_from_mapping
from pbx_tracker.config.models import CallsSettings, LoggingSettings, Settings
from pbx_tracker.config.problems import MISSING_SECRET, ConfigError
from pbx_tracker.config.sources import ConfigLoader
from pbx_tracker.staff import Manager, NumberLabels, TrackedNumber
from pbx_tracker.store.settings import DatabaseSettings

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "MISSING_SECRET",
    "AmiSettings",
    "CallsSettings",
    "ConfigError",
    "ConfigLoader",
    "DatabaseSettings",
    "LoggingSettings",
    "Manager",
    "NumberLabels",
    "NumberPool",
    "Settings",
    "TrackedNumber",
    "load_settings",
    "settings_from_mapping",
]
