"""A manager's press on a reminder's button: who pressed, may they, and doing it.

A press acts with the rights of the manager whose ``telegram_chat`` the chat is:
on their own tasks, and on every task of a group they supervise
(``callbacks.supervisors``), as the callbacks page lets them.  A chat no manager
has, or a task of someone else, is refused and nothing changes.  "Done" closes
the task (by the manager's name) and writes the ``task.closed`` that takes the
buttons off its messages; "Snooze 15 min" holds its reminders back; "Call now"
rings the manager's phone, then the customer, as the page's button does.  Each
outcome is a short sentence for answerCallbackQuery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.call_now import call_customer_now
from pbx_tracker.callbacks.ringme import RingMe, RingMeRefused
from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.callbacks.task_actions import close_task, snooze_task
from pbx_tracker.phones import display_number
from pbx_tracker.staff import Directory, Manager
from pbx_tracker.telegram.messages import Action, closed_text
from pbx_tracker.telegram.platform import enqueue_closed

__all__ = ["SNOOZE", "Buttons", "Press", "Pressed"]

log = structlog.get_logger(__name__)

SNOOZE = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Press:
    """A button pressed in a chat: the action and task its data names."""

    chat: int
    action: Action
    task_id: int


@dataclass(frozen=True, slots=True)
class Pressed:
    """What came of a press: the answer, and (after Call now) the number being dialled."""

    answer: str
    ringing: str | None = None
    done: bool = False


class Buttons:
    """Carries out presses against the database (and ring me for Call now)."""

    def __init__(
        self,
        engine: AsyncEngine,
        directory: Directory,
        config: CallbackSettings,
        *,
        now: Callable[[], datetime],
        zone: tzinfo | None,
        ringme: RingMe | None = None,
        dial: Callable[[str], str] | None = None,
    ) -> None:
        self._engine = engine
        self._directory = directory
        self._config = config
        self._now = now
        self._zone = zone
        self._ringme = ringme
        self._dial = dial or (lambda extension: f"PJSIP/{extension}")

    async def press(self, press: Press) -> Pressed:
        manager = self._directory.manager_for_account("telegram_chat", press.chat)
        if manager is None:
            log.warning("telegram.press_refused", chat=press.chat, task_id=press.task_id)
            return Pressed("This chat is not linked to a manager: nothing was changed.")
        async with self._engine.connect() as conn:
            task = await tasks.get_task(conn, press.task_id)
        if task is None:
            return Pressed("That callback no longer exists.")
        if not self._may_act(manager, task):
            log.warning(
                "telegram.press_refused", chat=press.chat, task_id=task.id, manager=manager.name
            )
            return Pressed("That callback belongs to another manager: nothing was changed.")
        if not task.is_open:
            return Pressed("That callback is already done.")
        if press.action == "done":
            return await self._done(manager, task)
        if press.action == "snooze":
            return await self._snooze(manager, task)
        return await self._call_now(manager, task)

    def _may_act(self, manager: Manager, task: tasks.CallbackTask) -> bool:
        """Their own task, or one of a group they supervise."""
        supervisor = self._config.supervisors.get(task.group_name or "")
        return manager.extension in (task.assignee, supervisor)

    async def _done(self, manager: Manager, task: tasks.CallbackTask) -> Pressed:
        now = self._now()
        try:
            async with self._engine.begin() as conn:
                closed = await close_task(conn, task.id, by=manager.name, now=now)
                text = closed_text(closed, self._directory.region, self._zone)
                await enqueue_closed(conn, task.id, text, now)
        except tasks.TaskError:
            return Pressed("That callback is already done.")
        log.info("telegram.callback_done", task_id=task.id, manager=manager.name)
        return Pressed("Marked as done.", done=True)

    async def _snooze(self, manager: Manager, task: tasks.CallbackTask) -> Pressed:
        now = self._now()
        until = now + SNOOZE
        try:
            async with self._engine.begin() as conn:
                await snooze_task(conn, task.id, until=until, by=manager.name, now=now)
        except tasks.TaskError:
            return Pressed("That callback is already done.")
        log.info("telegram.callback_snoozed", task_id=task.id, manager=manager.name)
        return Pressed(f"No reminders before {until.astimezone(self._zone):%H:%M}.")

    async def _call_now(self, manager: Manager, task: tasks.CallbackTask) -> Pressed:
        """Ring the manager's phone; once they pick up, Asterisk dials the customer."""
        if self._ringme is None:
            return Pressed("Calling from Telegram is off (callbacks.ring_me.enabled).")
        if not task.dialable or task.customer is None:
            return Pressed("This number cannot be dialled.")
        dial = self._dial(manager.extension)
        try:
            await call_customer_now(
                self._ringme,
                self._engine,
                task,
                extension=manager.extension,
                dial=dial,
                at=self._now(),
            )
        except RingMeRefused as refused:
            return Pressed(f"Could not call: {refused.reason}.")
        log.info("telegram.callback_call", task_id=task.id, manager=manager.name)
        shown = display_number(task.customer, self._directory.region)
        return Pressed("Your phone rings now.", ringing=shown)
