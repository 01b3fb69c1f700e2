"""Where the configuration comes from: the YAML file, the environment, secret files.

`ConfigLoader` reads YAML without the YAML 1.1 traps; `PBX_TRACKER_<SECTION>__<KEY>`
variables are laid over the file; the AMI secret is found in the strongest
source (``PBX_TRACKER_AMI__SECRET`` > ``ami.secret_file`` >
``$CREDENTIALS_DIRECTORY/ami_secret`` > ``ami.secret``).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BaseModel

from pbx_tracker.config.models import Settings
from pbx_tracker.config.problems import ConfigError
from pbx_tracker.config_fields import DEFAULT_REGION
from pbx_tracker.phones import is_known_region

CONFIG_ENV = "PBX_TRACKER_CONFIG"
ENV_PREFIX = "PBX_TRACKER_"
SECRET_ENV = "PBX_TRACKER_AMI__SECRET"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
SECRET_CREDENTIAL = "ami_secret"

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


def read_yaml(path: Path) -> Any:
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


def _sections() -> tuple[str, ...]:
    """The keys of `Settings` that hold a section or a list (``database:``, ``managers:``)."""
    return tuple(
        name
        for name, field in Settings.model_fields.items()
        if get_origin(field.annotation) is list
        or (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel))
    )


_SECTIONS = _sections()


def without_empty_sections(data: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``data`` without sections left empty (``database:`` alone)."""
    raw = copy.deepcopy(dict(data))
    for section in _SECTIONS:
        if section in raw and raw[section] is None:
            del raw[section]
    return raw


def overlay_environ(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
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


def resolve_secret(
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


def region_of(raw: Mapping[str, Any]) -> str:
    """``phone_region`` when it is usable, else the default (its error is reported)."""
    region = raw.get("phone_region", DEFAULT_REGION)
    if isinstance(region, str) and is_known_region(region.upper()):
        return region.upper()
    return DEFAULT_REGION


def raw_secrets(raw: Mapping[str, Any]) -> list[str]:
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
