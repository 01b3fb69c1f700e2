"""`pbx-tracker check-config --live` as a sysadmin runs it, against a fake Asterisk on
loopback: one line per problem naming the key and the fix, exit 0 or 1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from ami_settings import shipped_write_classes
from cli_runner import Cli

from pbx_tracker.sim.asterisk import FakeAsterisk
from traces import TRACE_CONFIG, TRACES

pytestmark = pytest.mark.slow

SECRET = "tracker-secret"


@pytest.fixture(name="fake")
async def _fake() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(secret=SECRET) as server:
        server.setup.write_classes = shipped_write_classes()
        yield server


def cli(tmp_path: Path, port: int, secret: str = SECRET) -> Cli:
    """The traces' config (the default PJSIP/{extension} dial template) on ``port``, its
    recordings folder and the CEL log Asterisk writes in ``tmp_path``, the AMI secret from
    the environment."""
    raw = yaml.safe_load(TRACE_CONFIG.read_text(encoding="utf-8"))
    raw["ami"].update(port=port, secret="in-the-environment")
    raw["recordings_dir"] = str(tmp_path / "monitor")
    (tmp_path / "monitor").mkdir()
    cel = tmp_path / "cel-custom" / "Master.csv"
    cel.parent.mkdir()
    cel.write_bytes((TRACES / "cel" / "01_answered_simple.cel.csv").read_bytes())
    raw["cel"] = {"file": str(cel)}
    config = tmp_path / "pbx-tracker.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return Cli(config, ("check-config",), env={"PBX_TRACKER_AMI__SECRET": secret})


async def test_live_check_names_the_dial_template_on_a_site_without_pjsip(
    fake: FakeAsterisk, tmp_path: Path
) -> None:
    """Following the README on an Asterisk with only chan_iax2, `check-config` says OK but
    `--live` prints the dial template's problem and the template to set, and exits 1."""
    fake.setup.modules = {"chan_iax2"}
    checker = cli(tmp_path, fake.port)
    assert (await checker.ok()).startswith("config OK: ")
    run = await checker("--live")
    assert run.code == 1, run
    [problem] = run.err.splitlines()
    assert problem.startswith("routing.dial_template: PJSIP/{extension} — Asterisk knows no ")
    assert "chan_pjsip is not loaded on this Asterisk or has no such endpoints (loaded: IAX2)" in (
        problem
    )
    assert problem.endswith("; set routing.dial_template to IAX2/{extension}")
    assert run.out.startswith("config OK: ")
    assert "note: CEL's events not checked" in run.out


async def test_live_check_passes_on_an_asterisk_that_matches(
    fake: FakeAsterisk, tmp_path: Path
) -> None:
    """With PJSIP loaded, the contexts in the dialplan and the folder readable, `--live`
    exits 0 and says Asterisk is OK."""
    out = await cli(tmp_path, fake.port).ok("--live")
    assert out.startswith("config OK: ")
    assert out.splitlines()[-1] == f"Asterisk OK: 127.0.0.1:{fake.port} as tracker"


async def test_live_check_names_the_address_of_an_asterisk_that_is_down(tmp_path: Path) -> None:
    """An Asterisk whose manager interface does not listen is one line naming ami.host,
    printed in bounded time."""
    async with FakeAsterisk() as gone:
        port = gone.port
    run = await cli(tmp_path, port)("--live")
    assert run.code == 1, run
    assert run.error_line.startswith(
        f"ami.host: cannot log in to Asterisk's manager interface at 127.0.0.1:{port} ("
    )


async def test_live_check_never_prints_the_secret(fake: FakeAsterisk, tmp_path: Path) -> None:
    """A wrong AMI secret is one line naming the AMI user; the secret shows nowhere."""
    run = await cli(tmp_path, fake.port, secret="wrong-s3cret-value")("--live")
    assert run.code == 1, run
    assert run.error_line.startswith("ami.username: Asterisk at 127.0.0.1:")
    assert "wrong-s3cret-value" not in run.out + run.err
