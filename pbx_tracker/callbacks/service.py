"""Missed calls become callback tasks, and their assignees are reminded until done.

`CallbackService` runs inside the daemon.  Every call record, once written,
goes through the task policy (`finished_calls.apply_call`): a missed call opens or
joins its customer's task, a call that reached the customer resolves it.  A
new task gets an assignee (who should have answered, else the free manager of
its group who has waited longest) and two jobs in the scheduler: its next
reminder and its escalation at the SLA.  A reminder goes out through the
assignee's channels (email, webhook, ring me: `sending.ReminderSender`) and is
always logged; a failing channel is logged and recorded, and the next
scheduled reminder tries again.
Nothing here waits on the AMI listener or the call writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.finished_calls import apply_call
from pbx_tracker.callbacks.leader import Leadership
from pbx_tracker.callbacks.ringme import RingMe
from pbx_tracker.callbacks.schedule import (
    SWEEP_SECONDS,
    ReminderScheduler,
    due_reminders,
    working_time_after,
)
from pbx_tracker.callbacks.sending import ExtraChannel, ReminderSender
from pbx_tracker.callbacks.task_actions import assign_task
from pbx_tracker.calls.records import CallRecord, CallStatus
from pbx_tracker.hours import WorkingHours
from pbx_tracker.routing.settings import zone_of
from pbx_tracker.store.calls import list_calls, list_outbound_calls
from pbx_tracker.store.engine import describe_error, is_transient_error

if TYPE_CHECKING:
    from pbx_tracker.callbacks.settings import CallbackSettings
    from pbx_tracker.routing.availability import ManagerBoard
    from pbx_tracker.staff import Directory

__all__ = ["CallbackService"]

log = structlog.get_logger(__name__)

SYSTEM = "pbx-tracker"  # who assigned a task when no person did
CATCH_UP = timedelta(days=1)  # calls stored while no daemon ran, taken in at start
JOBS_END_SECONDS = 10.0  # at stop, the reminder jobs cut get this long to end
# seconds between tries to record a reminder that went out (then the sweep tries again)
WRITE_DOWN_WAITS: tuple[float, ...] = (1, 2, 4, 8, 15, 15, 15, 15, 15, 15)


@dataclass(frozen=True, slots=True)
class _Sent:
    """A reminder or escalation that went out: what `tasks.record_reminder` writes down."""

    at: datetime
    channels: list[str]
    covers: int | None = None


class CallbackService:
    """Tasks from finished calls, reminders from the scheduler, until stopped.

    ``config`` is the ``callbacks:`` section; ``directory`` finds the managers to
    remind; ``database_url`` is where the scheduler keeps its jobs; ``timezone`` is
    the routing zone the reminders' hours are read in (None: the machine's).
    """

    def __init__(
        self,
        config: CallbackSettings,
        directory: Directory,
        engine: AsyncEngine,
        *,
        database_url: str,
        timezone: str | None = None,
        board: ManagerBoard | None = None,
        ringme: RingMe | None = None,
        clock: Callable[[], float] = time.time,
        extra_channels: Mapping[str, ExtraChannel] | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        self.database_url = database_url
        self.engine = engine
        self.board = board
        self.ringme = ringme
        self.clock = clock
        self.zone = zone_of(timezone)
        self.hours = None if self.config.hours is None else WorkingHours.parse(self.config.hours)
        self.sender = ReminderSender(
            config,
            directory,
            engine,
            zone=self.zone,
            now=self.now,
            board=board,
            ringme=ringme,
            extra_channels=extra_channels or {},
        )
        self.leadership = Leadership(engine)
        self.sweep_seconds = float(SWEEP_SECONDS)
        self.scheduler = self._new_scheduler()
        self._follower: asyncio.Task[None] | None = None
        self.became_leader = asyncio.Event()  # this daemon now sends the reminders
        self._calls: asyncio.Queue[tuple[CallRecord, bool]] = asyncio.Queue()  # (call, again)
        self._worker: asyncio.Task[None] | None = None
        self._catching_up: asyncio.Task[None] | None = None
        self._unrecorded: dict[tuple[str, int], _Sent] = {}  # (job kind, task): sent, not stored
        self.write_down_waits = WRITE_DOWN_WAITS
        self.handled = asyncio.Event()  # set after each call taken in and each job run (tests)
        self.on_change: Callable[[str, tasks.CallbackTask], None] | None = None  # the demo

    # -- lifecycle -----------------------------------------------------------------

    def _new_scheduler(self) -> ReminderScheduler:
        return ReminderScheduler(
            self.database_url,
            self.run_job,
            sweep=self.sweep,
            sweep_seconds=self.sweep_seconds,
        )

    async def start(self) -> None:
        """Take calls in, and lead (run the reminders) or follow until the leader is gone;
        the last day's calls are looked at again in the background."""
        if await self.leadership.try_lead():
            await self._lead()
        else:
            log.info("callbacks.following", reason="another daemon sends the reminders")
            self._follower = asyncio.create_task(self._follow(), name="callbacks-follow")
        self._worker = asyncio.create_task(self._take_calls(), name="callbacks")
        self._catching_up = asyncio.create_task(self._catch_up(), name="callbacks-catch-up")

    async def _lead(self) -> None:
        self.scheduler = self._new_scheduler()
        self.scheduler.start()
        await self._keep_scheduled()
        self.became_leader.set()

    async def _follow(self) -> None:
        """Try to lead every sweep interval; take over the jobs once leading."""
        # polled: nothing tells a follower that the leader's session ended
        while not await self.leadership.try_lead():  # noqa: ASYNC110
            await asyncio.sleep(self.sweep_seconds)
        await self._lead()

    async def _keep_scheduled(self) -> None:
        """Every open task has its next reminder and its escalation in the scheduler.

        A daemon killed while sending a reminder left no job for it (APScheduler
        removes a date job when it starts it): this puts it back.  Extra runs
        send nothing (`_remind` counts what is due against what was sent).  A task
        opened by another process with no assignee gets the routing board's pick.
        """
        async with self.engine.connect() as conn:
            open_tasks = await tasks.list_tasks(conn, status="open", limit=10_000)
        jobs = self.scheduler.scheduled()
        now = self.now()
        for task in open_tasks:
            if task.assignee is None:
                task = await self._assign_unassigned(task)
            if _snooze_over(task, now):
                self.scheduler.schedule("remind", task.id, now)
            elif _missing_jobs(task, jobs, len(self.config.remind_after_minutes)):
                self._schedule(task)

    async def _catch_up(self) -> None:
        """The last day's calls again: a missed call already in a task changes nothing."""
        since = self.now() - CATCH_UP
        try:
            async with self.engine.connect() as conn:
                inbound = await list_calls(conn, since=since, limit=100_000)
                outbound = await list_outbound_calls(conn, since=since, limit=100_000)
        except Exception as error:  # the database answers later: new calls still count
            log.warning("callbacks.catch_up_failed", error=str(error) or type(error).__name__)
            return
        reached = [r for r in outbound if r.status is CallStatus.ANSWERED]
        for record in sorted([*inbound, *reached], key=lambda r: r.ended_at or r.started_at):
            self._calls.put_nowait((record, True))

    async def stop(self, drain: float = 5.0) -> None:
        """Stop after the calls already handed over are taken in (bounded by ``drain``)."""
        if self._worker is not None and not self._worker.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._calls.join(), drain)
        self.scheduler.shutdown()
        await self.scheduler.jobs_ended(JOBS_END_SECONDS)
        await self.leadership.release()
        for task in (self._follower, self._catching_up, self._worker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.sender.close()

    def call_written(self, record: CallRecord, new: bool) -> None:
        """The writer stored a call (any thread-free context): take it in order."""
        if self.config.enabled:
            self._calls.put_nowait((record, False))

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- finished calls ------------------------------------------------------------

    async def _take_calls(self) -> None:
        while True:
            record, again = await self._calls.get()
            try:
                await self._take_call(record, quiet=again)
            except Exception:  # one call must not stop the callbacks of all others
                log.exception("callbacks.call_failed", linkedid=record.linkedid)
            finally:
                self._calls.task_done()
            self.handled.set()

    async def _take_call(self, record: CallRecord, *, quiet: bool = False) -> None:
        async with self.engine.begin() as conn:
            change = await apply_call(conn, record, self.config, now=self.now())
            if change is not None and change.kind == "opened" and change.task.assignee is None:
                assignee = self._pick_assignee(change.task.group_name, record.did)
                if assignee is not None:
                    task = await assign_task(
                        conn, change.task_id, extension=assignee, by=SYSTEM, now=self.now()
                    )
                    change = tasks.TaskChange(change.kind, task)
        if change is None or (quiet and change.kind == "attempt"):
            return
        task = change.task
        log.info(
            f"callbacks.{change.kind}",
            task_id=task.id,
            customer=task.customer,
            tries=task.tries,
            assignee=task.assignee,
            linkedid=record.linkedid,
        )
        self._tell(change.kind, task)
        if not self.leadership.leading:
            return  # the leading daemon's sweep schedules it
        if change.kind == "opened":
            self._schedule(task)
        elif change.kind == "resolved":
            self.scheduler.cancel(task.id)

    def _tell(self, what: str, task: tasks.CallbackTask) -> None:
        if self.on_change is not None:
            try:
                self.on_change(what, task)
            except Exception:
                log.exception("callbacks.on_change_failed", task_id=task.id)

    async def _assign_unassigned(self, task: tasks.CallbackTask) -> tasks.CallbackTask:
        """A task opened elsewhere with nobody to call back (a spam mark undone on the
        command line or the calls page): the board's pick, as a missed call's task gets."""
        assignee = self._pick_assignee(task.group_name, task.did)
        if assignee is None:
            return task
        async with self.engine.begin() as conn:
            fresh = await tasks.get_task(conn, task.id)
            if fresh is None or not fresh.is_open or fresh.assignee is not None:
                return fresh or task  # closed or given to someone meanwhile
            task = await assign_task(conn, task.id, extension=assignee, by=SYSTEM, now=self.now())
        log.info("callbacks.assigned", task_id=task.id, assignee=assignee, by=SYSTEM)
        self._tell("assigned", task)
        return task

    def _pick_assignee(self, group: str | None, did: str | None) -> str | None:
        """The free member of the group (default: the number's) idle longest, else its first."""
        board = self.board
        if board is None:
            return None
        found = board.plan.groups.get(group) if group else board.plan.group_for_number(did)
        if found is None or not found.members:
            return None
        members = list(found.members)
        free = [m for m in members if board.status(m) == "free"]
        if not free:
            return members[0]
        return min(free, key=lambda m: (board.last_call_end(m) or 0.0, members.index(m)))

    def _schedule(self, task: tasks.CallbackTask) -> None:
        schedule = self.config.remind_after_minutes
        if task.reminders_sent < len(schedule):
            at = self._after(task.created_at, schedule[task.reminders_sent])
            self.scheduler.schedule("remind", task.id, at)
        if task.escalated_at is None:
            self.scheduler.schedule(
                "escalate", task.id, self._after(task.created_at, self.config.sla_minutes)
            )

    def _after(self, start: datetime, minutes: float) -> datetime:
        return working_time_after(start, minutes, self.hours, self.zone)

    # -- jobs ----------------------------------------------------------------------

    async def run_job(self, kind: str, task_id: int) -> None:
        """A stored job came due (maybe late, after a restart); run only while this daemon
        still holds the lock, checked right before: a leader whose database session ended
        (its lock with it, maybe taken by another daemon by now) steps down instead of
        sending a reminder twice."""
        try:
            if not await self.leadership.try_lead():
                self._step_down()
                return
            if kind == "remind":
                await self._remind(task_id)
            elif kind == "escalate":
                await self._escalate(task_id)
        except Exception:
            log.exception("callbacks.job_failed", kind=kind, task_id=task_id)
        finally:
            self.handled.set()

    async def _load(self, task_id: int) -> tasks.CallbackTask | None:
        async with self.engine.connect() as conn:
            task = await tasks.get_task(conn, task_id)
        return task if task is not None and task.is_open else None

    async def _remind(self, task_id: int) -> None:
        if ("remind", task_id) in self._unrecorded:  # sent; the database was away
            await self._write_down("remind", task_id)
            return
        task = await self._load(task_id)
        if task is None:
            return  # done meanwhile: nothing to send
        now = self.now()
        if task.snoozed_until is not None and task.snoozed_until > now:
            self.scheduler.schedule("remind", task.id, task.snoozed_until)
            return
        due = due_reminders(
            task.created_at, now, self.config.remind_after_minutes, self.hours, self.zone
        )
        if due <= task.reminders_sent and not _snooze_over(task, now):
            self._schedule(task)
            return
        channels = await self.sender.send(task, "reminder", max(due, task.reminders_sent + 1))
        self._unrecorded["remind", task.id] = _Sent(now, channels, max(due, task.reminders_sent))
        await self._write_down("remind", task.id)

    async def _escalate(self, task_id: int) -> None:
        if ("escalate", task_id) in self._unrecorded:
            await self._write_down("escalate", task_id)
            return
        task = await self._load(task_id)
        if task is None or task.escalated_at is not None:
            return
        channels = await self.sender.send(task, "escalation", task.reminders_sent)
        self._unrecorded["escalate", task.id] = _Sent(self.now(), channels)
        await self._write_down("escalate", task.id)

    async def _write_down(self, kind: str, task_id: int) -> None:
        """Record a reminder (or escalation) that went out.  Until that is written it
        stays in memory, and the job, run again (the sweep puts it back), only retries
        the write: a database away at that moment never makes it go out twice."""
        sent = self._unrecorded[kind, task_id]
        escalation = kind == "escalate"
        for wait in (*self.write_down_waits, None):
            try:
                async with self.engine.begin() as conn:
                    task = await tasks.record_reminder(
                        conn,
                        task_id,
                        at=sent.at,
                        channels=sent.channels,
                        escalation=escalation,
                        covers=None if escalation else sent.covers,
                    )
                break
            except Exception as error:  # the database is away: try again soon (the
                if wait is None or not is_transient_error(error):  # process may die)
                    raise
                log.warning(
                    "callbacks.reminder_not_recorded",
                    kind=kind,
                    task_id=task_id,
                    retry_in=wait,
                    error=describe_error(error),
                )
                await asyncio.sleep(wait)
        del self._unrecorded[kind, task_id]
        if not escalation:
            self._tell("reminded", task)
            self._schedule(task)

    async def sweep(self) -> None:
        """Every half minute: what other processes changed, and ring-me attempts gone quiet."""
        if not await self.leadership.try_lead():  # the lock went with its connection
            self._step_down()
            return
        if self.ringme is not None:
            for result in self.ringme.expire():
                log.info("callbacks.ringme_timeout", task_id=result.task_id, attempt=result.attempt)
        await self._keep_scheduled()

    def _step_down(self) -> None:
        """The lock is lost: stop sending, and follow until this daemon may lead again."""
        self.became_leader.clear()
        self.scheduler.shutdown()
        if self._follower is None or self._follower.done():
            self._follower = asyncio.create_task(self._follow(), name="callbacks-follow")


def _missing_jobs(task: tasks.CallbackTask, jobs: set[str], reminders: int) -> bool:
    """The task should have a reminder or an escalation job that is not stored."""
    remind_missing = task.reminders_sent < reminders and f"callback-{task.id}-remind" not in jobs
    escalate_missing = task.escalated_at is None and f"callback-{task.id}-escalate" not in jobs
    return remind_missing or escalate_missing


def _snooze_over(task: tasks.CallbackTask, now: datetime) -> bool:
    """Snoozed until a moment now past, and not reminded of since."""
    until = task.snoozed_until
    if until is None or until > now:
        return False
    return task.last_reminder_at is None or task.last_reminder_at < until
