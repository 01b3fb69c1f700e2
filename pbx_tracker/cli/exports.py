"""`pbx-tracker export …`: calls for Yandex Metrica and Google Analytics 4."""

from __future__ import annotations

from pathlib import Path

import click

from pbx_tracker.cli.common import (
    config_option,
    fail,
    load_or_exit,
    log_only_when_debugging,
    now,
    run_command,
)


@click.group()
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
            now=now(),
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
            now=now(),
        )
    )
