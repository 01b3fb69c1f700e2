"""The `pbx-tracker` command line: parses, configures logging, then delegates."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from pbx_tracker import __version__
from pbx_tracker.cli_common import (
    config_option,
    database_or_exit,
    fail,
    load_or_exit,
    log_only_when_debugging,
    run_command,
    strong_secrets_or_exit,
)
from pbx_tracker.cli_web import web


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
    help="Also check it against the running Asterisk (logs in with the config's AMI user).",
)
def check_config(config_path: str | None, live: bool) -> None:
    """Validate the config: exit 0, or 1 with each problem on a line naming the key;
    with --live also against the running Asterisk (drivers, contexts, AMI classes,
    recordings folder, CEL log).  Placeholders (the example's CHANGE_ME and web users'
    hashes), well-known defaults and secrets under 8 characters are refused."""
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
        from pbx_tracker.cli_common import check_against_asterisk

        sys.exit(check_against_asterisk(settings))


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

    settings = load_or_exit(config_path, need_ami_secret=False)
    paths = [Path(f) for f in files]
    if dry_run:
        summary = replay_to_stdout(paths, settings)
    else:
        setup_logging(settings)
        summary = asyncio.run(replay_into_database(paths, settings))
    for path, count in summary.unfinished.items():
        click.echo(f"{path}: {count} calls still in progress at the end, not recorded", err=True)
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
    cel = f" (from {summary.cel_rows} CEL records)" if summary.cel_rows else ""
    click.echo(
        f"{summary.files} files, {summary.events} AMI messages{cel}, "
        f"{summary.records} call records, "
        f"{summary.untracked} calls on untracked numbers ignored, "
        f"{failed} AMI messages could not be applied",
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
    from pbx_tracker.capture import run_capture

    settings = load_or_exit(config_path)
    setup_logging(settings)
    sys.exit(asyncio.run(run_capture(settings, Path(out_path))))


@main.group()
def callbacks() -> None:
    """Missed calls to call back: list them, close, snooze, reassign, call the customer."""


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@callbacks.command("list")
@config_option
@click.option("--mine", metavar="EXT", help="Only the tasks assigned to this extension.")
@click.option("--all", "everything", is_flag=True, help="Done tasks too, not only open ones.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def callbacks_list(config_path: str | None, mine: str | None, everything: bool, fmt: str) -> None:
    """Callback tasks, newest first: customer, tries, waiting time, source, assignee."""
    from pbx_tracker.callbacks.commands import list_callbacks

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(
        list_callbacks(
            settings.database.url,
            settings.directory,
            mine=mine,
            everything=everything,
            fmt=fmt,
            now=_now(),
        )
    )


@callbacks.command("done")
@config_option
@click.argument("task_id", type=int)
@click.option("--by", default="cli", show_default=True, help="Who closes it (e.g. an extension).")
def callbacks_done(config_path: str | None, task_id: int, by: str) -> None:
    """Close a task: the customer was reached or needs no call."""
    from pbx_tracker.callbacks.commands import close_callback

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(close_callback(settings.database.url, task_id, by=by, now=_now()))


@callbacks.command("snooze")
@config_option
@click.argument("task_id", type=int)
@click.argument("duration")
@click.option("--by", default="cli", show_default=True, help="Who snoozes it.")
def callbacks_snooze(config_path: str | None, task_id: int, duration: str, by: str) -> None:
    """No reminders for DURATION (30m, 2h, 1h30m, 1d); then one at once."""
    from pbx_tracker.callbacks.commands import snooze_callback

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(snooze_callback(settings.database.url, task_id, duration, by=by, now=_now()))


@callbacks.command("assign")
@config_option
@click.argument("task_id", type=int)
@click.argument("extension")
@click.option("--by", default="cli", show_default=True, help="Who reassigns it.")
def callbacks_assign(config_path: str | None, task_id: int, extension: str, by: str) -> None:
    """Give a task to another manager (by extension)."""
    from pbx_tracker.callbacks.commands import assign_callback

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(
        assign_callback(
            settings.database.url, settings.directory, task_id, extension, by=by, now=_now()
        )
    )


@callbacks.command("call")
@config_option
@click.argument("task_id", type=int)
@click.option("--manager", metavar="EXT", help="Whose phone rings first (default: the assignee).")
def callbacks_call(config_path: str | None, task_id: int, manager: str | None) -> None:
    """Call the customer back: Asterisk rings the manager's phone, then dials the customer."""
    from pbx_tracker.callbacks.commands import call_back
    from pbx_tracker.routing.plan import RoutingPlan

    settings = load_or_exit(config_path)
    log_only_when_debugging(settings)
    run_command(
        call_back(
            settings.database.url,
            task_id,
            manager=manager,
            ami=settings.ami,
            ring_me=settings.callbacks.ring_me,
            plan=RoutingPlan(settings.routing, settings.directory),
        )
    )


@main.group()
def spam() -> None:
    """Spam calls (spam: in the config): list them, mark a call as spam, undo the marking.

    CALL_ID is the call's id on the calls page (and in `spam list`).  Spam calls are kept
    but open no callback task and count as no lead."""


@spam.command("list")
@config_option
@click.option("--from", "start", required=True, metavar="DATE", help="First day or moment.")
@click.option("--to", "end", required=True, metavar="DATE", help="Last day, or end moment.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def spam_list(config_path: str | None, start: str, end: str, fmt: str) -> None:
    """The calls that are spam now, newest first: id, caller, number, reason, who marked it.

    Days are cut in routing.timezone, as in the reports (--to's day included)."""
    from pbx_tracker.spam.commands import list_spam_calls

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(
        list_spam_calls(
            settings.database.url,
            zone=settings.report_rules().zone,
            region=settings.phone_region,
            start=start,
            end=end,
            fmt=fmt,
        )
    )


@spam.command("mark")
@config_option
@click.argument("call_id", type=int)
@click.option("--by", required=True, metavar="EXT", help="Who marks it (e.g. an extension).")
def spam_mark(config_path: str | None, call_id: int, by: str) -> None:
    """Mark a call as spam; an open callback task left with only spam calls is closed."""
    from pbx_tracker.spam.commands import mark_call

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(mark_call(settings.database.url, call_id, by=by, now=_now()))


@spam.command("undo")
@config_option
@click.argument("call_id", type=int)
@click.option("--by", required=True, metavar="EXT", help="Who undoes it (e.g. an extension).")
def spam_undo(config_path: str | None, call_id: int, by: str) -> None:
    """The call is no spam: a missed call opens (or joins) its customer's callback task."""
    from pbx_tracker.spam.commands import undo_call

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(undo_call(settings.database.url, settings.callbacks, call_id, by=by, now=_now()))


@main.group()
def pool() -> None:
    """Website number pools: use, exhaustion, attribution, recommended size."""


@pool.command("status")
@config_option
@click.option("--pool", "name", metavar="NAME", help="Only this pool (default: every pool).")
@click.option("--hours", default=24.0, show_default=True, help="Period to look at, in hours.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def pool_status(config_path: str | None, name: str | None, hours: float, fmt: str) -> None:
    """Numbers in use and at peak, exhaustion, visits, calls by attribution, and the
    pool size the site's traffic needs."""
    from pbx_tracker.attribution.commands import show_pool_status

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(
        show_pool_status(
            settings.database.url,
            settings.number_pools,
            settings.attribution,
            pool=name,
            hours=hours,
            fmt=fmt,
            now=_now(),
        )
    )


@main.group()
def export() -> None:
    """Calls as conversions for the ad platforms: Yandex Metrica offline calls, GA4 events.

    Dates are YYYY-MM-DD, both included, days cut in routing.timezone (else the machine's
    zone) as reports cut them (--from 2026-03-01 --to 2026-03-01 is that whole day)."""


@export.command("metrica")
@config_option
@click.option("--from", "first", required=True, metavar="DATE", help="First day (YYYY-MM-DD).")
@click.option("--to", "last", required=True, metavar="DATE", help="Last day (YYYY-MM-DD).")
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False), help="CSV to write."
)
def export_metrica(config_path: str | None, first: str, last: str, out_path: str) -> None:
    """Yandex Metrica offline-calls CSV of the period.

    One row per call with a Metrica ClientId; calls more than 21 days old are left out
    (Metrica joins calls to visits only within 21 days: run it daily)."""
    from pbx_tracker.exports.commands import export_metrica as run_export

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(
        run_export(
            settings.database.url,
            settings.exports,
            first,
            last,
            Path(out_path),
            zone=settings.report_rules().zone,
            now=_now(),
        )
    )


@export.command("ga4")
@config_option
@click.option("--from", "first", required=True, metavar="DATE", help="First day (YYYY-MM-DD).")
@click.option("--to", "last", required=True, metavar="DATE", help="Last day (YYYY-MM-DD).")
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False), help="JSON Lines file to write."
)
@click.option("--send", is_flag=True, help="Send to GA4 (exports.ga4 in the config).")
def export_ga4(
    config_path: str | None, first: str, last: str, out_path: str | None, send: bool
) -> None:
    """GA4 Measurement Protocol events of the period, to a file or sent.

    One phone_call event per call with a GA client id; calls more than 72 hours old are
    left out (GA4 refuses them).  --out FILE writes one request body per line (JSON
    Lines), --send posts them to exports.ga4.endpoint, up to 25 per request."""
    from pbx_tracker.exports.commands import export_ga4 as run_export

    if (out_path is None) == (not send):
        fail("give either --out FILE or --send")
    settings = load_or_exit(config_path, need_ami_secret=False)
    log_only_when_debugging(settings)
    run_command(
        run_export(
            settings.database.url,
            settings.exports,
            first,
            last,
            out=None if out_path is None else Path(out_path),
            zone=settings.report_rules().zone,
            target_seconds=settings.calls.target_seconds,
            now=_now(),
        )
    )


@main.group()
def report() -> None:
    """Reports over a period: calls, leads, answering, callbacks and ad spend.

    Days are cut in routing.timezone (else the machine's zone); --from and --to
    take a date (both days included) or a date and time (--to not included)."""


def _report_kind(kind: str, summary: str) -> None:
    @report.command(kind, help=summary)
    @config_option
    @click.option("--from", "start", required=True, metavar="DATE", help="First day or moment.")
    @click.option("--to", "end", required=True, metavar="DATE", help="Last day, or end moment.")
    @click.option(
        "--group-by",
        metavar="DIMS",
        help="Comma-separated: source, medium, campaign, keyword, number, manager, day, hour.",
    )
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "csv", "json"]),
        default="table",
        show_default=True,
    )
    def command(
        config_path: str | None, start: str, end: str, group_by: str | None, fmt: str
    ) -> None:
        from pbx_tracker.reports.commands import show_report

        settings = load_or_exit(config_path, need_ami_secret=False)
        run_command(
            show_report(
                settings.database.url,
                settings.report_rules(),
                settings.directory,
                kind,
                start=start,
                end=end,
                group_by=group_by,
                fmt=fmt,
            )
        )


for _kind, _summary in (
    ("sources", "Calls, leads, answering and cost by source."),
    ("campaigns", "Calls, leads, answering and cost by source and campaign."),
    ("keywords", "Calls, leads and answering by source and keyword (utm_term)."),
    ("numbers", "Calls, leads and answering by tracked number."),
    ("days", "Calls, leads, answering and cost by day."),
    ("callbacks", "Missed calls and callbacks (done, within the SLA, median minutes) by day."),
    ("managers", "Per manager: answered, missed while free, answer and callback speed, talk."),
):
    _report_kind(_kind, _summary)


@main.group()
def spend() -> None:
    """Ad spend per source or campaign per day, for cost per call and per lead."""


@spend.command("import")
@config_option
@click.argument("file", type=click.Path(dir_okay=False))
def spend_import(config_path: str | None, file: str) -> None:
    """Import FILE.csv: header date,source,campaign,amount[,currency]; date YYYY-MM-DD,
    amount with . or , as decimal mark, empty campaign = the whole source.  A day,
    source and campaign imported again replaces its amount; a bad line stores nothing."""
    from pbx_tracker.reports.commands import import_spend_file

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(import_spend_file(settings.database.url, settings.reports, Path(file), now=_now()))


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


main.add_command(web)

if __name__ == "__main__":
    main()
