"""`pbx-tracker report …` and `spend …`: reports over a period, and the ad spend they cost."""

from __future__ import annotations

from pathlib import Path

import click

from pbx_tracker.cli.common import (
    config_option,
    load_or_exit,
    now,
    run_command,
)


@click.group()
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


@click.group()
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
    run_command(import_spend_file(settings.database.url, settings.reports, Path(file), now=now()))
