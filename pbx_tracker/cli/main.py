"""The `pbx-tracker` command line: parses, configures logging, then delegates."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from pbx_tracker import __version__
from pbx_tracker.cli.callbacks import callbacks
from pbx_tracker.cli.common import (
    config_option,
    database_or_exit,
    load_or_exit,
    strong_secrets_or_exit,
)
from pbx_tracker.cli.exports import export
from pbx_tracker.cli.pool import pool
from pbx_tracker.cli.reports import report, spend
from pbx_tracker.cli.spam import spam
from pbx_tracker.cli.web import web


def setup_logging(settings: Any) -> None:
    from pbx_tracker.logging import configure_logging

    configure_logging(
        settings.logging.level, settings.logging.format, secrets=settings.secret_values()
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pbx-tracker")
def main() -> None:
    """On-premise call tracking for Asterisk: every inbound call on a tracked number
    becomes a call record (source, manager, ring and talk time, recording)."""


@main.command()
@config_option
def run(config_path: str | None) -> None:
    """Run the daemon: listen to Asterisk (AMI) and record every tracked call."""
    from pbx_tracker.daemon import run_daemon
    from pbx_tracker.systemd import exit_service

    settings = load_or_exit(config_path)
    strong_secrets_or_exit(settings)
    setup_logging(settings)
    exit_service(asyncio.run(run_daemon(settings)))


@main.command("check-config")
@config_option
@click.option(
    "--live",
    is_flag=True,
    help=(
        "Also check it against the running Asterisk (logs in with the config's AMI user) "
        "and the configured Bitrix24, amoCRM and Telegram (webhook, token and rights)."
    ),
)
def check_config(config_path: str | None, live: bool) -> None:
    """Validate the config: exit 0, or 1 with each problem on a line naming the key;
    with --live also against the running Asterisk (drivers, contexts, AMI classes,
    recordings folder, CEL log) and the outside platforms switched on (Bitrix24's
    webhook and its scopes, amoCRM's token, the Telegram bot's token).  Placeholders
    (the example's CHANGE_ME and web users' hashes), well-known defaults and secrets
    under 8 characters are refused."""
    settings = load_or_exit(config_path)
    strong_secrets_or_exit(settings)
    agi, http = settings.agi, settings.http
    router = f"FastAGI {agi.host}:{agi.port}" if agi.enabled else "FastAGI off"
    website = f"HTTP {http.host}:{http.port}" if http.enabled else "HTTP off"
    click.echo(
        f"config OK: {len(settings.tracked_numbers)} tracked numbers, "
        f"{sum(len(p.numbers) for p in settings.number_pools)} pool numbers in "
        f"{len(settings.number_pools)} pool(s), "
        f"{len(settings.managers)} managers in {len(settings.routing.groups) or 1} routing "
        f"group(s), AMI {settings.ami.host}:{settings.ami.port}, {router}, {website}"
    )
    if live:
        from pbx_tracker.cli.common import check_against_asterisk, check_outside_platforms

        asterisk = check_against_asterisk(settings)
        sys.exit(max(asterisk, check_outside_platforms(settings)))


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: str | None) -> None:
    """Create or migrate the database schema to the newest version."""
    from pbx_tracker.store.migrate import current_revision, upgrade_to_head

    settings = load_or_exit(config_path, need_ami_secret=False)
    url = settings.database.url
    with database_or_exit(url, "migrate"):
        before = current_revision(url)
        upgrade_to_head(url)
        now = current_revision(url)
    click.echo(f"database at {now} (was {before or 'empty'})")


@db.command("downgrade")
@config_option
@click.confirmation_option(prompt="Drop every pbx-tracker table and its data?")
def db_downgrade(config_path: str | None) -> None:
    """Drop the whole schema (all call records are lost)."""
    from pbx_tracker.store.migrate import downgrade_to_base

    settings = load_or_exit(config_path, need_ami_secret=False)
    with database_or_exit(settings.database.url, "drop the schema of"):
        downgrade_to_base(settings.database.url)
    click.echo("database schema removed")


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Print call records as JSON lines; write nothing.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def replay(config_path: str | None, dry_run: bool, files: tuple[str, ...]) -> None:
    """Feed captured AMI traffic (JSON Lines or raw AMI text) or a CEL log through the
    correlator; exit 1 when a file holds neither."""
    from pbx_tracker.replay import replay_into_database, replay_to_stdout
    from pbx_tracker.web.pages.layout import plural

    settings = load_or_exit(config_path, need_ami_secret=False)
    paths = [Path(f) for f in files]
    if dry_run:
        summary = replay_to_stdout(paths, settings)
    else:
        setup_logging(settings)
        summary = asyncio.run(replay_into_database(paths, settings))
    for path, count in summary.unfinished.items():
        going = plural(count, "call")
        click.echo(f"{path}: {going} still in progress at the end, not recorded", err=True)
    for line in summary.bad_lines:
        click.echo(f"{line} (skipped)", err=True)
    for path in summary.empty:
        click.echo(
            f"{path}: no AMI message or CEL record found (an AMI capture, JSON Lines or raw "
            "text, or Asterisk's CEL log in the shipped column order?)",
            err=True,
        )
    failed = summary.failed.total()
    if failed:
        kinds = ", ".join(f"{kind} ({count})" for kind, count in summary.failed.most_common())
        click.echo(f"AMI messages the correlator could not apply: {kinds}", err=True)
    cel = f" (from {plural(summary.cel_rows, 'CEL record')})" if summary.cel_rows else ""
    click.echo(
        f"{plural(summary.files, 'file')}, {plural(summary.events, 'AMI message')}{cel}, "
        f"{plural(summary.records, 'call record')}, "
        f"{plural(summary.untracked, 'call')} on untracked numbers ignored, "
        f"{plural(failed, 'AMI message')} could not be applied",
        err=True,
    )
    if summary.empty:
        sys.exit(1)


@main.command()
@config_option
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="JSON Lines file to append the AMI traffic to.",
)
def capture(config_path: str | None, out_path: str) -> None:
    """Record live AMI traffic in the JSON Lines capture format (Ctrl-C to stop)."""
    from pbx_tracker.daemon.capture import run_capture

    settings = load_or_exit(config_path)
    setup_logging(settings)
    sys.exit(asyncio.run(run_capture(settings, Path(out_path))))


@main.command()
@click.option("--calls", default=20, show_default=True, help="How many calls to simulate.")
@click.option(
    "--speed",
    default=10.0,
    show_default=True,
    help="How much faster than real time the simulated day runs (0 = no waiting).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    help="Folder for the demo's SQLite database (default: a temporary folder).",
)
@click.option("--seed", default=1, show_default=True, help="Random seed of the simulated day.")
def demo(calls: int, speed: float, directory: str | None, seed: int) -> None:
    """The whole system against a simulated Asterisk, on SQLite, with no setup."""
    from pbx_tracker.demo import run_demo

    sys.exit(asyncio.run(run_demo(calls=calls, speed=speed, directory=directory, seed=seed)))


for _group in (callbacks, spam, pool, export, report, spend, web):
    main.add_command(_group)

if __name__ == "__main__":
    main()
