"""`pbx-tracker pool …`: how the dynamic number pools are doing."""

from __future__ import annotations

import click

from pbx_tracker.cli.common import (
    config_option,
    load_or_exit,
    now,
    run_command,
)


@click.group()
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
            now=now(),
        )
    )
