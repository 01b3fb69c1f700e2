"""Configuration: YAML file, environment and secret files -> validated `Settings`.

Steps, each a small function: read the YAML with `ConfigLoader` (no YAML 1.1
traps) into a plain dict; overlay ``PBX_TRACKER_<SECTION>__<KEY>`` variables;
find the AMI secret (``PBX_TRACKER_AMI__SECRET`` > ``ami.secret_file`` >
``$CREDENTIALS_DIRECTORY/ami_secret`` > ``ami.secret``); validate with pydantic
(every model forbids unknown keys); check what spans several entries
(a number or an extension given twice).  Every problem found is reported at
once in `ConfigError.problems`, one ``key.path: message`` line each, and no
line ever shows a secret.

Relative paths (``sqlite:///name.sqlite3``, ``spill_path``, ``secret_file``,
``recordings_dir``) are resolved against the config file's folder, or against
``base_dir`` (default: the working directory) in `settings_from_mapping`.
Phone numbers are read with ``phone_region``; models built directly in code,
without `settings_from_mapping`, read them with ``RU``.  Tracked numbers,
managers' external numbers and the numbers Asterisk reports follow one rule
(`pbx_tracker.phones.canonical_number`): a phone number in any form becomes
E.164, a short internal number (``401``) stays its digits.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from pbx_tracker.agi.settings import AgiSettings
from pbx_tracker.attribution.settings import AttributionSettings, NumberPool, pool_problems
from pbx_tracker.callbacks.settings import CallbackSettings, Channel, callback_problems
from pbx_tracker.calls.topology import (
    DEFAULT_LOCAL_CHANNELS,
    is_pseudo_channel,
    local_pattern_problem,
)
from pbx_tracker.cel.settings import CelSettings
from pbx_tracker.config_fields import (
    DEFAULT_REGION,
    ConfigModel,
    Device,
    Did,
    Email,
    Extension,
    NonEmptyStr,
    Region,
    ResolvedPath,
    TrackedDid,
    context_base_dir,
    lower_text,
    problem,
    try_expand_pool_entry,
)
from pbx_tracker.crm.settings import CrmSettings
from pbx_tracker.exports.settings import ExportSettings
from pbx_tracker.phones import canonical_number, is_dialable, is_known_region
from pbx_tracker.reports.settings import ReportSettings
from pbx_tracker.routing.checks import routing_problems
from pbx_tracker.routing.hours import HoursLine
from pbx_tracker.routing.settings import RoutingSettings
from pbx_tracker.spam.settings import SpamSettings
from pbx_tracker.web.pages_settings import WebSettings, web_user_problems
from pbx_tracker.web.settings import HttpSettings

__all__ = [
    "DEFAULT_CONFIG_PATH",
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

DEFAULT_CONFIG_PATH = Path("/etc/pbx-tracker/config.yaml")
CONFIG_ENV = "PBX_TRACKER_CONFIG"
ENV_PREFIX = "PBX_TRACKER_"
SECRET_ENV = "PBX_TRACKER_AMI__SECRET"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
SECRET_CREDENTIAL = "ami_secret"
_DB_DIALECTS = ("sqlite", "postgresql")
MISSING_SECRET = (
    "missing (set it in the config, PBX_TRACKER_AMI__SECRET, ami.secret_file "
    "or the ami_secret credential)"
)


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one ``key.path: message`` each."""

    def __init__(self, problems: Iterable[str], path: str | os.PathLike[str] | None = None):
        self.problems: list[str] = list(problems)
        self.path = None if path is None else str(path)
        super().__init__("\n".join(self.problems))


# --- YAML -----------------------------------------------------------------

_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_KEEP_AS_STRING = re.compile(r"\+\d+|0\d+")


class ConfigLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` without the YAML 1.1 traps that bite phone numbers.

    ``+74951234567`` and ``0101`` stay strings (plain YAML makes them the int
    74951234567 and the octal 65), only ``true``/``false`` in any case are
    booleans (``yes``, ``no``, ``on``, ``off``, ``NO`` stay strings), and a key
    given twice in one mapping is an error instead of "last one wins".
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_int_or_digits(self, node: yaml.ScalarNode) -> int | str:
        """An int, except ``+digits`` and ``0digits``, which stay as written."""
        text = self.construct_scalar(node)
        if _KEEP_AS_STRING.fullmatch(text):
            return text
        return self.construct_yaml_int(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping, refusing a key that appears twice."""
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


ConfigLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|false)$", re.I), list("tTfF"))
ConfigLoader.add_constructor(_INT_TAG, ConfigLoader.construct_int_or_digits)


def _read_yaml(path: Path) -> Any:
    """The parsed YAML document of ``path``; ConfigError with one line on failure."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([f"{path}: cannot read the config file: {reason}"], path) from None
    try:
        return yaml.load(text, Loader=ConfigLoader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([f"{path}: {_yamlproblem(exc)}"], path) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"], path) from None


def _yamlproblem(exc: yaml.MarkedYAMLError) -> str:
    """Line, column and what went wrong, without the snippet (it may hold a secret)."""
    mark = exc.problem_mark or exc.context_mark
    where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
    what = "; ".join(part for part in (exc.context, exc.problem) if part)
    return f"YAML syntax error{where}: {what}"


# --- models -----------------------------------------------------------------


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


class TrackedNumber(ConfigModel):
    """A DID given to one advertising source."""

    model_config = ConfigDict(extra="forbid")

    did: TrackedDid
    source: NonEmptyStr
    medium: str | None = None
    campaign: str | None = None
    name: str | None = None


class Manager(ConfigModel):
    """A person who answers calls: extension, phones, and (for routing) own hours and dial."""

    model_config = ConfigDict(extra="forbid")

    name: NonEmptyStr
    extension: Extension
    group: str | None = None
    devices: list[Device] = Field(default_factory=list)
    external_numbers: list[Did] = Field(default_factory=list)
    email: Email | None = None
    hours: list[HoursLine] | None = None
    dial: NonEmptyStr | None = None
    notify: list[Channel] | None = None


_Lower = BeforeValidator(lower_text)


class LoggingSettings(ConfigModel):
    """How much is logged, and as JSON lines or for people ("auto": by terminal)."""

    model_config = ConfigDict(extra="forbid")

    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(lower_text)] = (
        "info"
    )
    format: Annotated[Literal["auto", "json", "console"], BeforeValidator(lower_text)] = "auto"


@dataclass(frozen=True, slots=True)
class NumberLabels:
    """What a tracked DID says about a call: its source labels and pool, if any."""

    did: str
    source: str
    medium: str | None
    campaign: str | None
    pool: str | None


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

    _numbers: dict[str, NumberLabels] = PrivateAttr(default_factory=dict)
    _devices: dict[str, Manager] = PrivateAttr(default_factory=dict)
    _bare_extensions: dict[str, Manager] = PrivateAttr(default_factory=dict)
    _extensions: dict[str, Manager] = PrivateAttr(default_factory=dict)
    _external_numbers: dict[str, Manager] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        """Build the lookup tables once (changing the lists afterwards is not seen)."""
        self._index_numbers()
        self._index_managers()

    def _index_numbers(self) -> None:
        for tracked in self.tracked_numbers:
            labels = NumberLabels(
                tracked.did, tracked.source, tracked.medium, tracked.campaign, None
            )
            self._numbers.setdefault(tracked.did, labels)
        for pool in self.number_pools:
            for did in pool.numbers:
                labels = NumberLabels(did, pool.source, pool.medium, pool.campaign, pool.name)
                self._numbers.setdefault(did, labels)

    def _index_managers(self) -> None:
        for manager in self.managers:
            self._extensions.setdefault(manager.extension, manager)
            if not manager.devices:
                self._bare_extensions.setdefault(manager.extension, manager)
            for device in manager.devices:
                self._devices.setdefault(_device_key(device), manager)
            for number in manager.external_numbers:
                self._external_numbers.setdefault(number, manager)

    def find_number(self, did: str | None) -> NumberLabels | None:
        """Labels of a tracked or pool DID, given as Asterisk reports it; else None.

        ``did`` is read by the config's rule: ``84951110002`` finds ``+74951110002``,
        ``401`` finds the short number ``401``.
        """
        if did is None:
            return None
        if did in self._numbers:
            return self._numbers[did]
        number = canonical_number(did, self.phone_region)
        return None if number is None else self._numbers.get(number)

    def manager_for_number(self, number: str) -> Manager | None:
        """The manager one of whose external numbers this is, as a trunk or Dial() writes it
        (``79160000103``, ``89160000103``, ``+79160000103``); else None."""
        found = canonical_number(number, self.phone_region)
        return None if found is None else self._external_numbers.get(found)

    def manager_for_channel(self, channel: str) -> Manager | None:
        """The manager whose phone is ``channel`` (``IAX2/101-11234``, ``PJSIP/anna-0000001a``);
        None for trunks, Local channels and other channels that are no phone."""
        tech, sep, name = channel.partition("/")
        if not sep or not name or is_pseudo_channel(channel):
            return None
        device = name.rsplit("-", 1)[0]
        for candidate in (device, name):
            manager = self._devices.get(f"{tech.lower()}/{candidate}")
            if manager is not None:
                return manager
        return self._bare_extensions.get(device)

    def manager_for_extension(self, extension: str) -> Manager | None:
        """The manager with this extension (``"101"``), or None."""
        return self._extensions.get(extension.strip())

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


def _device_key(device: str) -> str:
    tech, _, name = device.partition("/")
    return f"{tech.lower()}/{name}"


# --- loading ----------------------------------------------------------------


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
    data = _read_yaml(file)
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
    raw = _without_empty_sections(data)
    from_env = _overlay_environ(raw, env)
    secret_problems = _resolve_secret(raw, env, base, required=need_ami_secret)
    region = _region_of(raw)
    settings, problems = _validate(raw, {"phone_region": region, "base_dir": base}, from_env)
    if secret_problems:
        problems = [line for line in problems if line != f"ami.secret: {MISSING_SECRET}"]
    problems += secret_problems + _cross_entry_problems(raw, region)
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
        secrets = _raw_secrets(raw)
        return None, [_describe(error, from_env, secrets) for error in exc.errors()]


_SECTIONS = (
    "ami",
    "database",
    "calls",
    "agi",
    "http",
    "web",
    "crm",
    "spam",
    "attribution",
    "routing",
    "exports",
    "cel",
    "reports",
    "logging",
    "tracked_numbers",
    "number_pools",
    "managers",
)


def _without_empty_sections(data: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``data`` without sections left empty (``database:`` alone)."""
    raw = copy.deepcopy(dict(data))
    for section in _SECTIONS:
        if section in raw and raw[section] is None:
            del raw[section]
    return raw


def _overlay_environ(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Put ``PBX_TRACKER_A__B`` values at ``raw["a"]["b"]``; key path -> variable name."""
    applied: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in (CONFIG_ENV, SECRET_ENV):
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        if not all(keys):
            continue
        node = raw
        for key in keys[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                break
        else:
            node[keys[-1]] = value
            applied[".".join(keys)] = name
    return applied


def _resolve_secret(
    raw: dict[str, Any], environ: Mapping[str, str], base_dir: Path, *, required: bool
) -> list[str]:
    """Set ``raw["ami"]["secret"]`` from the strongest source; problems reading it.

    When the secret is not ``required`` its problems are dropped and it may be empty.
    """
    ami = raw.setdefault("ami", {})
    if not isinstance(ami, dict):
        return []
    problems = _find_secret(ami, environ, base_dir)
    if required:
        return problems
    ami.setdefault("secret", "")
    return []


def _find_secret(ami: dict[str, Any], environ: Mapping[str, str], base_dir: Path) -> list[str]:
    """Env var > ``secret_file`` > systemd credential > YAML ``secret``."""
    if environ.get(SECRET_ENV, "").strip():
        ami["secret"] = environ[SECRET_ENV]
        return []
    secret_file, credentials = ami.get("secret_file"), environ.get(CREDENTIALS_ENV)
    if isinstance(secret_file, str | os.PathLike) and str(secret_file).strip():
        path = Path(secret_file).expanduser()
        return _read_secret(ami, base_dir / path, "ami.secret_file")
    if credentials and _exists(Path(credentials) / SECRET_CREDENTIAL):
        return _read_secret(ami, Path(credentials) / SECRET_CREDENTIAL, "ami.secret")
    if isinstance(ami.get("secret"), str) and not ami["secret"].strip():
        del ami["secret"]
    return []


def _exists(path: Path) -> bool:
    """True when ``path`` is there, or may be (reading it will then tell why not)."""
    try:
        return path.exists()
    except OSError:
        return True


def _read_secret(ami: dict[str, Any], path: Path, key: str) -> list[str]:
    """Put the stripped content of ``path`` in ``ami["secret"]``; problems if unusable."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        return [f"{key}: cannot read {path}: {exc.strerror or exc}"]
    except UnicodeDecodeError:
        return [f"{key}: {path} is not UTF-8 text"]
    if not secret:
        return [f"{key}: {path} is empty"]
    ami["secret"] = secret
    return []


def _region_of(raw: Mapping[str, Any]) -> str:
    """``phone_region`` when it is usable, else the default (its error is reported)."""
    region = raw.get("phone_region", DEFAULT_REGION)
    if isinstance(region, str) and is_known_region(region.upper()):
        return region.upper()
    return DEFAULT_REGION


def _raw_secrets(raw: Mapping[str, Any]) -> list[str]:
    """Secret strings of the unvalidated data, so that no problem line shows them."""
    ami, database = raw.get("ami"), raw.get("database")
    found = [ami.get("secret")] if isinstance(ami, dict) else []
    url = database.get("url") if isinstance(database, dict) else None
    if isinstance(url, str):
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        found += [password, unquote(password)] if password else []
    return [value for value in found if isinstance(value, str) and value]


# --- problem lines ------------------------------------------------------------

_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "missing",
    "int_parsing": "Input should be a valid integer",
    "float_parsing": "Input should be a valid number",
    "path_type": "Input should be a valid path",
}
_WITHOUT_INPUT = frozenset({"extra_forbidden", "missing"})
_SECRET_KEYS = frozenset(
    {"secret", "url", "database_url", "password", "status_token", "password_hash"}
)
_MAX_SHOWN = 60


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``("tracked_numbers", 3, "did")`` -> ``tracked_numbers[3].did``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _describe(error: ErrorDetails, from_env: Mapping[str, str], secrets: list[str]) -> str:
    """One problem line for a pydantic error, never showing a secret value."""
    kind, loc = error["type"], error["loc"]
    if kind == "invalid_key":
        loc = (*loc[:-1], str(loc[-1]))
    path = _key_path(loc)
    message = _MESSAGES.get(kind, error["msg"])
    if path == "ami.secret" and kind == "missing":
        message = MISSING_SECRET
    elif kind not in _WITHOUT_INPUT and not _SECRET_KEYS.intersection(map(str, loc)):
        message += _shown_input(error.get("input"), message, secrets)
    if kind == "string_type" and isinstance(error.get("input"), int | float):
        message += "; put it in quotes"
    env_name = from_env.get(path) or from_env.get(path.partition(".")[0])
    return f"{path}: {message}" + (f" (from {env_name})" if env_name else "")


def _shown_input(value: Any, message: str, secrets: list[str]) -> str:
    """`` (got 'five')`` for a scalar not in ``message`` that holds no secret, else nothing."""
    if not isinstance(value, str | int | float | bool):  # None: the key was left out
        return ""
    repeated = len(str(value)) >= 5 and str(value) in message
    if repeated or any(secret in str(value) for secret in secrets):
        return ""
    shown = repr(value)
    return f" (got {shown[:_MAX_SHOWN] + '...' if len(shown) > _MAX_SHOWN else shown})"


# --- checks across entries ------------------------------------------------------


def _entries(raw: Mapping[str, Any], key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = raw.get(key)
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield index, item


def _did_entries(
    raw: Mapping[str, Any], region: str
) -> Iterator[tuple[str, str, list[tuple[str, str]]]]:
    """(problem key, owner name, [(as written, canonical)]) for every usable number entry:
    tracked numbers, pool numbers, then managers' external numbers."""
    for index, item in _entries(raw, "tracked_numbers"):
        with_numbers = try_expand_pool_entry(item.get("did"), region)
        yield f"tracked_numbers[{index}].did", f"tracked_numbers[{index}]", with_numbers
    for index, pool in _entries(raw, "number_pools"):
        numbers = pool.get("numbers")
        for position, entry in enumerate(numbers if isinstance(numbers, list) else []):
            key = f"number_pools[{index}].numbers[{position}]"
            yield key, key, try_expand_pool_entry(entry, region)
    for index, manager in _entries(raw, "managers"):
        numbers = manager.get("external_numbers")
        for position, entry in enumerate(numbers if isinstance(numbers, list) else []):
            key = f"managers[{index}].external_numbers[{position}]"
            yield key, key, _external_number(entry, region)


def _external_number(entry: Any, region: str) -> list[tuple[str, str]]:
    """[(as written, E.164)] of a phone number; [] for anything else (validation says why)."""
    number = canonical_number(entry, region) if isinstance(entry, str) else None
    return [(entry.strip(), number)] if is_dialable(number) and number else []


def _duplicate_dids(raw: Mapping[str, Any], region: str) -> list[str]:
    """``number_pools[0].numbers[2]: 74951110001 is already tracked_numbers[0]``; the same
    number in two forms (``84951110001``, ``+74951110001``) counts as given twice."""
    owners: dict[str, str] = {}
    problems = []
    for key, owner, numbers in _did_entries(raw, region):
        clashes = [(written, owners[e164]) for written, e164 in numbers if e164 in owners]
        if clashes:
            written, other = clashes[0]
            more = f" (and {len(clashes) - 1} more of this range)" if len(clashes) > 1 else ""
            problems.append(f"{key}: {written} is already {other}{more}")
        for _, e164 in numbers:
            owners.setdefault(e164, owner)
    return problems


def _duplicate_values(raw: Mapping[str, Any], section: str, field: str) -> list[str]:
    """``managers[2].extension: 101 is already managers[0]``."""
    owners: dict[str, str] = {}
    problems = []
    for index, item in _entries(raw, section):
        value = item.get(field)
        if not isinstance(value, str):
            continue
        if value.strip() in owners:
            problems.append(
                f"{section}[{index}].{field}: {value} is already {owners[value.strip()]}"
            )
        owners.setdefault(value.strip(), f"{section}[{index}]")
    return problems


def _duplicate_devices(raw: Mapping[str, Any]) -> list[str]:
    """``managers[1].devices[0]: PJSIP/101 is already managers[0]``."""
    owners: dict[str, str] = {}
    problems = []
    for index, manager in _entries(raw, "managers"):
        devices = manager.get("devices")
        for position, device in enumerate(devices if isinstance(devices, list) else []):
            if not isinstance(device, str):
                continue
            key, owner = _device_key(device.strip()), f"managers[{index}]"
            if owners.get(key, owner) != owner:
                problems.append(f"{owner}.devices[{position}]: {device} is already {owners[key]}")
            owners.setdefault(key, owner)
    return problems


def _cross_entry_problems(raw: Mapping[str, Any], region: str) -> list[str]:
    return [
        *_duplicate_dids(raw, region),
        *_duplicate_values(raw, "number_pools", "name"),
        *_duplicate_values(raw, "managers", "extension"),
        *_duplicate_devices(raw),
        *routing_problems(raw, region),
        *callback_problems(raw),
        *pool_problems(raw, region),
        *web_user_problems(raw),
    ]
