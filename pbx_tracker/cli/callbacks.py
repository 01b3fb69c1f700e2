"""`pbx-tracker callbacks …`: the missed calls to call back, as managers work them."""

from __future__ import annotations

import click

from pbx_tracker.cli.common import (
    config_option,
    load_or_exit,
    log_only_when_debugging,
    now,
    run_command,
)


@click.group()
def callbacks() -> None:
    """Missed calls to call back: list them, close, snooze, reassign, call the customer."""


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
            now=now(),
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
    run_command(close_callback(settings.database.url, task_id, by=by, now=now()))


@callbacks.command("snooze")
@config_option
@click.argument("task_id", type=int)
@click.argument("duration")
@click.option("--by", default="cli", show_default=True, help="Who snoozes it.")
def callbacks_snooze(config_path: str | None, task_id: int, duration: str, by: str) -> None:
    """No reminders for DURATION (30m, 2h, 1h30m, 1d); then one at once."""
    from pbx_tracker.callbacks.commands import snooze_callback

    settings = load_or_exit(config_path, need_ami_secret=False)
    run_command(snooze_callback(settings.database.url, task_id, duration, by=by, now=now()))


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
            settings.database.url, settings.directory, task_id, extension, by=by, now=now()
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
