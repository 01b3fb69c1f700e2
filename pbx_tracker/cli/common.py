"""What the command line's modules share: the --config option, loading the config,
running one command that prints its answer or its problem, and the quiet log of
commands whose output is their answer."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from pbx_tracker.config import Settings

__all__ = [
    "CONFIG_HELP",
    "check_against_asterisk",
    "check_outside_platforms",
    "config_option",
    "database_or_exit",
    "fail",
    "load_or_exit",
    "log_only_when_debugging",
    "run_command",
    "strong_secrets_or_exit",
]

CONFIG_HELP = "Config file (else $PBX_TRACKER_CONFIG, else /etc/pbx-tracker/config.yaml)."


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP
    )(func)


def load_or_exit(config_path: str | None, *, need_ami_secret: bool = True) -> Settings:
    """Settings, or every problem on its own line and exit 1."""
    from pbx_tracker.config import ConfigError, load_settings

    try:
        settings = load_settings(config_path, need_ami_secret=need_ami_secret)
    except ConfigError as error:
        for problem in error.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    return settings


def strong_secrets_or_exit(settings: Settings) -> None:
    """Refuse placeholders, well-known defaults and too-short secrets (`weak_secrets`):
    each on its own line naming the key, and exit 1."""
    from pbx_tracker.config.weak_secrets import weak_secret_problems

    problems = weak_secret_problems(settings)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(1)


def now() -> datetime:
    """This moment in UTC: what a command dates the changes it makes with."""
    return datetime.now(UTC)


def fail(problem: str) -> NoReturn:
    """``error: <problem>`` on stderr, and exit 1."""
    click.echo(f"error: {problem}", err=True)
    sys.exit(1)


def run_command(command: Coroutine[Any, Any, str]) -> None:
    """Run one command and print its answer; what cannot be done (`CommandError`) or a
    database that cannot be used goes to stderr as one ``error:`` line, and exit 1."""
    from pbx_tracker.command_error import CommandError
    from pbx_tracker.store.engine import DatabaseProblem

    try:
        click.echo(asyncio.run(command))
    except (CommandError, DatabaseProblem) as error:
        fail(str(error))


def log_only_when_debugging(settings: Settings) -> None:
    """For a command whose output is its answer (stdout) and its problems (stderr): the
    log goes to stderr, and says nothing below critical unless ``logging.level`` is debug."""
    from pbx_tracker.logging import configure_logging

    level = "debug" if settings.logging.level == "debug" else "critical"
    configure_logging(
        level, settings.logging.format, secrets=settings.secret_values(), stream=sys.stderr
    )


@contextmanager
def database_or_exit(url: str, doing: str) -> Iterator[None]:
    """A database that cannot be reached or used (the migrations' connection) is one
    ``error:`` line naming it (password masked) and what to check, and exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from pbx_tracker.store.engine import DatabaseUnavailableError, describe_error, mask_url

    try:
        yield
    except (SQLAlchemyError, OSError, DatabaseUnavailableError) as error:
        fail(
            f"cannot {doing} the database {mask_url(url)}: {describe_error(error)}"
            " (is it running and reachable, do the URL's user and password let it in?)"
        )


def check_against_asterisk(settings: Settings) -> int:
    """`check-config --live`: each problem on stderr (one line naming the key), what
    could not be checked on stdout as ``note: ...``; the exit code."""
    from pbx_tracker.selfcheck.live import check_live

    log_only_when_debugging(settings)
    findings = asyncio.run(check_live(settings))
    for note in findings.notes:
        click.echo(f"note: {note}")
    for problem in findings.problems:
        click.echo(str(problem), err=True)
    if findings.problems:
        return 1
    ami = settings.ami
    click.echo(f"Asterisk OK: {ami.host}:{ami.port} as {ami.username}")
    return 0


def check_outside_platforms(settings: Settings) -> int:
    """`check-config --live`, after Asterisk: each configured platform (Bitrix24, amoCRM,
    Telegram) asked whether its webhook or token works; notes on stdout, an ``OK`` line
    for each that passed, each problem on stderr naming the key; the exit code."""
    from pbx_tracker.selfcheck.platforms import check_platforms

    findings = asyncio.run(check_platforms(settings))
    for note in findings.notes:
        click.echo(f"note: {note}")
    for line in findings.passed:
        click.echo(line)
    for problem in findings.problems:
        click.echo(str(problem), err=True)
    return 1 if findings.problems else 0
