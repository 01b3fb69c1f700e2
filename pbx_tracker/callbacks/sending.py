"""Sending a reminder: whom it concerns, which channels it goes through, and each channel.

A reminder goes to the task's assignee (an escalation to their group's
supervisor) through the manager's own channels, else their task's group's,
else the default ones: email, a signed webhook, ring me (reminders only), or a
channel handed in (``extra_channels``: Telegram).
A failing channel is logged and recorded on the task, and the others still
go; the next scheduled reminder tries it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks.notifiers import EmailNotifier, NotifyError, WebhookNotifier
from pbx_tracker.callbacks.reminders import Reminder, ReminderKind, render_email, webhook_payload
from pbx_tracker.callbacks.ringme import RingMe, RingMeCall, RingMeRefused
from pbx_tracker.callbacks.tasks import CallbackTask, record_notify_failure, record_ringme_attempt

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from pbx_tracker.callbacks.settings import CallbackSettings
    from pbx_tracker.routing.availability import ManagerBoard
    from pbx_tracker.staff import Directory, Manager

__all__ = ["ExtraChannel", "ReminderSender"]

log = structlog.get_logger(__name__)

# a channel this module does not know: sends the reminder, True when it went
ExtraChannel = Callable[[CallbackTask, Reminder, "Manager | None"], Awaitable[bool]]


class ReminderSender:
    """Sends the reminders and escalations of the ``callbacks:`` section ``config``.

    ``directory`` finds the manager to tell; ``board`` gives a manager's dial
    string for ring me; ``now`` is the service's clock; ``zone`` the zone the
    email's times are shown in.
    """

    def __init__(
        self,
        config: CallbackSettings,
        directory: Directory,
        engine: AsyncEngine,
        *,
        zone: ZoneInfo | None,
        now: Callable[[], datetime],
        board: ManagerBoard | None = None,
        ringme: RingMe | None = None,
        extra_channels: Mapping[str, ExtraChannel] | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        self.engine = engine
        self.zone = zone
        self.now = now
        self.board = board
        self.ringme = ringme
        self.extra_channels = dict(extra_channels or {})  # e.g. telegram (pbx_tracker.telegram)
        self.email = EmailNotifier(config.smtp) if config.smtp else None
        self.webhook = WebhookNotifier(config.webhook) if config.webhook else None

    async def close(self) -> None:
        """Close the webhook's HTTP session (at stop)."""
        if self.webhook is not None:
            await self.webhook.close()

    async def send(self, task: CallbackTask, kind: ReminderKind, number: int) -> list[str]:
        """Tell whom it concerns through their channels; the channels that worked."""
        extension = task.assignee
        if kind == "escalation":
            extension = self.config.supervisors.get(task.group_name or "", extension)
        manager = self.directory.manager_for_extension(extension) if extension else None
        reminder = self._reminder(task, kind, number, manager)
        log.info(
            f"callbacks.{kind}",
            task_id=task.id,
            customer=task.customer,
            tries=task.tries,
            to=extension,
            number=number,
        )
        channels = self.channels(task, manager)
        sent: list[str] = []
        for channel in channels:
            if await self._through(channel, task, reminder, manager, kind):
                sent.append(channel)
        return sent

    def channels(self, task: CallbackTask, manager: Manager | None) -> list[str]:
        """The manager's own channels, else their task's group's, else the default ones."""
        if manager is not None and manager.notify is not None:
            return list(manager.notify)
        by_group = self.config.group_notify.get(task.group_name or "")
        return list(by_group if by_group is not None else self.config.notify)

    async def _through(
        self,
        channel: str,
        task: CallbackTask,
        reminder: Reminder,
        manager: Manager | None,
        kind: ReminderKind,
    ) -> bool:
        try:
            if channel == "email":
                return await self._by_email(reminder, manager)
            if channel == "webhook" and self.webhook is not None:
                await self.webhook.send(webhook_payload(reminder))
                return True
            if channel == "ring_me" and kind == "reminder":
                return await self._ring_me(task, manager)
            if channel in self.extra_channels:
                return await self.extra_channels[channel](task, reminder, manager)
        except NotifyError as error:
            log.warning(
                "callbacks.notify_failed", task_id=task.id, channel=channel, reason=error.reason
            )
            async with self.engine.begin() as conn:
                await record_notify_failure(
                    conn, task.id, at=self.now(), channel=channel, reason=error.reason
                )
        return False

    async def _by_email(self, reminder: Reminder, manager: Manager | None) -> bool:
        if self.email is None or manager is None or manager.email is None:
            return False
        message = render_email(
            reminder,
            to=[manager.email],
            sender=self.email_sender,
            region=self.directory.region,
            zone=self.zone,
        )
        await self.email.send(message)
        return True

    @property
    def email_sender(self) -> str:
        """The reminders' From address."""
        return self.config.smtp.sender if self.config.smtp else "pbx-tracker@localhost"

    async def _ring_me(self, task: CallbackTask, manager: Manager | None) -> bool:
        if self.ringme is None or manager is None or not task.dialable or task.customer is None:
            return False
        dial = self.board.plan.dial_string(manager.extension) if self.board else None
        call = RingMeCall(
            task_id=task.id,
            manager=manager.extension,
            manager_dial=(dial or f"PJSIP/{manager.extension}").split("&")[0],
            customer=task.customer,
            did=task.did,
            attempt=task.ringme_attempts + 1,
        )
        try:
            await self.ringme.start(call)
        except RingMeRefused as refused:
            log.info("callbacks.ringme_refused", task_id=task.id, reason=refused.reason)
            return False
        async with self.engine.begin() as conn:
            await record_ringme_attempt(conn, task.id, at=self.now(), manager=manager.extension)
        return True

    def _reminder(
        self, task: CallbackTask, kind: ReminderKind, number: int, manager: Manager | None
    ) -> Reminder:
        link = self.config.link_template
        return Reminder(
            task_id=task.id,
            kind=kind,
            customer=task.customer,
            dialable=task.dialable,
            tries=task.tries,
            first_missed_at=task.first_missed_at,
            last_missed_at=task.last_missed_at,
            did=task.did,
            source=task.source,
            assignee=task.assignee,
            assignee_name=manager.name if manager else None,
            group=task.group_name,
            reminder_number=number,
            link=link.format(id=task.id) if link else None,
            now=self.now(),
        )
