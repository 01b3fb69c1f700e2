"""Configuration as the administrator meets it: the file, the environment, the problems."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pbx_tracker.attribution.configured_pools import VisitPools
from pbx_tracker.config import (
    DEFAULT_CONFIG_PATH,
    MISSING_SECRET,
    ConfigError,
    ConfigLoader,
    Settings,
    load_settings,
    settings_from_mapping,
)
from pbx_tracker.store.engine import make_async_engine

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "pbx-tracker.example.yaml"
TRACES = REPO / "tests" / "data" / "asterisk-traces" / "pbx-tracker.yaml"
SECRET = "s3cret-Ami-Pass"


def write(folder: Path, text: str, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(data: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data, environ={} if environ is None else environ)
    return caught.value.problems


def file_problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={} if environ is None else environ)
    return caught.value.problems


def minimal(**extra: Any) -> dict[str, Any]:
    return {"ami": {"secret": SECRET}, **extra}


def load(data: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    return settings_from_mapping(data, environ={} if environ is None else environ)


# --- YAML traps ------------------------------------------------------------------


def parse(text: str) -> Any:
    return yaml.load(textwrap.dedent(text), Loader=ConfigLoader)


def test_plus_number_stays_a_string() -> None:
    """A tracked number written +74951234567 without quotes stays that number, not an integer
    without its plus."""
    assert parse("did: +74951234567") == {"did": "+74951234567"}


def test_leading_zero_extension_stays_a_string_not_octal() -> None:
    """An extension 0101 or a number 0049... written without quotes keeps its leading zeros instead
    of becoming an octal number."""
    assert parse("extension: 0101") == {"extension": "0101"}
    assert parse("did: 0049301234567") == {"did": "0049301234567"}


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Yes", "NO", "y", "n", "Off"])
def test_yaml_1_1_booleans_stay_words(word: str) -> None:
    """Words such as yes, no, on and off stay words in the config, so 'events: on' means what AMI
    expects."""
    assert parse(f"value: {word}") == {"value": word}


@pytest.mark.parametrize(
    ("word", "value"),
    [("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False)],
)
def test_only_true_and_false_are_booleans(word: str, value: bool) -> None:
    """Only true and false, in any case, are read as booleans in the config."""
    assert parse(f"value: {word}") == {"value": value}


def test_other_scalars_keep_their_yaml_types() -> None:
    """Port numbers, zero, decimals and null keep their YAML types, and a number range stays
    text."""
    text = "port: 5038\nzero: 0\nfloat: 1.5\nnothing: null\nrange: 74951110010-74951110019"
    assert parse(text) == {
        "port": 5038,
        "zero": 0,
        "float": 1.5,
        "nothing": None,
        "range": "74951110010-74951110019",
    }


def test_plain_pyyaml_would_have_broken_these(tmp_path: Path) -> None:
    """The config reader keeps +74951234567, 0101 and on as written where plain PyYAML would have
    turned them into 74951234567, 65 and True."""
    text = "did: +74951234567\nextension: 0101\nevents: on\n"
    assert yaml.safe_load(text) == {"did": 74951234567, "extension": 65, "events": True}
    assert parse(text) == {"did": "+74951234567", "extension": "0101", "events": "on"}


def test_unquoted_did_with_plus_loads_as_tracked_number(tmp_path: Path) -> None:
    """A config file with an unquoted +7 tracked number and an extension 0101 loads them exactly as
    the administrator wrote them."""
    path = write(
        tmp_path,
        f"""\
        ami: {{secret: {SECRET}}}
        tracked_numbers:
          - did: +74951234567
            source: yandex-direct
        managers:
          - name: Anna
            extension: 0101
        """,
    )
    settings = load_settings(path, environ={})
    assert settings.tracked_numbers[0].did == "+74951234567"
    assert settings.managers[0].extension == "0101"


def test_duplicate_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    """A key written twice in the config file is reported with the file, the key and its line rather
    than the last one silently winning."""
    path = write(tmp_path, "ami:\n  port: 5038\n  port: 5039\n")
    (problem,) = file_problems(path)
    assert problem.startswith(f"{path}: ")
    assert "duplicate key 'port'" in problem
    assert "line 3" in problem


# --- the file ----------------------------------------------------------------------


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    """A config file that does not exist gives one line naming the file and saying it cannot be
    read."""
    path = tmp_path / "nowhere.yaml"
    assert file_problems(path) == [
        f"{path}: cannot read the config file: No such file or directory"
    ]


def test_syntax_error_names_the_line_and_never_the_secret(tmp_path: Path) -> None:
    """A YAML syntax error is reported with its line number and never quotes the secret on that
    line."""
    path = write(tmp_path, f'node: pbx\nami:\n  secret: "{SECRET}\n  port: 5038\n')
    (problem,) = file_problems(path)
    assert problem.startswith(f"{path}: YAML syntax error at line ")
    assert SECRET not in problem


def test_bad_indentation_reports_the_line(tmp_path: Path) -> None:
    """Wrong indentation in the config file is reported as a syntax error at its line."""
    path = write(tmp_path, "ami:\n  host: 127.0.0.1\n port: 5038\n")
    (problem,) = file_problems(path)
    assert "YAML syntax error at line 3" in problem


@pytest.mark.parametrize(("text", "found"), [("- a\n- b\n", "list"), ("just text\n", "str")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, found: str) -> None:
    """A config file that is a list or plain text is refused, saying the top level must be keys and
    values and what it found."""
    path = write(tmp_path, text)
    assert file_problems(path) == [
        f"{path}: the top level must be a mapping of keys to values, not a {found}"
    ]


def test_empty_file_means_all_defaults(tmp_path: Path) -> None:
    """A config file with only a comment runs on the defaults."""
    path = write(tmp_path, "# nothing yet\n")
    settings = load_settings(path, environ={"PBX_TRACKER_AMI__SECRET": SECRET})
    assert settings.node == "asterisk"


def test_config_path_from_environment(tmp_path: Path) -> None:
    """PBX_TRACKER_CONFIG names the config file when no path is given."""
    path = write(tmp_path, "node: from-env\n")
    environ = {"PBX_TRACKER_CONFIG": str(path), "PBX_TRACKER_AMI__SECRET": SECRET}
    assert load_settings(environ=environ).node == "from-env"


def test_explicit_path_beats_environment(tmp_path: Path) -> None:
    """A config path given on the command line wins over PBX_TRACKER_CONFIG."""
    path = write(tmp_path, "node: explicit\n")
    environ = {"PBX_TRACKER_CONFIG": str(tmp_path / "absent.yaml")}
    environ["PBX_TRACKER_AMI__SECRET"] = SECRET
    assert load_settings(path, environ=environ).node == "explicit"


@pytest.mark.skipif(DEFAULT_CONFIG_PATH.exists(), reason="this machine has a real config")
def test_default_path_is_etc() -> None:
    """Without a path or PBX_TRACKER_CONFIG the config is read from /etc/pbx-tracker/config.yaml,
    and its absence is reported with that path."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={})
    assert caught.value.path == "/etc/pbx-tracker/config.yaml"
    assert caught.value.problems[0].startswith("/etc/pbx-tracker/config.yaml: cannot read")


# --- every problem, with its key -------------------------------------------------------------


def test_three_mistakes_give_three_lines(tmp_path: Path) -> None:
    """Three mistakes in the config file (a port that is no number, a misspelled key, a bad tracked
    number) are reported as three lines at once, each with its key and the value written."""
    path = write(
        tmp_path,
        f"""\
        ami:
          port: five
          scret: {SECRET}
          secret: {SECRET}
        tracked_numbers:
          - did: "74951110001"
            source: yandex-direct
          - did: not-a-number
            source: google-ads
        """,
    )
    assert file_problems(path) == [
        "ami.port: Input should be a valid integer (got 'five')",
        "ami.scret: unknown key",
        "tracked_numbers[1].did: not a phone number, nor an internal number of 1 to 6 digits"
        " (got 'not-a-number')",
    ]
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_key_path_of_a_list_item() -> None:
    """A bad entry in a list is reported with its position, such as tracked_numbers[3].did."""
    numbers = [{"did": f"7495111000{n}", "source": "s"} for n in range(1, 4)]
    numbers.append({"did": "12ab", "source": "s"})
    (problem,) = problems_of(minimal(tracked_numbers=numbers))
    assert problem.startswith("tracked_numbers[3].did: not a phone number")


def test_number_where_a_string_is_expected_is_reported() -> None:
    """A tracked number or extension written as a bare number is reported, saying to put it in
    quotes."""
    data = minimal(
        tracked_numbers=[{"did": 74951110001, "source": "s"}],
        managers=[{"name": "Anna", "extension": 101}],
    )
    assert problems_of(data) == [
        "tracked_numbers[0].did: Input should be a valid string (got 74951110001);"
        " put it in quotes",
        "managers[0].extension: Input should be a valid string (got 101); put it in quotes",
    ]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"ami": {"port": 70000}}, "ami.port: Input should be less than or equal to 65535"),
        ({"ami": {"ping_interval": 0}}, "ami.ping_interval: Input should be greater than 0"),
        ({"database": {"queue_size": 0}}, "database.queue_size: Input should be greater than"),
        ({"calls": {"inbound_contexts": []}}, "calls.inbound_contexts: List should have at least"),
        ({"calls": {"target_seconds": -1}}, "calls.target_seconds: Input should be greater than"),
        ({"logging": {"level": "verbose"}}, "logging.level: Input should be 'debug', 'info'"),
        ({"logging": {"format": "xml"}}, "logging.format: Input should be 'auto', 'json'"),
        ({"phone_region": "XX"}, "phone_region: unknown region"),
        ({"node": ""}, "node: String should have at least 1 character"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"database": {"ulr": "x"}}, "database.ulr: unknown key"),
        ({"tracked_numbers": [{"did": "74951110001"}]}, "tracked_numbers[0].source: missing"),
        (
            {"tracked_numbers": [{"did": "+74951110001", "source": " "}]},
            "tracked_numbers[0].source",
        ),
        (
            {"managers": [{"name": "A", "extension": "10a"}]},
            "managers[0].extension: must be 1 to 10",
        ),
        ({"managers": [{"name": "A", "extension": "12345678901"}]}, "managers[0].extension"),
        (
            {"managers": [{"name": "A", "extension": "1", "devices": ["101"]}]},
            "managers[0].devices[0]: must",
        ),
        (
            {"managers": [{"name": "A", "extension": "1", "email": "anna"}]},
            "managers[0].email: not an",
        ),
        ({"number_pools": [{"name": "p", "numbers": []}]}, "number_pools[0].numbers: List should"),
    ],
)
def test_problem_names_the_key(data: dict[str, Any], problem: str) -> None:
    """Each out-of-range or unknown value (AMI port, ping interval, queue size, contexts, target
    seconds, log level or format, region, node, an unknown key) is reported with its key and what is
    allowed."""
    data.setdefault("ami", {}).setdefault("secret", SECRET)
    (line,) = problems_of(data)
    assert line.startswith(problem)


def test_problems_of_several_sections_are_reported_together() -> None:
    """Problems in several sections are all reported together, in the order of the config, so the
    administrator fixes them in one go."""
    data = {
        "phone_region": "XX",
        "ami": {"port": "five", "reconnect_initial": 10, "reconnect_max": 2},
        "database": {"url": "mysql://localhost/calls"},
        "tracked_numbers": [{"did": "74951110001", "source": "a"}],
        "number_pools": [{"name": "site", "numbers": ["74951110001"]}],
        "managers": [{"name": "A", "extension": "101"}, {"name": "B", "extension": "101"}],
        "logging": {"level": "loud"},
    }
    keys = [line.partition(":")[0] for line in problems_of(data)]
    assert keys == [
        "phone_region",
        "ami.port",
        "ami.secret",
        "ami.reconnect_max",
        "database.url",
        "logging.level",
        "number_pools[0].numbers[0]",
        "managers[1].extension",
    ]


def test_reconnect_max_below_initial() -> None:
    """A maximum reconnect delay below the initial one is reported with both values."""
    data = {"ami": {"secret": SECRET, "reconnect_initial": 5, "reconnect_max": 2}}
    assert problems_of(data) == [
        "ami.reconnect_max: must be at least reconnect_initial (5.0) (got 2)"
    ]


def test_reconnect_initial_above_the_default_max() -> None:
    """An initial reconnect delay above the default maximum is reported, asking for a larger
    maximum."""
    (line,) = problems_of({"ami": {"secret": SECRET, "reconnect_initial": 60}})
    assert line.startswith("ami.reconnect_max: must be at least reconnect_initial (60.0)")


# --- duplicates ----------------------------------------------------------------------


def test_same_did_in_tracked_numbers_and_a_pool() -> None:
    """A number that is both a tracked number and in a pool is reported at the pool entry, naming
    where it already is."""
    data = minimal(
        tracked_numbers=[{"did": "74951110001", "source": "yandex-direct"}],
        number_pools=[{"name": "site", "numbers": ["74951110050", "74951110051", "74951110001"]}],
    )
    assert problems_of(data) == [
        "number_pools[0].numbers[2]: 74951110001 is already tracked_numbers[0]"
    ]


def test_same_did_written_two_ways() -> None:
    """The same tracked number written two ways (+7 495 111-00-01 and 84951110001) is reported as a
    duplicate."""
    data = minimal(
        tracked_numbers=[
            {"did": "+7 495 111-00-01", "source": "a"},
            {"did": "84951110001", "source": "b"},
        ]
    )
    assert problems_of(data) == [
        "tracked_numbers[1].did: 84951110001 is already tracked_numbers[0]"
    ]


def test_overlapping_ranges_are_one_line_per_entry() -> None:
    """Two pool ranges that overlap give one line naming the first shared number and how many more
    of the range are shared."""
    data = minimal(
        number_pools=[
            {"name": "site", "numbers": ["74951110010-74951110019"]},
            {"name": "landing", "numbers": ["74951110015-74951110024"]},
        ]
    )
    assert problems_of(data) == [
        "number_pools[1].numbers[0]: 74951110015 is already number_pools[0].numbers[0]"
        " (and 4 more of this range)"
    ]


def test_same_extension_twice() -> None:
    """Two managers with the same extension are reported at the second one."""
    managers = [
        {"name": "Anna", "extension": "101"},
        {"name": "Boris", "extension": "102"},
        {"name": "Vera", "extension": "101"},
    ]
    assert problems_of(minimal(managers=managers)) == [
        "managers[2].extension: 101 is already managers[0]"
    ]


def test_same_device_twice_and_same_pool_name_twice() -> None:
    """Two pools with the same name and a phone device listed for two managers (in any case) are
    each reported."""
    data = minimal(
        managers=[
            {"name": "Anna", "extension": "101", "devices": ["PJSIP/101"]},
            {"name": "Boris", "extension": "102", "devices": ["pjsip/101"]},
        ],
        number_pools=[
            {"name": "site", "numbers": ["74951110010"]},
            {"name": "site", "numbers": ["74951110011"]},
        ],
    )
    assert problems_of(data) == [
        "number_pools[1].name: site is already number_pools[0]",
        "managers[1].devices[0]: pjsip/101 is already managers[0]",
    ]


# --- number pools -----------------------------------------------------------------------


def test_range_is_expanded_and_normalised() -> None:
    """A pool written as a number range is expanded into every number in E.164 form, alongside
    single numbers, with 'pool' as its source."""
    data = minimal(
        number_pools=[{"name": "site", "numbers": ["74951110010-74951110012", "84951110020"]}]
    )
    pool = load(data).number_pools[0]
    assert pool.numbers == ["+74951110010", "+74951110011", "+74951110012", "+74951110020"]
    assert pool.source == "pool"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("74951110019-74951110010", "the first number must not exceed the last"),
        ("74951110010-7495111001", "both ends must have the same length"),
        ("74951000000-74951999999", "more than 1000 numbers"),
        ("12345-12349", "not phone numbers"),
        ("hello", "not a phone number"),
    ],
)
def test_bad_range(entry: str, message: str) -> None:
    """A pool range written wrong (backwards, ends of different lengths, over 1000 numbers, not
    phone numbers) is reported at its entry, saying what is wrong."""
    data = minimal(number_pools=[{"name": "site", "numbers": ["74951110001", entry]}])
    (line,) = problems_of(data)
    assert line.startswith("number_pools[0].numbers[1]: ")
    assert message in line


def test_thousand_numbers_is_the_largest_range() -> None:
    """A pool range of exactly 1000 numbers is accepted."""
    data = minimal(number_pools=[{"name": "big", "numbers": ["74951000000-74951000999"]}])
    assert len(load(data).number_pools[0].numbers) == 1000


# --- environment and secrets ----------------------------------------------------------------


def test_environment_overrides_yaml(tmp_path: Path) -> None:
    """PBX_TRACKER_... variables override the config file for the node, AMI host and port, database
    URL, log level and target seconds, and other variables are ignored."""
    path = write(tmp_path, f"node: yaml\nami:\n  port: 5038\n  secret: {SECRET}\n")
    environ = {
        "PBX_TRACKER_NODE": "env",
        "PBX_TRACKER_AMI__PORT": "5039",
        "PBX_TRACKER_AMI__HOST": "10.0.0.5",
        "PBX_TRACKER_DATABASE__URL": "postgresql://tracker:db-pass@db.local/calls",
        "PBX_TRACKER_LOGGING__LEVEL": "debug",
        "PBX_TRACKER_CALLS__TARGET_SECONDS": "45",
        "UNRELATED": "ignored",
    }
    settings = load_settings(path, environ=environ)
    assert (settings.node, settings.ami.host, settings.ami.port) == ("env", "10.0.0.5", 5039)
    assert settings.database.url == "postgresql://tracker:db-pass@db.local/calls"
    assert settings.logging.level == "debug"
    assert settings.calls.target_seconds == 45


def test_bad_environment_value_names_the_variable() -> None:
    """A bad value or unknown key given in the environment is reported with the variable it came
    from."""
    environ = {"PBX_TRACKER_AMI__PORT": "five", "PBX_TRACKER_AMI__SCRET": "x"}
    assert problems_of(minimal(), environ) == [
        "ami.port: Input should be a valid integer (got 'five') (from PBX_TRACKER_AMI__PORT)",
        "ami.scret: unknown key (from PBX_TRACKER_AMI__SCRET)",
    ]


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({"env", "file", "credential", "yaml"}, "from-env"),
        ({"file", "credential", "yaml"}, "from-file"),
        ({"credential", "yaml"}, "from-credential"),
        ({"yaml"}, "from-yaml"),
    ],
)
def test_secret_precedence(tmp_path: Path, sources: set[str], expected: str) -> None:
    """The AMI secret is taken from the environment first, then the secret file, then the systemd
    credential, then the config file."""
    ami: dict[str, Any] = {}
    environ: dict[str, str] = {}
    if "env" in sources:
        environ["PBX_TRACKER_AMI__SECRET"] = "from-env"
    if "file" in sources:
        ami["secret_file"] = str(write(tmp_path, "  from-file\n", "ami_secret.txt"))
    if "credential" in sources:
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        write(credentials, "from-credential\n", "ami_secret")
        environ["CREDENTIALS_DIRECTORY"] = str(credentials)
    if "yaml" in sources:
        ami["secret"] = "from-yaml"
    settings = load({"ami": ami}, environ)
    assert settings.ami.secret.get_secret_value() == expected


def test_credentials_directory_without_our_credential_falls_back_to_yaml(tmp_path: Path) -> None:
    """A systemd credentials directory without our credential leaves the secret from the config file
    in use."""
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    settings = load({"ami": {"secret": "from-yaml"}}, environ)
    assert settings.ami.secret.get_secret_value() == "from-yaml"


def test_empty_environment_secret_counts_as_unset() -> None:
    """An empty PBX_TRACKER_AMI__SECRET is treated as unset, so the config file's secret is used."""
    settings = load({"ami": {"secret": "from-yaml"}}, {"PBX_TRACKER_AMI__SECRET": ""})
    assert settings.ami.secret.get_secret_value() == "from-yaml"


def test_secret_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    """A relative secret_file is read next to the config file, not in the current directory."""
    write(tmp_path, "file-secret\n", "ami_secret")
    path = write(tmp_path, "ami:\n  secret_file: ami_secret\n")
    settings = load_settings(path, environ={})
    assert settings.ami.secret.get_secret_value() == "file-secret"
    assert settings.ami.secret_file == tmp_path / "ami_secret"


@pytest.mark.parametrize("ami", [{}, {"secret": ""}, {"host": "127.0.0.1"}])
def test_missing_secret(ami: dict[str, Any]) -> None:
    """A daemon config without an AMI secret (no ami section, an empty secret, or no secret key) is
    reported once, saying where the secret can be set."""
    data = {"ami": ami} if ami else {}
    assert problems_of(data) == [f"ami.secret: {MISSING_SECRET}"]
    assert MISSING_SECRET.startswith("missing (set it in the config, PBX_TRACKER_AMI__SECRET")


def test_unreadable_secret_file_is_the_only_secret_problem(tmp_path: Path) -> None:
    """An unreadable secret file is reported with its path and the reason, and is the only secret
    problem shown."""
    absent = tmp_path / "absent"
    assert problems_of({"ami": {"secret_file": str(absent), "secret": "yaml"}}) == [
        f"ami.secret_file: cannot read {absent}: No such file or directory"
    ]


def test_empty_secret_file(tmp_path: Path) -> None:
    """An empty secret file is reported as empty."""
    empty = write(tmp_path, "\n", "ami_secret")
    assert problems_of({"ami": {"secret_file": str(empty)}}) == [
        f"ami.secret_file: {empty} is empty"
    ]


def test_secret_not_needed_for_offline_commands(tmp_path: Path) -> None:
    """Commands that do not talk to Asterisk (reports, exports) run without an AMI secret, even when
    the secret file is missing."""
    path = write(tmp_path, "ami:\n  secret_file: absent\n")
    settings = load_settings(path, environ={}, need_ami_secret=False)
    assert settings.ami.secret.get_secret_value() == ""
    assert settings.secret_values() == []


def test_secret_never_shown_in_problems(tmp_path: Path) -> None:
    """No problem line shows the AMI secret or a database password, even when they sit in a wrong
    key or a bad value."""
    path = write(
        tmp_path,
        f"""\
        ami:
          secret: 12345678
          scret: {SECRET}
          username: [{SECRET}]
        database:
          url: mysql://tracker:{SECRET}@db/calls
        """,
    )
    problems = file_problems(path)
    assert [line.partition(":")[0] for line in problems] == [
        "ami.username",
        "ami.secret",
        "ami.scret",
        "database.url",
    ]
    assert not any(SECRET in line or "12345678" in line for line in problems)


def test_value_holding_the_secret_is_not_shown() -> None:
    """A value that happens to be the secret is not quoted in the problem about it."""
    data = {"ami": {"secret": SECRET, "port": SECRET}}
    assert problems_of(data) == ["ami.port: Input should be a valid integer"]


def test_secrets_never_in_repr_or_str_but_listed_for_redaction() -> None:
    """Printed settings never show the AMI secret or the database password (the URL shows ***), and
    both are listed so logs can redact them."""
    settings = load(
        {
            "ami": {"secret": SECRET},
            "database": {"url": "postgresql://tracker:p%40ss-word@db/calls"},
        }
    )
    for text in (repr(settings), str(settings), repr(settings.ami), repr(settings.database)):
        assert SECRET not in text
        assert "ss-word" not in text
    assert "postgresql://tracker:***@db/calls" in repr(settings)
    assert settings.database.display_url == "postgresql://tracker:***@db/calls"
    assert settings.secret_values() == [SECRET, "p%40ss-word", "p@ss-word"]


# --- defaults and paths -------------------------------------------------------------------


def test_defaults() -> None:
    """A minimal config runs with the documented defaults: local AMI on 5038 as pbx-tracker, SQLite
    under /var/lib/pbx-tracker, from-trunk calls with TRACK_DID, 30 s target calls and info
    logging."""
    settings = load(minimal())
    assert settings.node == "asterisk"
    assert settings.phone_region == "RU"
    ami = settings.ami
    assert (ami.host, ami.port, ami.username, ami.events) == (
        "127.0.0.1",
        5038,
        "pbx-tracker",
        "on",
    )
    assert (ami.connect_timeout, ami.ping_interval, ami.ping_timeout) == (5, 10, 5)
    assert (ami.reconnect_initial, ami.reconnect_max, ami.secret_file) == (1, 30, None)
    assert settings.database.url == "sqlite:////var/lib/pbx-tracker/pbx-tracker.sqlite3"
    assert settings.database.queue_size == 10000
    assert settings.database.spill_path == Path("/var/lib/pbx-tracker/pending-calls.jsonl")
    assert settings.calls.inbound_contexts == ["from-trunk"]
    assert (settings.calls.did_variable, settings.calls.target_seconds) == ("TRACK_DID", 30)
    assert settings.recordings_dir == Path("/var/spool/asterisk/monitor")
    assert (settings.tracked_numbers, settings.number_pools, settings.managers) == ([], [], [])
    assert (settings.logging.level, settings.logging.format) == ("info", "auto")


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    """Sections left empty in the config file mean their defaults."""
    path = write(tmp_path, f"ami:\n  secret: {SECRET}\ndatabase:\ncalls:\ntracked_numbers:\n")
    settings = load_settings(path, environ={})
    assert settings.database.queue_size == 10000
    assert settings.tracked_numbers == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///calls.sqlite3", "sqlite:///{dir}/calls.sqlite3"),
        ("sqlite+aiosqlite:///data/calls.sqlite3", "sqlite+aiosqlite:///{dir}/data/calls.sqlite3"),
        ("sqlite:////var/lib/x.sqlite3", "sqlite:////var/lib/x.sqlite3"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite://", "sqlite://"),
        ("postgresql://u:p@localhost/calls", "postgresql://u:p@localhost/calls"),
        (
            "postgresql+psycopg://u@localhost:5433/calls",
            "postgresql+psycopg://u@localhost:5433/calls",
        ),
    ],
)
def test_database_url(tmp_path: Path, url: str, expected: str) -> None:
    """Relative SQLite paths in the database URL are read next to the config file, while absolute
    paths, in-memory SQLite and PostgreSQL URLs are kept."""
    path = write(tmp_path, f"ami: {{secret: {SECRET}}}\ndatabase:\n  url: '{url}'\n")
    settings = load_settings(path, environ={})
    assert settings.database.url == expected.format(dir=tmp_path)


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "postgres://u:p@h/db", "/var/lib/x.sqlite3"])
def test_unsupported_database_url(url: str) -> None:
    """A MySQL URL, an old postgres:// URL or a bare path is refused as not a supported SQLAlchemy
    URL, without quoting the URL (it may hold a password)."""
    (line,) = problems_of(minimal(database={"url": url}))
    assert line.startswith("database.url: must be a SQLAlchemy URL")
    assert url not in line


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    """The spill file and the recordings folder given as relative paths are read next to the config
    file."""
    path = write(
        tmp_path,
        f"ami: {{secret: {SECRET}}}\ndatabase:\n  spill_path: spill.jsonl\nrecordings_dir: rec\n",
    )
    settings = load_settings(path, environ={})
    assert settings.database.spill_path == tmp_path / "spill.jsonl"
    assert settings.recordings_dir == tmp_path / "rec"


def test_base_dir_for_configs_built_in_code(tmp_path: Path) -> None:
    """Settings built in code resolve relative SQLite paths against the folder given."""
    data = minimal(database={"url": "sqlite:///x.sqlite3"})
    settings = settings_from_mapping(data, environ={}, base_dir=tmp_path)
    assert settings.database.url == f"sqlite:///{tmp_path}/x.sqlite3"


def test_case_is_forgiven_for_choices_and_region() -> None:
    """Choices and the phone region are accepted in any case (ru, DEBUG, Json)."""
    settings = load(minimal(phone_region="ru", logging={"level": "DEBUG", "format": "Json"}))
    assert (settings.phone_region, settings.logging.level, settings.logging.format) == (
        "RU",
        "debug",
        "json",
    )


def test_dids_are_read_with_the_configured_region() -> None:
    """Tracked numbers are read in the configured phone region: 030 12345678 in Germany becomes
    +493012345678 and is found however it is dialled."""
    data = minimal(phone_region="DE", tracked_numbers=[{"did": "030 12345678", "source": "s"}])
    settings = load(data)
    assert settings.tracked_numbers[0].did == "+493012345678"
    assert settings.find_number("03012345678") is not None


# --- lookups ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traces() -> Settings:
    return load_settings(TRACES, environ={})


@pytest.mark.parametrize(
    "did", ["74951110001", "+74951110001", "84951110001", "+7 (495) 111-00-01"]
)
def test_find_number_accepts_any_form(traces: Settings, did: str) -> None:
    """A tracked number is recognised in whatever form Asterisk reports it, with its source and
    medium."""
    labels = traces.find_number(did)
    assert labels is not None
    assert (labels.did, labels.source, labels.medium, labels.pool) == (
        "+74951110001",
        "yandex-direct",
        "cpc",
        None,
    )


@pytest.mark.parametrize("did", ["74959999999", None, "", "<unknown>", "s", "101"])
def test_find_number_of_untracked(traces: Settings, did: str | None) -> None:
    """An untracked, hidden, empty or internal number is not taken for a tracked number."""
    assert traces.find_number(did) is None


def test_pool_number(traces: Settings) -> None:
    """A pool number is recognised as the pool's with source pool, and a number outside the range is
    not tracked."""
    labels = traces.find_number("74951110012")
    assert labels is not None
    assert (labels.did, labels.source, labels.pool, labels.medium) == (
        "+74951110012",
        "pool",
        "site",
        None,
    )
    assert traces.find_number("74951110020") is None


@pytest.mark.parametrize(
    ("channel", "extension"),
    [
        ("IAX2/101-11234", "101"),
        ("IAX2/102-3", "102"),
        ("iax2/103-77", "103"),
        ("PJSIP/101-0000001a", "101"),
        ("SIP/101-00000005", "101"),
        ("IAX2/101", "101"),
        ("IAX2/carrier-1902", None),
        ("IAX2/carrier-out-5", None),
        ("IAX2/104-12", None),
        ("Local/101@from-internal-00000001;1", None),
        ("101", None),
        ("", None),
    ],
)
def test_manager_for_channel_by_extension(
    traces: Settings, channel: str, extension: str | None
) -> None:
    """A channel is matched to the manager whose extension it names (IAX2, PJSIP or SIP, any case),
    while trunks, unknown extensions and Local channels match nobody."""
    manager = traces.manager_for_channel(channel)
    assert (manager.extension if manager else None) == extension


def test_manager_for_channel_with_listed_devices() -> None:
    """A manager with devices listed is recognised only by those devices (any case, with or without
    a channel suffix), not by their extension."""
    managers = [
        {"name": "Anna", "extension": "101", "devices": ["PJSIP/anna-desk", "PJSIP/anna"]},
        {"name": "Boris", "extension": "102"},
    ]
    settings = load(minimal(managers=managers))

    def name(channel: str) -> str | None:
        manager = settings.manager_for_channel(channel)
        return manager.name if manager else None

    assert name("PJSIP/anna-desk-0000001a") == "Anna"
    assert name("pjsip/anna-00000002") == "Anna"
    assert name("PJSIP/anna-desk") == "Anna"
    assert name("PJSIP/101-00000003") is None  # devices listed: only those count
    assert name("PJSIP/102-00000004") == "Boris"


def test_manager_for_extension(traces: Settings) -> None:
    """A manager is found by extension with their name and group, and an unknown extension finds
    nobody."""
    manager = traces.manager_for_extension("102")
    assert manager is not None
    assert (manager.name, manager.group) == ("Boris", "sales")
    assert traces.manager_for_extension("104") is None


# --- shipped configs ------------------------------------------------------------------------


def test_trace_config_matches_the_captured_pbx(traces: Settings) -> None:
    """The tests' config matches the captured PBX (node, AMI login, SQLite next to the traces,
    tracked numbers with sources and media, a 10-number pool, three sales managers) and never shows
    its secret."""
    assert (traces.node, traces.phone_region) == ("pbx", "RU")
    assert (traces.ami.username, traces.ami.secret.get_secret_value()) == (
        "tracker",
        "tracker-secret",
    )
    assert traces.database.url == f"sqlite:///{TRACES.parent}/pbx-tracker.sqlite3"
    assert traces.calls.inbound_contexts == ["from-trunk"]
    assert traces.calls.did_variable == "TRACK_DID"
    assert traces.recordings_dir == Path("/var/spool/asterisk/monitor")
    assert [t.source for t in traces.tracked_numbers] == [
        "yandex-direct",
        "google-ads",
        "offline-flyer",
    ]
    assert [t.medium for t in traces.tracked_numbers] == ["cpc", "cpc", "offline"]
    assert len(traces.number_pools[0].numbers) == 10
    assert [(m.extension, m.group) for m in traces.managers] == [
        ("101", "sales"),
        ("102", "sales"),
        ("103", "sales"),
    ]
    assert SECRET not in repr(traces)
    assert "tracker-secret" not in repr(traces)


def test_example_config_loads() -> None:
    """The shipped example config loads as documented, with the AMI secret from the environment."""
    settings = load_settings(EXAMPLE, environ={"PBX_TRACKER_AMI__SECRET": SECRET})
    assert settings.ami.secret.get_secret_value() == SECRET
    assert (settings.ami.host, settings.ami.port, settings.ami.username) == (
        "127.0.0.1",
        5038,
        "pbx-tracker",
    )
    assert {t.source for t in settings.tracked_numbers} == {
        "yandex-direct",
        "google-ads",
        "offline-flyer",
    }
    assert settings.number_pools
    assert [(m.extension, m.group) for m in settings.managers] == [
        ("101", "sales"),
        ("102", "sales"),
        ("103", "sales"),
    ]


def _keys(model: type[Any]) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                keys |= _keys(candidate)
    return keys


def test_example_config_shows_every_key() -> None:
    """Every setting there is appears in the shipped example config (set, or in a commented
    example of a section that needs the administrator's own accounts), so the administrator
    can find it there."""
    text = EXAMPLE.read_text(encoding="utf-8")
    lines = [line.strip().removeprefix("#").strip() for line in text.splitlines()]
    written = {line.lstrip("- ").partition(":")[0] for line in lines}
    missing = _keys(Settings) - written
    assert not missing


# --- dynamic tracking: pools, attribution, the HTTP server ------------------------------


def test_pool_timing_defaults_and_fallback() -> None:
    """A pool without timings holds a number 20 minutes, rests it 5 and credits calls 5 minutes
    after a visit, allows 5 visits a client, shows bots the site number, and its fallback is read as
    E.164."""
    pool = load(
        minimal(
            number_pools=[{"name": "site", "numbers": ["74951110010"], "fallback": "84951110000"}]
        )
    ).number_pools[0]
    assert pool.fallback == "+74951110000"
    assert (pool.hold_minutes, pool.quarantine_minutes, pool.grace_minutes) == (20, 5, 5)
    assert pool.max_visits_per_client == 5
    assert (pool.max_visits_per_network, pool.static_number_for_bots) == (None, True)


def test_a_pool_s_caps_and_bot_rule_reach_its_visit_pool() -> None:
    """The daemon's pool takes the configured network cap and bot rule, and derives the
    network cap from the pool's size when none is set."""
    numbers = [f"749511100{n:02d}" for n in range(40)]
    pools = [
        {"name": "site", "numbers": numbers[:20], "max_visits_per_network": 7},
        {"name": "promo", "numbers": numbers[20:], "static_number_for_bots": False},
    ]
    settings = load(minimal(number_pools=pools))
    served = VisitPools.from_settings(
        make_async_engine("sqlite:///:memory:"),
        settings.number_pools,
        region="RU",
        privacy=settings.attribution,
        clock=lambda: datetime.now(UTC),
    ).pools
    assert (served["site"].max_visits_per_network, served["site"].static_number_for_bots) == (
        7,
        True,
    )
    assert (served["promo"].max_visits_per_network, served["promo"].static_number_for_bots) == (
        5,
        False,
    )


def test_a_pool_fallback_may_not_be_a_pool_number() -> None:
    """A pool's fallback number that belongs to another pool is reported, naming that pool."""
    data = minimal(
        number_pools=[
            {"name": "site", "numbers": ["74951110010-74951110012"]},
            {"name": "promo", "numbers": ["74951110020"], "fallback": "84951110011"},
        ]
    )
    (line,) = problems_of(data)
    assert line.startswith("number_pools[1].fallback: 84951110011 is a number of pool site")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"number_pools": [{"name": "my site", "numbers": ["74951110010"]}]},
            "number_pools[0].name",
        ),
        (
            {"number_pools": [{"name": "s", "numbers": ["74951110010"], "hold_minutes": 0}]},
            "number_pools[0].hold_minutes",
        ),
        ({"attribution": {"model": "linear"}}, "attribution.model"),
        ({"attribution": {"warn_unattributed_share": 1.5}}, "attribution.warn_unattributed_share"),
        ({"http": {"allowed_origins": ["https://example.ru/page"]}}, "http.allowed_origins[0]"),
        ({"http": {"port": 70000}}, "http.port"),
    ],
)
def test_dynamic_tracking_problems_name_the_key(data: dict[str, Any], problem: str) -> None:
    """Each bad setting of the number pools and of attribution (a pool name with a space, a zero
    hold, an unknown model, a share over 1 and so on) is reported with its key."""
    (line,) = problems_of(minimal(**data))
    assert line.startswith(problem)


def test_http_and_attribution_from_the_environment() -> None:
    """The HTTP server and the attribution model can be set from the environment, and client
    addresses are not stored unless asked for."""
    settings = load(
        minimal(),
        {
            "PBX_TRACKER_HTTP__ENABLED": "true",
            "PBX_TRACKER_HTTP__PORT": "8181",
            "PBX_TRACKER_ATTRIBUTION__MODEL": "First_Touch",
        },
    )
    assert (settings.http.enabled, settings.http.port) == (True, 8181)
    assert settings.attribution.model == "first_touch"
    assert settings.attribution.store_client_ip is False


# --- spam ---------------------------------------------------------------------------------


def test_spam_is_off_by_default() -> None:
    """Without a spam section no number is blocked, hidden callers are not blocked and there is no
    repeat limit."""
    spam = load(minimal()).spam
    assert (spam.block, spam.block_hidden, spam.repeat_limit) == ([], False, None)
    assert spam.repeat_window_minutes == 10


def test_spam_block_entries_are_stored_in_e164_and_prefixes_as_written() -> None:
    """Blocked numbers are read in any written form and kept in E.164, prefixes such as +7800* are
    kept as written, and hidden callers and repeat limits are set as configured."""
    settings = load(
        minimal(
            phone_region="RU",
            spam={
                "block": ["8 (916) 000-11-22", "+7 495 777-00-00", "79031112233", "+7800*"],
                "block_hidden": True,
                "repeat_limit": 3,
                "repeat_window_minutes": 5,
            },
        )
    )
    assert settings.spam.block == ["+79160001122", "+74957770000", "+79031112233", "+7800*"]
    assert (settings.spam.block_hidden, settings.spam.repeat_limit) == (True, 3)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("call me", "'call me' is not a phone number"),
        ("12", "'12' is not a phone number"),
        ("8800*", "'8800*': a prefix is + and the country code and digits, then *"),
        ("+7*800", "'+7*800' is not a phone number"),
        ("*", "'*': a prefix is +"),
    ],
)
def test_a_bad_block_entry_is_named_with_its_key(entry: str, message: str) -> None:
    """A block entry that is no phone number or a badly written prefix is reported at its place in
    spam.block, saying how to write a prefix."""
    (line,) = problems_of(minimal(spam={"block": ["+74957770000", entry]}))
    assert line.startswith(f"spam.block[1]: {message}"), line


@pytest.mark.parametrize(
    ("spam", "key"),
    [
        ({"repeat_limit": 0}, "spam.repeat_limit"),
        ({"repeat_window_minutes": 0}, "spam.repeat_window_minutes"),
        ({"block_hidden": "sometimes"}, "spam.block_hidden"),
        ({"blocked": ["+74957770000"]}, "spam.blocked: unknown key"),
    ],
)
def test_spam_problems_name_the_key(spam: dict[str, Any], key: str) -> None:
    """A zero repeat limit or window, a block_hidden that is no boolean or a misspelled spam key is
    reported with its key."""
    (line,) = problems_of(minimal(spam=spam))
    assert line.startswith(key), line


# --- the CRMs' and Telegram's secrets, kept in files ---------------------------------


def test_a_crm_secret_file_is_read_and_its_problems_never_show_the_secret(
    tmp_path: Path,
) -> None:
    """Bitrix24's webhook URL and amoCRM's token come from files: a missing or empty file
    and a file holding something else are problems naming the key, never the content."""
    hook, token = tmp_path / "bitrix24-webhook", tmp_path / "amocrm-token"
    hook.write_text("portal.bitrix24.ru/rest/1/s3cretc0de\n", encoding="utf-8")
    token.write_text("", encoding="utf-8")
    crm = {
        "bitrix24": {"webhook_url_file": str(hook)},
        "amocrm": {"base_url": "https://example.amocrm.ru", "token_file": str(token)},
    }
    found = problems_of(minimal(crm=crm))
    assert [line.partition(" (got")[0] for line in found] == [
        "crm.bitrix24.webhook_url_file: the file must hold the webhook's URL: "
        "https://<portal>/rest/<user>/<code>/",
        f"crm.amocrm.token_file: {token} is empty",
    ]
    assert not any("s3cretc0de" in line for line in found)
    hook.write_text("https://portal.bitrix24.ru/rest/1/s3cretc0de\n", encoding="utf-8")
    token.write_text("amo-token-0123456789\n", encoding="utf-8")
    settings = load(minimal(crm=crm))
    assert settings.crm.bitrix24 is not None and settings.crm.amocrm is not None
    assert settings.crm.bitrix24.webhook_url == "https://portal.bitrix24.ru/rest/1/s3cretc0de/"
    assert settings.crm.amocrm.token_file.get_secret_value() == "amo-token-0123456789"
    assert {"s3cretc0de", "amo-token-0123456789"} <= set(settings.secret_values())
    missing = problems_of(minimal(crm={"amocrm": {**crm["amocrm"], "token_file": "nope"}}))
    assert [line.partition(" (got")[0] for line in missing] == [
        f"crm.amocrm.token_file: cannot read {Path.cwd() / 'nope'}: No such file or directory"
    ]
