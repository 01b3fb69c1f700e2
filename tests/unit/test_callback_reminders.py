"""The reminder email and webhook payload, and the webhook signature."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from reminder_sample import ANNA, REMINDER, SOURCE

from pbx_tracker.callbacks.notifiers import sign, verify_signature
from pbx_tracker.callbacks.reminders import Reminder, render_email, webhook_payload

MOSCOW = ZoneInfo("Europe/Moscow")


def render(reminder: Reminder = REMINDER, zone: Any = MOSCOW) -> EmailMessage:
    """The message as a mail client would read it: rendered, sent as bytes, parsed back."""
    message = render_email(
        reminder, to=["anna@example.ru"], sender="pbx@example.ru", region="RU", zone=zone
    )
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(message: EmailMessage, kind: str = "plain") -> str:
    part = message.get_body((kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


class TestEmail:
    def test_subject_names_the_number_the_tries_and_the_wait(self) -> None:
        """The subject is enough to act on: whom to call, how often they tried, how long ago."""
        message = render()
        assert message["Subject"] == "Call back 8 (916) 123-45-01 (tried 3 times, waiting 25 min)"
        assert message["To"] == "anna@example.ru"
        assert message["From"].addresses[0].addr_spec == "pbx@example.ru"

    def test_body_tells_who_when_what_and_to_whom(self) -> None:
        """The body shows the customer, local times, the number and source, the assignee."""
        body = text_of(render())
        assert "8 (916) 123-45-01" in body
        assert "3 times, first at 2024-05-14 10:00 MSK, last at 10:20 MSK" in body
        assert "Waiting:     25 min" in body
        assert f"8 (495) 123-45-67, source {SOURCE}" in body
        assert f"{ANNA} (101), group sales" in body
        assert "#2" in body

    def test_cyrillic_survives_in_both_parts(self) -> None:
        """Source and name come back intact from the bytes, as UTF-8, in text and HTML."""
        message = render()
        assert message.get_body(("plain",))["Content-Type"].params["charset"] == "utf-8"
        for kind in ("plain", "html"):
            assert SOURCE in text_of(message, kind)
            assert ANNA in text_of(message, kind)

    def test_without_a_link_the_commands_are_given(self) -> None:
        """No link configured: the CLI commands to call back and to close the task."""
        body = text_of(render())
        assert "pbx-tracker callbacks call 42" in body
        assert "pbx-tracker callbacks done 42" in body

    def test_a_link_replaces_the_commands(self) -> None:
        """With a link the manager is sent there, in text and as an HTML anchor."""
        reminder = dataclasses.replace(REMINDER, link="https://crm.example.ru/callbacks/42?a=1&b=2")
        message = render(reminder)
        assert "https://crm.example.ru/callbacks/42?a=1&b=2" in text_of(message)
        assert "callbacks call" not in text_of(message)
        assert "href='https://crm.example.ru/callbacks/42?a=1&amp;b=2'" in text_of(message, "html")

    def test_a_hidden_caller_cannot_be_called_back(self) -> None:
        """A hidden number is said to be so, and no call command is offered."""
        reminder = dataclasses.replace(REMINDER, customer=None, dialable=False, tries=1)
        message = render(reminder)
        assert message["Subject"] == "Missed call from a hidden number (tried once, waiting 25 min)"
        body = text_of(message)
        assert "hidden number: cannot be called back" in body
        assert "once, at 2024-05-14 10:00 MSK" in body
        assert "callbacks call" not in body
        assert "pbx-tracker callbacks done 42" in body

    def test_an_escalation_is_marked_sla(self) -> None:
        """An escalation's subject starts with [SLA] and the body says why."""
        reminder = dataclasses.replace(REMINDER, kind="escalation")
        message = render(reminder)
        assert message["Subject"].startswith("[SLA] Call back 8 (916) 123-45-01 (tried 3 times")
        assert "not called back within the SLA" in text_of(message)

    def test_times_follow_the_zone_and_long_waits_read_in_hours(self) -> None:
        """UTC is shown as such when asked; a wait of hours is given in hours and minutes."""
        reminder = dataclasses.replace(REMINDER, now=datetime(2024, 5, 14, 9, 5, tzinfo=UTC))
        message = render(reminder, zone=UTC)
        assert message["Subject"].endswith("(tried 3 times, waiting 2 h 5 min)")
        assert "first at 2024-05-14 07:00 UTC, last at 07:20 UTC" in text_of(message)

    def test_foreign_numbers_are_international(self) -> None:
        """A customer abroad is shown with the country code."""
        reminder = dataclasses.replace(REMINDER, customer="+4930123456")
        assert render(reminder)["Subject"].startswith("Call back +49 30 123456 (")


class TestPayload:
    def test_fields_are_json_ready_with_utc_times(self) -> None:
        """Every field is there, times in ISO 8601 UTC, Cyrillic kept."""
        payload = webhook_payload(REMINDER)
        assert json.loads(json.dumps(payload, ensure_ascii=False)) == payload
        assert payload == {
            "event": "callback.reminder",
            "delivery": payload["delivery"],
            "task_id": 42,
            "customer": "+79161234501",
            "dialable": True,
            "tries": 3,
            "first_missed_at": "2024-05-14T07:00:00Z",
            "last_missed_at": "2024-05-14T07:20:00Z",
            "sent_at": "2024-05-14T07:25:00Z",
            "did": "+74951234567",
            "source": SOURCE,
            "assignee": "101",
            "assignee_name": ANNA,
            "group": "sales",
            "reminder_number": 2,
            "link": None,
        }

    def test_an_escalation_has_its_own_event(self) -> None:
        """Escalations are told apart by the event name."""
        payload = webhook_payload(dataclasses.replace(REMINDER, kind="escalation"))
        assert payload["event"] == "callback.escalation"

    def test_delivery_id_is_stable_per_reminder(self) -> None:
        """The same reminder gets the same id (even sent later); the next one a new id."""
        later = dataclasses.replace(REMINDER, now=datetime(2024, 5, 14, 8, 0, tzinfo=UTC))
        following = dataclasses.replace(REMINDER, reminder_number=3)
        escalation = dataclasses.replace(REMINDER, kind="escalation")
        delivery = webhook_payload(REMINDER)["delivery"]
        assert webhook_payload(later)["delivery"] == delivery
        assert webhook_payload(following)["delivery"] != delivery
        assert webhook_payload(escalation)["delivery"] != delivery


class TestSignature:
    BODY = '{"event":"callback.reminder","source":"\u042f"}'.encode()

    def test_round_trip(self) -> None:
        """A signature made by sign() verifies over the same timestamp and body."""
        header = sign("s3cret", 1715670300, self.BODY)
        assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
        assert verify_signature("s3cret", "1715670300", self.BODY, header, now=1715670310)

    def test_the_scheme_is_hmac_sha256_of_timestamp_dot_body(self) -> None:
        """The documented scheme, computed independently, gives the same header."""
        digest = hmac.new(b"s3cret", b"1715670300." + self.BODY, hashlib.sha256).hexdigest()
        assert sign("s3cret", "1715670300", self.BODY) == f"sha256={digest}"

    @pytest.mark.parametrize(
        ("secret", "timestamp", "body"),
        [
            ("s3cret", "1715670300", BODY.replace(b"reminder", b"escalation")),
            ("s3cret", "1715670301", BODY),
            ("other", "1715670300", BODY),
        ],
        ids=["tampered-body", "tampered-timestamp", "wrong-secret"],
    )
    def test_tampering_fails(self, secret: str, timestamp: str, body: bytes) -> None:
        """Changing the body, the timestamp or the secret breaks the signature."""
        header = sign("s3cret", "1715670300", self.BODY)
        assert not verify_signature(secret, timestamp, body, header, tolerance=None)

    @pytest.mark.parametrize("header", [None, "", "sha256=", "md5=abc", "sha256=zz"])
    def test_malformed_headers_fail(self, header: str | None) -> None:
        """A missing or malformed header is simply not valid."""
        assert not verify_signature("s3cret", "1715670300", self.BODY, header, tolerance=None)

    def test_old_timestamps_are_refused(self) -> None:
        """Outside the tolerance a correctly signed request is refused (no replays)."""
        header = sign("s3cret", 1715670300, self.BODY)
        assert not verify_signature("s3cret", 1715670300, self.BODY, header, now=1715670300 + 301)
        assert not verify_signature("s3cret", "17156x0300", self.BODY, header, tolerance=None)
