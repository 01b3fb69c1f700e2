"""When reminders are due, and the APScheduler that wakes the daemon for them.

Due times count working time only: ``remind_after_minutes`` and
``sla_minutes`` run while `callbacks.hours` are open (in the routing time
zone), so a call missed on Friday evening is first reminded of on Monday
morning.  `due_reminders` says how many reminders of a task are due at a
moment; the reminder job sends one message for all of them (late ones are
coalesced) and stores how many were covered, so a job that runs twice, or
after a restart, sends nothing more.

`ReminderScheduler` keeps one APScheduler 3 date job per task (its next
reminder, or the escalation) in the project's database (SQLAlchemy job store,
table ``pbx_tracker_jobs``; with SQLite in a file next to it, see `jobs_url`),
so reminders that came due while the daemon was down run once at start,
however late.  A sweep job every `SWEEP_SECONDS`
catches what other processes changed (a task snoozed or closed from the
command line).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import structlog
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import make_url

from pbx_tracker.hours import WorkingHours

__all__ = [
    "JOBS_TABLE",
    "SWEEP_SECONDS",
    "ReminderScheduler",
    "due_reminders",
    "jobs_url",
    "run_task_job",
    "working_time_after",
]

log = structlog.get_logger(__name__)

JOBS_TABLE = "pbx_tracker_jobs"
SWEEP_SECONDS = 30
_LOOKAHEAD = timedelta(days=14)
_RESCHEDULE_GAP = timedelta(seconds=1)  # no working minute within two weeks: hours are all closed


def working_time_after(
    start: datetime, minutes: float, hours: WorkingHours | None, zone: tzinfo | None
) -> datetime:
    """The moment ``minutes`` of working time after ``start`` (UTC in, UTC out).

    Without hours every minute counts.  With hours, time outside them is
    skipped; 0 minutes gives ``start`` itself when open, else the next opening.
    """
    if hours is None:
        return start + timedelta(minutes=minutes)
    moment, left = start, timedelta(minutes=minutes)
    step = timedelta(minutes=1)
    limit = start + _LOOKAHEAD + left
    while moment < limit:
        if hours.is_open(moment.astimezone(zone)):
            if left <= timedelta(0):
                return moment
            chunk = min(step, left)
            moment, left = moment + chunk, left - chunk
        else:
            moment = _next_minute(moment)
    return moment


def _next_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)


def due_reminders(
    opened: datetime,
    now: datetime,
    schedule: list[float],
    hours: WorkingHours | None,
    zone: tzinfo | None,
) -> int:
    """How many of the scheduled reminders are due at ``now`` (0 .. len(schedule))."""
    due = 0
    for minutes in schedule:
        if working_time_after(opened, minutes, hours, zone) > now:
            break
        due += 1
    return due


TaskJobHandler = Callable[[str, int], Awaitable[None]]
_handler: TaskJobHandler | None = None
_running: set[asyncio.Task[Any]] = set()  # the jobs under way (`ReminderScheduler.jobs_ended`)


async def run_task_job(kind: str, task_id: int) -> None:
    """What a stored job calls: the running daemon's handler for ``kind`` of the task.

    Stored jobs name this function (not a method), so they survive a restart.
    """
    if _handler is None:
        log.warning("callbacks.job_without_daemon", kind=kind, task_id=task_id)
        return
    try:
        await _under_way(_handler(kind, task_id))
    except asyncio.CancelledError:
        # the daemon is stopping: the job's work is rolled back and redone at the next
        # start (open tasks get their jobs back); not an error for APScheduler to report
        log.info("callbacks.job_cut", kind=kind, task_id=task_id)


async def _under_way(job: Awaitable[None]) -> None:
    """Run ``job``, its task known to `ReminderScheduler.jobs_ended` meanwhile."""
    task = asyncio.current_task()
    assert task is not None  # a job is a coroutine APScheduler runs as a task
    _running.add(task)
    try:
        await job
    finally:
        _running.discard(task)


class ReminderScheduler:
    """APScheduler (asyncio) with the tasks' jobs in the project's database."""

    def __init__(
        self,
        database_url: str,
        handler: TaskJobHandler,
        *,
        sweep: Callable[[], Awaitable[None]] | None = None,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        store = SQLAlchemyJobStore(url=jobs_url(database_url), tablename=JOBS_TABLE)
        self._scheduler = AsyncIOScheduler(
            jobstores={"default": store, "memory": MemoryJobStore()},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone="UTC",
        )
        self._handler = handler
        self._sweep = sweep
        self._sweep_seconds = sweep_seconds

    def start(self) -> None:
        """Start; jobs that came due while no daemon ran, run now (once each)."""
        global _handler
        _handler = self._handler
        self._scheduler.start()
        if self._sweep is not None:
            self._scheduler.add_job(
                self._run_sweep,
                "interval",
                seconds=self._sweep_seconds,
                id="sweep",
                jobstore="memory",
            )

    def shutdown(self) -> None:
        """Stop running jobs; those under way are cancelled (see `jobs_ended`)."""
        global _handler
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        _handler = None

    async def jobs_ended(self, timeout: float) -> None:  # noqa: ASYNC109 (bounded, never raises)
        """Wait up to ``timeout`` seconds for the jobs `shutdown` cancelled to end.

        A job cut while it uses the database closes its connection as it ends; one
        cancelled a second time by the event loop's last clean-up instead (after the
        daemon stopped) can leave that close waiting for ever (SQLAlchemy's aiosqlite
        terminate), and the stopped daemon never exits.
        """
        if _running:
            await asyncio.wait(set(_running), timeout=timeout)

    async def _run_sweep(self) -> None:
        assert self._sweep is not None
        await _under_way(self._sweep())

    def schedule(self, kind: str, task_id: int, when: datetime) -> None:
        """Run the ``kind`` job of the task at ``when`` (past: in a second); replaces the last.

        Never earlier than a second from now: the job that schedules its own
        next run is still running, and APScheduler drops a date job due while
        its previous run has not finished (``max_instances``).
        """
        soonest = datetime.now(UTC) + _RESCHEDULE_GAP
        self._scheduler.add_job(
            run_task_job,
            "date",
            run_date=max(when, soonest),
            id=f"callback-{task_id}-{kind}",
            args=[kind, task_id],
            replace_existing=True,
        )

    def cancel(self, task_id: int, kinds: tuple[str, ...] = ("remind", "escalate")) -> None:
        """Forget the task's jobs (nothing happens for those there are not)."""
        for kind in kinds:
            job = self._scheduler.get_job(f"callback-{task_id}-{kind}", jobstore="default")
            if job is not None:
                job.remove()

    def scheduled(self) -> set[str]:
        """Ids of the stored task jobs (one read of the job store)."""
        return {job.id for job in self._scheduler.get_jobs("default")}

    def pending(self) -> list[tuple[str, datetime | None]]:
        """(job id, next run time) of every stored task job."""
        return [(job.id, job.next_run_time) for job in self._scheduler.get_jobs("default")]


def jobs_url(url: str) -> str:
    """Where the jobs are kept, with a synchronous driver (APScheduler 3 is synchronous).

    PostgreSQL: the project's database.  SQLite: a file next to it
    (``calls.sqlite3`` -> ``calls.jobs.sqlite3``), because SQLite locks the
    whole file: a job store write from the event loop while the call writer
    holds a transaction would wait on a commit that needs the same loop.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    database = parsed.database or ""
    if database and database != ":memory:":
        stem, dot, suffix = database.rpartition(".")
        database = f"{stem}.jobs.{suffix}" if dot and "/" not in suffix else f"{database}.jobs"
    return parsed.set(drivername="sqlite", database=database).render_as_string()
