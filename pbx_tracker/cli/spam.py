"""`pbx-tracker spam …`: calls marked as spam, and the marks undone."""

from __future__ import annotations

import click

from pbx_tracker.cli.common import (
    config_option,
    load_or_exit,
    now,
    run_command,
)


@click.group()
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
    targets = settings.crm.targets
    run_command(mark_call(settings.database.url, call_id, by=by, now=now(), crm_targets=targets))


@spam.command("undo")
@config_option
@click.argument("call_id", type=int)
@click.option("--by", required=True, metavar="EXT", help="Who undoes it (e.g. an extension).")
def spam_undo(config_path: str | None, call_id: int, by: str) -> None:
    """The call is no spam: a missed call opens (or joins) its customer's callback task."""
    from pbx_tracker.spam.commands import undo_call

    settings = load_or_exit(config_path, need_ami_secret=False)
    undo = undo_call(
        settings.database.url,
        settings.callbacks,
        call_id,
        by=by,
        now=now(),
        crm_targets=settings.crm.targets,
    )
    run_command(undo)
