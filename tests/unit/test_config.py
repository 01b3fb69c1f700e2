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
    assert parse("did: +74951234567") == {"did": "+74951234567"}


def test_leading_zero_extension_stays_a_string_not_octal() -> None:
    assert parse("extension: 0101") == {"extension": "0101"}
    assert parse("did: 0049301234567") == {"did": "0049301234567"}


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Yes", "NO", "y", "n", "Off"])
def test_yaml_1_1_booleans_stay_words(word: str) -> None:
    assert parse(f"value: {word}") == {"value": word}


@pytest.mark.parametrize(
    ("word", "value"),
    [("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False)],
)
def test_only_true_and_false_are_booleans(word: str, value: bool) -> None:
    assert parse(f"value: {word}") == {"value": value}


def test_other_scalars_keep_their_yaml_types() -> None:
    text = "port: 5038\nzero: 0\nfloat: 1.5\nnothing: null\nrange: 74951110010-74951110019"
    assert parse(text) == {
        "port": 5038,
        "zero": 0,
        "float": 1.5,
        "nothing": None,
        "range": "74951110010-74951110019",
    }


def test_plain_pyyaml_would_have_broken_these(tmp_path: Path) -> None:
    text = "did: +74951234567\nextension: 0101\nevents: on\n"
    assert yaml.safe_load(text) == {"did": 74951234567, "extension": 65, "events": True}
    assert parse(text) == {"did": "+74951234567", "extension": "0101", "events": "on"}


def test_unquoted_did_with_plus_loads_as_tracked_number(tmp_path: Path) -> None:
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
    path = write(tmp_path, "ami:\n  port: 5038\n  port: 5039\n")
    (problem,) = file_problems(path)
    assert problem.startswith(f"{path}: ")
    assert "duplicate key 'port'" in problem
    assert "line 3" in problem


# --- the file ----------------------------------------------------------------------


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    assert file_problems(path) == [
        f"{path}: cannot read the config file: No such file or directory"
    ]


def test_syntax_error_names_the_line_and_never_the_secret(tmp_path: Path) -> None:
    path = write(tmp_path, f'node: pbx\nami:\n  secret: "{SECRET}\n  port: 5038\n')
    (problem,) = file_problems(path)
    assert problem.startswith(f"{path}: YAML syntax error at line ")
    assert SECRET not in problem


def test_bad_indentation_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "ami:\n  host: 127.0.0.1\n port: 5038\n")
    (problem,) = file_problems(path)
    assert "YAML syntax error at line 3" in problem


@pytest.mark.parametrize(("text", "found"), [("- a\n- b\n", "list"), ("just text\n", "str")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, found: str) -> None:
    path = write(tmp_path, text)
    assert file_problems(path) == [
        f"{path}: the top level must be a mapping of keys to values, not a {found}"
    ]


def test_empty_file_means_all_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    settings = load_settings(path, environ={"PBX_TRACKER_AMI__SECRET": SECRET})
    assert settings.node == "asterisk"


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "node: from-env\n")
    environ = {"PBX_TRACKER_CONFIG": str(path), "PBX_TRACKER_AMI__SECRET": SECRET}
    assert load_settings(environ=environ).node == "from-env"


def test_explicit_path_beats_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "node: explicit\n")
    environ = {"PBX_TRACKER_CONFIG": str(tmp_path / "absent.yaml")}
    environ["PBX_TRACKER_AMI__SECRET"] = SECRET
    assert load_settings(path, environ=environ).node == "explicit"


@pytest.mark.skipif(DEFAULT_CONFIG_PATH.exists(), reason="this machine has a real config")
def test_default_path_is_etc() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={})
    assert caught.value.path == "/etc/pbx-tracker/config.yaml"
    assert caught.value.problems[0].startswith("/etc/pbx-tracker/config.yaml: cannot read")


# --- every problem, with its key -------------------------------------------------------------


def test_three_mistakes_give_three_lines(tmp_path: Path) -> None:
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
    numbers = [{"did": f"7495111000{n}", "source": "s"} for n in range(1, 4)]
    numbers.append({"did": "12ab", "source": "s"})
    (problem,) = problems_of(minimal(tracked_numbers=numbers))
    assert problem.startswith("tracked_numbers[3].did: not a phone number")


def test_number_where_a_string_is_expected_is_reported() -> None:
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
    data.setdefault("ami", {}).setdefault("secret", SECRET)
    (line,) = problems_of(data)
    assert line.startswith(problem)


def test_problems_of_several_sections_are_reported_together() -> None:
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
    data = {"ami": {"secret": SECRET, "reconnect_initial": 5, "reconnect_max": 2}}
    assert problems_of(data) == [
        "ami.reconnect_max: must be at least reconnect_initial (5.0) (got 2)"
    ]


def test_reconnect_initial_above_the_default_max() -> None:
    (line,) = problems_of({"ami": {"secret": SECRET, "reconnect_initial": 60}})
    assert line.startswith("ami.reconnect_max: must be at least reconnect_initial (60.0)")


# --- duplicates ----------------------------------------------------------------------


def test_same_did_in_tracked_numbers_and_a_pool() -> None:
    data = minimal(
        tracked_numbers=[{"did": "74951110001", "source": "yandex-direct"}],
        number_pools=[{"name": "site", "numbers": ["74951110050", "74951110051", "74951110001"]}],
    )
    assert problems_of(data) == [
        "number_pools[0].numbers[2]: 74951110001 is already tracked_numbers[0]"
    ]


def test_same_did_written_two_ways() -> None:
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
    managers = [
        {"name": "Anna", "extension": "101"},
        {"name": "Boris", "extension": "102"},
        {"name": "Vera", "extension": "101"},
    ]
    assert problems_of(minimal(managers=managers)) == [
        "managers[2].extension: 101 is already managers[0]"
    ]


def test_same_device_twice_and_same_pool_name_twice() -> None:
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
    data = minimal(number_pools=[{"name": "site", "numbers": ["74951110001", entry]}])
    (line,) = problems_of(data)
    assert line.startswith("number_pools[0].numbers[1]: ")
    assert message in line


def test_thousand_numbers_is_the_largest_range() -> None:
    data = minimal(number_pools=[{"name": "big", "numbers": ["74951000000-74951000999"]}])
    assert len(load(data).number_pools[0].numbers) == 1000


# --- environment and secrets ----------------------------------------------------------------


def test_environment_overrides_yaml(tmp_path: Path) -> None:
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
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    settings = load({"ami": {"secret": "from-yaml"}}, environ)
    assert settings.ami.secret.get_secret_value() == "from-yaml"


def test_empty_environment_secret_counts_as_unset() -> None:
    settings = load({"ami": {"secret": "from-yaml"}}, {"PBX_TRACKER_AMI__SECRET": ""})
    assert settings.ami.secret.get_secret_value() == "from-yaml"


def test_secret_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    write(tmp_path, "file-secret\n", "ami_secret")
    path = write(tmp_path, "ami:\n  secret_file: ami_secret\n")
    settings = load_settings(path, environ={})
    assert settings.ami.secret.get_secret_value() == "file-secret"
    assert settings.ami.secret_file == tmp_path / "ami_secret"


@pytest.mark.parametrize("ami", [{}, {"secret": ""}, {"host": "127.0.0.1"}])
def test_missing_secret(ami: dict[str, Any]) -> None:
    data = {"ami": ami} if ami else {}
    assert problems_of(data) == [f"ami.secret: {MISSING_SECRET}"]
    assert MISSING_SECRET.startswith("missing (set it in the config, PBX_TRACKER_AMI__SECRET")


def test_unreadable_secret_file_is_the_only_secret_problem(tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    assert problems_of({"ami": {"secret_file": str(absent), "secret": "yaml"}}) == [
        f"ami.secret_file: cannot read {absent}: No such file or directory"
    ]


def test_empty_secret_file(tmp_path: Path) -> None:
    empty = write(tmp_path, "\n", "ami_secret")
    assert problems_of({"ami": {"secret_file": str(empty)}}) == [
        f"ami.secret_file: {empty} is empty"
    ]


def test_secret_not_needed_for_offline_commands(tmp_path: Path) -> None:
    path = write(tmp_path, "ami:\n  secret_file: absent\n")
    settings = load_settings(path, environ={}, need_ami_secret=False)
    assert settings.ami.secret.get_secret_value() == ""
    assert settings.secret_values() == []


def test_secret_never_shown_in_problems(tmp_path: Path) -> None:
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
    data = {"ami": {"secret": SECRET, "port": SECRET}}
    assert problems_of(data) == ["ami.port: Input should be a valid integer"]


def test_secrets_never_in_repr_or_str_but_listed_for_redaction() -> None:
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
    path = write(tmp_path, f"ami: {{secret: {SECRET}}}\ndatabase:\n  url: '{url}'\n")
    settings = load_settings(path, environ={})
    assert settings.database.url == expected.format(dir=tmp_path)


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "postgres://u:p@h/db", "/var/lib/x.sqlite3"])
def test_unsupported_database_url(url: str) -> None:
    (line,) = problems_of(minimal(database={"url": url}))
    assert line.startswith("database.url: must be a SQLAlchemy URL")
    assert url not in line


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"ami: {{secret: {SECRET}}}\ndatabase:\n  spill_path: spill.jsonl\nrecordings_dir: rec\n",
    )
    settings = load_settings(path, environ={})
    assert settings.database.spill_path == tmp_path / "spill.jsonl"
    assert settings.recordings_dir == tmp_path / "rec"


def test_base_dir_for_configs_built_in_code(tmp_path: Path) -> None:
    data = minimal(database={"url": "sqlite:///x.sqlite3"})
    settings = settings_from_mapping(data, environ={}, base_dir=tmp_path)
    assert settings.database.url == f"sqlite:///{tmp_path}/x.sqlite3"


def test_case_is_forgiven_for_choices_and_region() -> None:
    settings = load(minimal(phone_region="ru", logging={"level": "DEBUG", "format": "Json"}))
    assert (settings.phone_region, settings.logging.level, settings.logging.format) == (
        "RU",
        "debug",
        "json",
    )


def test_dids_are_read_with_the_configured_region() -> None:
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
    assert traces.find_number(did) is None


def test_pool_number(traces: Settings) -> None:
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
    manager = traces.manager_for_channel(channel)
    assert (manager.extension if manager else None) == extension


def test_manager_for_channel_with_listed_devices() -> None:
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
    manager = traces.manager_for_extension("102")
    assert manager is not None
    assert (manager.name, manager.group) == ("Boris", "sales")
    assert traces.manager_for_extension("104") is None


# --- shipped configs ------------------------------------------------------------------------


def test_trace_config_matches_the_captured_pbx(traces: Settings) -> None:
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
    text = EXAMPLE.read_text(encoding="utf-8")
    written = {line.strip().lstrip("- ").partition(":")[0] for line in text.splitlines()}
    missing = _keys(Settings) - written
    assert not missing


# --- dynamic tracking: pools, attribution, the HTTP server ------------------------------


def test_pool_timing_defaults_and_fallback() -> None:
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
    (line,) = problems_of(minimal(**data))
    assert line.startswith(problem)


def test_http_and_attribution_from_the_environment() -> None:
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
    spam = load(minimal()).spam
    assert (spam.block, spam.block_hidden, spam.repeat_limit) == ([], False, None)
    assert spam.repeat_window_minutes == 10


def test_spam_block_entries_are_stored_in_e164_and_prefixes_as_written() -> None:
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
    (line,) = problems_of(minimal(spam=spam))
    assert line.startswith(key), line
