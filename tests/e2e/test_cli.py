"""The command line as a sysadmin uses it: check-config, db upgrade, replay."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pbx_tracker.cli import main
from pbx_tracker.config.weak_secrets import PLACEHOLDER_HASHES
from pbx_tracker.web.auth import hash_password
from stored import stored_calls
from traces import EXPECTED, TRACE_CONFIG, TRACES, e164

REPO = Path(__file__).resolve().parents[2]
REAL_HASH = hash_password("a password only its user knows")


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_check_config_accepts_the_trace_config() -> None:
    """check-config on a good config exits 0 and says how many tracked numbers and managers it
    has."""
    code, out, _ = invoke("check-config", "--config", str(TRACE_CONFIG))
    assert code == 0
    assert "3 tracked numbers" in out and "3 managers" in out


def test_check_config_accepts_the_freepbx_site() -> None:
    """The config the admin of the captured FreePBX-style PBX writes passes as it is."""
    code, out, err = invoke(
        "check-config", "--config", str(TRACES / "freepbx" / "pbx-tracker.yaml")
    )
    assert (code, err) == (0, "")
    assert "3 tracked numbers, 10 pool numbers" in out and "3 managers" in out


@pytest.mark.parametrize(
    ("document", "heading"),
    [("README.md", "## A FreePBX site"), ("config/pbx-tracker.example.yaml", None)],
)
def test_check_config_accepts_the_documented_configs(
    tmp_path: Path, document: str, heading: str | None
) -> None:
    """The FreePBX config README shows, and the example config, pass once the AMI secret
    is given."""
    text = (REPO / document).read_text(encoding="utf-8")
    if heading is not None:
        section = text.split(f"\n{heading}\n", 1)[1]
        text = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    for placeholder in PLACEHOLDER_HASHES:  # the admin puts real users' hashes there
        text = text.replace(placeholder, REAL_HASH)
    config = tmp_path / "config.yaml"
    config.write_text(text, encoding="utf-8")
    env = {"PBX_TRACKER_AMI__SECRET": "s3cret-value"}
    code, out, err = invoke("check-config", "--config", str(config), env=env)
    assert (code, err) == (0, ""), err
    assert out.startswith("config OK: ")


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_the_example_config_as_copied_is_refused(tmp_path: Path, command: str) -> None:
    """A sysadmin who copies the example unchanged is told, key by key, that CHANGE_ME and
    the example users' hashes are placeholders; the daemon does not start with them."""
    config = tmp_path / "config.yaml"
    config.write_text((REPO / "config/pbx-tracker.example.yaml").read_text(encoding="utf-8"))
    code, out, err = invoke(command, "--config", str(config))
    assert (code, out) == (1, "")
    keys = [line.split(":", 1)[0] for line in err.strip().splitlines()]
    assert keys == ["ami.secret", "web.users[0].password_hash", "web.users[1].password_hash"]
    assert "CHANGE_ME" not in err and "scrypt$" not in err


@pytest.mark.parametrize(
    ("secret", "reason"),
    [("x", "too short"), ("amp111", "well-known default"), ("Change_Me", "placeholder")],
)
def test_a_secret_that_is_no_secret_is_refused(tmp_path: Path, secret: str, reason: str) -> None:
    """A one-letter AMI secret, FreePBX's default or a placeholder in another case is one
    line naming the key and the fix, and never shows the value."""
    env = {"PBX_TRACKER_AMI__SECRET": secret}
    code, out, err = invoke("check-config", "--config", str(TRACE_CONFIG), env=env)
    assert (code, out) == (1, "")
    assert err.startswith("ami.secret: ") and reason in err and "manager.conf" in err
    assert err.count("\n") == 1
    assert re.search(rf"(?<!\w){re.escape(secret)}(?!\w)", err) is None


def test_check_config_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    """check-config lists every problem of a bad config (a wrong type, a misspelt key, a bad phone
    number) each on a line naming the key, exits 1 and never shows the secret."""
    config = tmp_path / "bad.yaml"
    config.write_text(
        "ami:\n  port: five\n  secret: s3cret-value\n  scret: x\n"
        "tracked_numbers:\n  - did: '12ab'\n    source: google\n"
    )
    code, out, err = invoke("check-config", "--config", str(config))
    assert code == 1
    lines = err.strip().splitlines()
    assert any(line.startswith("ami.port:") for line in lines)
    assert any(line.startswith("ami.scret:") for line in lines)
    assert any(line.startswith("tracked_numbers[0].did: not a phone number") for line in lines)
    assert "s3cret-value" not in out + err


def test_help_lists_every_command() -> None:
    """pbx-tracker --help lists every command a sysadmin can run."""
    code, out, _ = invoke("--help")
    assert code == 0
    for command in (
        "run",
        "check-config",
        "db",
        "replay",
        "capture",
        "callbacks",
        "spam",
        "pool",
        "report",
        "spend",
        "export",
        "web",
        "demo",
    ):
        assert command in out


@pytest.mark.parametrize("stem", sorted(EXPECTED))
@pytest.mark.parametrize("fmt", ["jsonl", "raw.txt"])
def test_replay_dry_run_prints_the_expected_records(stem: str, fmt: str) -> None:
    """One JSON line per call with the outcome the trace's README states; nothing written."""
    code, out, _ = invoke(
        "replay", "--dry-run", "--config", str(TRACE_CONFIG), str(TRACES / f"{stem}.{fmt}")
    )
    assert code == 0
    records = {r["caller"]: r for r in map(json.loads, out.splitlines())}
    assert sorted(records) == sorted(e164(e.caller) for e in EXPECTED[stem])
    for want in EXPECTED[stem]:
        record = records[e164(want.caller)]
        assert (record["did"], record["status"], record["missed_reason"]) == (
            e164(want.did),
            want.status,
            want.reason,
        )
        assert record["answered_by"] == want.answered_by
        assert abs(record["ring_seconds"] - want.ring) <= 1
        assert abs(record["talk_seconds"] - want.talk) <= 1
        assert record["source"] and record["first_time_caller"] is True


def test_replay_of_a_callback_prints_no_inbound_call() -> None:
    """Replaying a captured ring-me callback prints one outbound call answered by the manager to the
    customer, not an inbound call."""
    code, out, _ = invoke(
        "replay",
        "--dry-run",
        "--config",
        str(TRACE_CONFIG),
        str(TRACES / "12_callback_originate.jsonl"),
    )
    assert code == 0
    (record,) = map(json.loads, out.splitlines())
    assert (record["direction"], record["answered_by"], record["caller"]) == (
        "outbound",
        "101",
        "+79161234503",
    )


def test_replay_into_the_database_twice_leaves_the_same_rows(
    database_url: str, tmp_path: Path
) -> None:
    """Idempotent by Linkedid + node; the second caller seen again is not a first-time caller."""
    env = {
        "PBX_TRACKER_DATABASE__URL": database_url,
        "PBX_TRACKER_DATABASE__SPILL_PATH": str(tmp_path / "spill.jsonl"),
    }
    config = ["--config", str(TRACE_CONFIG)]
    assert invoke("db", "upgrade", *config, env=env)[0] == 0
    files = [str(TRACES / "03_missed_no_answer.jsonl"), str(TRACES / "11_concurrent.jsonl")]
    for _ in range(2):
        code, _, err = invoke("replay", *config, *files, env=env)
        assert code == 0, err
        assert "6 call records" in err
        assert sorted(r.caller for r in asyncio.run(stored_calls(database_url))) == [
            "+79160000001",
            "+79160000002",
            "+79160000003",
            "+79160000004",
            "+79160000005",
            "+79161234503",
        ]


def test_replay_dry_run_reads_a_cel_log_with_a_damaged_first_line(tmp_path: Path) -> None:
    """A CEL log is told from AMI by its content even when its first line is torn (an open
    quote, as a crash mid-write leaves it): that line alone is named and skipped, every call
    is printed, the summary counts the CEL records."""
    log = tmp_path / "Master.csv"
    good = (TRACES / "cel" / "11_concurrent.cel.csv").read_text(encoding="utf-8")
    log.write_text('"CHAN_START","1796615980.1\n' + good, encoding="utf-8")
    code, out, err = invoke("replay", "--dry-run", "--config", str(TRACE_CONFIG), str(log))
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 5 and {r["recovered_from"] for r in records} == {"cel"}
    assert f"{log}:1: not a CEL record" in err
    assert " AMI messages (from 144 CEL records), 5 call records," in err


def test_replay_of_a_file_that_is_no_capture_says_so_and_exits_1(tmp_path: Path) -> None:
    """A file with neither AMI messages nor CEL records is named with what replay reads,
    and the command fails."""
    junk = tmp_path / "notes.txt"
    junk.write_text("calls of monday\nsee the CRM\n", encoding="utf-8")
    code, out, err = invoke("replay", "--dry-run", "--config", str(TRACE_CONFIG), str(junk))
    assert (code, out) == (1, "")
    assert f"{junk}: no AMI message or CEL record found" in err
