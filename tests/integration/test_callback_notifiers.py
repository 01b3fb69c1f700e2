"""Reminders delivered to real servers on loopback: aiosmtpd for email, aiohttp.web for webhooks."""

from __future__ import annotations

import asyncio
import email
import email.policy
import gc
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from reminder_sample import ANNA, REMINDER, SOURCE
from servers import serving_app

from pbx_tracker.callbacks.notifiers import (
    EmailNotifier,
    NotifyError,
    WebhookNotifier,
    verify_signature,
)
from pbx_tracker.callbacks.reminders import render_email, webhook_payload
from pbx_tracker.callbacks.settings import SmtpSettings, WebhookSettings

PASSWORD = "smtp-pa55word"
SECRET = "webhook-s3cret"
TOKEN = "t0ken-in-the-url"
BOUND = 10.0  # seconds: no test waits longer for anything


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def assert_secret_free(error: NotifyError, logs: list[dict[str, Any]], *secrets: str) -> None:
    """Neither the error (nor what it was raised from) nor any log entry shows a secret."""
    texts = [str(error), repr(error), repr(error.__cause__), repr(logs)]
    for secret in secrets:
        assert all(secret not in text for text in texts), secret


# -- email ------------------------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler that keeps every accepted envelope; refuses ``nobody@``."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []  # appended in the server's thread

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


class LoopbackController(Controller):
    """A threaded aiosmtpd server on 127.0.0.1 and a free port, read back once bound."""

    def __init__(self, **smtp_parameters: Any) -> None:
        self.inbox = Inbox()
        super().__init__(
            self.inbox, hostname="127.0.0.1", port=0, ready_timeout=BOUND, **smtp_parameters
        )

    def _create_server(self) -> Any:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server: asyncio.AbstractServer = await super()._create_server()
        self.port = server.sockets[0].getsockname()[1]  # before start() connects to it
        return server


def accept_anna(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    valid = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"anna",
        PASSWORD.encode(),
    )
    return AuthResult(success=valid, handled=False)  # False: the server answers 535


@pytest.fixture(name="smtp")
def _smtp() -> Iterator[LoopbackController]:
    """A plain SMTP server without authentication."""
    controller = LoopbackController()
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture(name="smtp_auth")
def _smtp_auth() -> Iterator[LoopbackController]:
    """An SMTP server that wants AUTH (anna / PASSWORD) and allows it without TLS."""
    controller = LoopbackController(authenticator=accept_anna, auth_require_tls=False)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def smtp_settings(port: int, **more: Any) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, sender="pbx@example.ru", **more)


def reminder_email(to: list[str] | None = None) -> EmailMessage:
    recipients = ["anna@example.ru"] if to is None else to
    return render_email(REMINDER, to=recipients, sender="pbx@example.ru", region="RU", zone=UTC)


class TestEmailNotifier:
    async def test_the_reminder_arrives_intact(self, smtp: LoopbackController) -> None:
        """Envelope, subject and the Cyrillic body come out of the server as they went in."""
        async with asyncio.timeout(BOUND):
            await EmailNotifier(smtp_settings(smtp.port)).send(reminder_email())
        [envelope] = smtp.inbox.envelopes
        assert envelope.mail_from == "pbx@example.ru"
        assert envelope.rcpt_tos == ["anna@example.ru"]
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        assert message["Subject"] == "Call back 8 (916) 123-45-01 (tried 3 times, waiting 25 min)"
        body = message.get_body(("plain",))
        assert body is not None
        assert f"source {SOURCE}" in body.get_content()
        assert f"{ANNA} (101)" in body.get_content()

    async def test_login_with_the_right_password(self, smtp_auth: LoopbackController) -> None:
        """With a username set the notifier logs in, and the server accepts the message."""
        settings = smtp_settings(smtp_auth.port, username="anna", password=PASSWORD)
        async with asyncio.timeout(BOUND):
            await EmailNotifier(settings).send(reminder_email())
        assert len(smtp_auth.inbox.envelopes) == 1

    async def test_a_wrong_password_is_an_authentication_error(
        self, smtp_auth: LoopbackController
    ) -> None:
        """A refused login names authentication and never shows the password."""
        wrong = PASSWORD + "-wrong"
        settings = smtp_settings(smtp_auth.port, username="anna", password=wrong)
        with structlog.testing.capture_logs() as logs, pytest.raises(NotifyError) as caught:
            async with asyncio.timeout(BOUND):
                await EmailNotifier(settings).send(reminder_email())
        assert str(caught.value).startswith(f"smtp 127.0.0.1:{smtp_auth.port}: authentication")
        assert "535" in caught.value.reason
        assert_secret_free(caught.value, logs, wrong, PASSWORD)
        assert smtp_auth.inbox.envelopes == []

    async def test_a_closed_port_fails_quickly(self) -> None:
        """Nobody listening: connection refused, at once."""
        port = free_port()
        with pytest.raises(NotifyError) as caught:
            async with asyncio.timeout(2):
                await EmailNotifier(smtp_settings(port)).send(reminder_email())
        assert str(caught.value) == f"smtp 127.0.0.1:{port}: connection refused"

    async def test_a_silent_server_times_out(self) -> None:
        """A server that accepts and never greets is given up after the timeout."""

        hung_up = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # until the client gives up and closes
            writer.close()
            await writer.wait_closed()
            hung_up.set()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(NotifyError) as caught:
                async with asyncio.timeout(BOUND):
                    await EmailNotifier(smtp_settings(port, timeout=0.2)).send(reminder_email())
            async with asyncio.timeout(BOUND):
                await hung_up.wait()  # the client closed its connection
        assert str(caught.value) == f"smtp 127.0.0.1:{port}: no answer within 0.2 s"

    async def test_starttls_required_but_not_offered(self, smtp: LoopbackController) -> None:
        """security: starttls against a server without STARTTLS fails instead of going plain."""
        settings = smtp_settings(smtp.port, security="starttls")
        with pytest.raises(NotifyError, match="STARTTLS"):
            async with asyncio.timeout(BOUND):
                await EmailNotifier(settings).send(reminder_email())
        assert smtp.inbox.envelopes == []

    async def test_a_refused_recipient(self, smtp: LoopbackController) -> None:
        """The only recipient refused: NotifyError naming the address and the answer."""
        with pytest.raises(NotifyError) as caught:
            async with asyncio.timeout(BOUND):
                await EmailNotifier(smtp_settings(smtp.port)).send(
                    reminder_email(["nobody@example.ru"])
                )
        assert "recipients refused: nobody@example.ru (550 5.1.1 no such user)" in str(caught.value)

    async def test_some_recipients_refused_is_logged_not_raised(
        self, smtp: LoopbackController
    ) -> None:
        """Others got it, so no error (a retry would send them a copy): a warning instead."""
        message = reminder_email(["anna@example.ru", "nobody@example.ru"])
        with structlog.testing.capture_logs() as logs:
            async with asyncio.timeout(BOUND):
                await EmailNotifier(smtp_settings(smtp.port)).send(message)
        assert [e.rcpt_tos for e in smtp.inbox.envelopes] == [["anna@example.ru"]]
        [entry] = [e for e in logs if e["event"] == "callbacks.email_recipients_refused"]
        assert entry["log_level"] == "warning"
        assert entry["refused"] == ["nobody@example.ru"]


# -- webhook ----------------------------------------------------------------------------

Answer = int | tuple[int, dict[str, str]] | None  # None: never answer


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes


@dataclass
class Endpoint:
    """A CRM stand-in: records each request and answers from a script (then ``default``)."""

    url: str = ""
    answers: list[Answer] = field(default_factory=list)
    default: Answer = 200
    seen: list[Request] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(Request(dict(request.headers), await request.read()))
        answer = self.answers.pop(0) if self.answers else self.default
        if answer is None:
            await self.released.wait()  # set only at teardown
            answer = 200
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return web.Response(status=status, headers=headers)


@pytest.fixture(name="endpoint")
async def _endpoint() -> AsyncIterator[Endpoint]:
    """The endpoint served by aiohttp.web on 127.0.0.1 and a free port."""
    endpoint = Endpoint()
    app = web.Application()
    app.router.add_post("/hooks/pbx", endpoint.handle)
    async with serving_app(app, handler_cancellation=True) as port:
        endpoint.url = f"http://127.0.0.1:{port}/hooks/pbx?token={TOKEN}"
        try:
            yield endpoint
        finally:
            endpoint.released.set()


def webhook_settings(url: str, **more: Any) -> WebhookSettings:
    values: dict[str, Any] = {"secret": SECRET, "attempts": 3, "backoff": 0.01, "timeout": 2.0}
    return WebhookSettings(url=url, **(values | more))


async def deliver(settings: WebhookSettings, payload: dict[str, Any], **options: Any) -> None:
    async with asyncio.timeout(BOUND), WebhookNotifier(settings, **options) as notifier:
        await notifier.send(payload)


def assert_signed(request: Request) -> None:
    headers = request.headers
    timestamp = headers["X-PBX-Tracker-Timestamp"]
    assert abs(int(timestamp) - time.time()) < BOUND
    signature = headers["X-PBX-Tracker-Signature"]
    assert verify_signature(SECRET, timestamp, request.body, signature)


class TestWebhookNotifier:
    async def test_a_signed_reminder_is_delivered(self, endpoint: Endpoint) -> None:
        """One POST of compact UTF-8 JSON with the documented headers and a valid signature."""
        payload = webhook_payload(REMINDER)
        await deliver(webhook_settings(endpoint.url), payload)
        [request] = endpoint.seen
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"] == "pbx-tracker"
        assert request.headers["X-PBX-Tracker-Event"] == "callback.reminder"
        assert request.headers["X-PBX-Tracker-Delivery"] == payload["delivery"]
        assert_signed(request)
        assert json.loads(request.body) == payload
        assert SOURCE.encode() in request.body and b'", "' not in request.body

    async def test_without_a_secret_there_is_no_signature(self, endpoint: Endpoint) -> None:
        """No secret configured: delivered unsigned."""
        await deliver(webhook_settings(endpoint.url, secret=None), webhook_payload(REMINDER))
        [request] = endpoint.seen
        assert "X-PBX-Tracker-Signature" not in request.headers

    async def test_failures_then_success(self, endpoint: Endpoint) -> None:
        """500 twice, then 200: three requests with one delivery id, and send succeeds."""
        endpoint.answers = [500, 500]
        await deliver(webhook_settings(endpoint.url, attempts=5), webhook_payload(REMINDER))
        assert len(endpoint.seen) == 3
        assert len({r.headers["X-PBX-Tracker-Delivery"] for r in endpoint.seen}) == 1
        for request in endpoint.seen:
            assert_signed(request)

    async def test_always_failing_sees_every_attempt(self, endpoint: Endpoint) -> None:
        """Always 500: exactly `attempts` requests, each logged, then NotifyError."""
        endpoint.default = 500
        with structlog.testing.capture_logs() as logs, pytest.raises(NotifyError) as caught:
            await deliver(webhook_settings(endpoint.url, attempts=4), webhook_payload(REMINDER))
        assert len(endpoint.seen) == 4
        port = endpoint.url.split(":")[2].split("/")[0]
        assert str(caught.value) == f"webhook 127.0.0.1:{port}: HTTP 500 Internal Server Error"
        failures = [e for e in logs if e["event"] == "callbacks.webhook_delivery_failed"]
        assert [(e["log_level"], e["attempt"]) for e in failures] == [
            ("warning", n) for n in (1, 2, 3, 4)
        ]
        assert all(e["reason"] == "HTTP 500 Internal Server Error" for e in failures)
        assert failures[-1]["retry_in"] is None
        assert_secret_free(caught.value, logs, SECRET, TOKEN, SOURCE, '"task_id"')

    async def test_a_client_error_is_not_retried(self, endpoint: Endpoint) -> None:
        """400: one request, NotifyError at once."""
        endpoint.default = 400
        with pytest.raises(NotifyError, match="HTTP 400"):
            await deliver(webhook_settings(endpoint.url), webhook_payload(REMINDER))
        assert len(endpoint.seen) == 1

    async def test_a_timing_out_endpoint(self, endpoint: Endpoint) -> None:
        """An endpoint that never answers: each try times out, NotifyError after the last."""
        endpoint.default = None
        settings = webhook_settings(endpoint.url, timeout=0.2, attempts=2)
        with pytest.raises(NotifyError) as caught:
            await deliver(settings, webhook_payload(REMINDER))
        assert caught.value.reason.endswith(": no answer within 0.2 s")
        assert len(endpoint.seen) == 2

    async def test_a_closed_port(self) -> None:
        """Nobody listening: every attempt refused, and the reason says so."""
        port = free_port()
        settings = webhook_settings(f"http://127.0.0.1:{port}/hooks?token={TOKEN}")
        with structlog.testing.capture_logs() as logs, pytest.raises(NotifyError) as caught:
            await deliver(settings, webhook_payload(REMINDER))
        assert str(caught.value) == f"webhook 127.0.0.1:{port}: connection refused"
        assert len([e for e in logs if e["event"] == "callbacks.webhook_delivery_failed"]) == 3
        assert_secret_free(caught.value, logs, SECRET, TOKEN)

    async def test_backoff_doubles_and_retry_after_is_honoured(self, endpoint: Endpoint) -> None:
        """Waits double from `backoff`; a longer sane Retry-After wins, an absurd one is ignored."""
        endpoint.answers = [503, 503, (429, {"Retry-After": "7"}), (503, {"Retry-After": "3600"})]
        waits: list[float] = []

        async def record(seconds: float) -> None:
            waits.append(seconds)

        settings = webhook_settings(endpoint.url, attempts=6, backoff=0.5)
        await deliver(settings, webhook_payload(REMINDER), sleep=record)
        assert waits == [0.5, 1.0, 7.0, 4.0]
        assert len(endpoint.seen) == 5

    async def test_a_given_session_is_left_open(self, endpoint: Endpoint) -> None:
        """The daemon's shared session is used, and closing the notifier leaves it open."""
        async with aiohttp.ClientSession() as session:
            await deliver(
                webhook_settings(endpoint.url), webhook_payload(REMINDER), session=session
            )
            assert not session.closed
        assert len(endpoint.seen) == 1


# -- email over TLS -------------------------------------------------------------------------


@pytest.fixture(name="certificate")
def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the TLS tests")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=BOUND,
    )  # fmt: skip
    return cert, key


@pytest.fixture(name="smtps")
def _smtps(certificate: tuple[Path, Path]) -> Iterator[LoopbackController]:
    """An SMTP server that speaks TLS from the first byte (port 465 style)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    controller = LoopbackController(ssl_context=context)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


class TestEmailOverTls:
    async def test_delivered_when_the_servers_ca_is_trusted(
        self, smtps: LoopbackController, certificate: tuple[Path, Path]
    ) -> None:
        """A reminder email is delivered over TLS when the mail server's certificate authority is
        given in ca_file."""
        settings = smtp_settings(smtps.port, security="tls", ca_file=str(certificate[0]))
        await EmailNotifier(settings).send(reminder_email())
        assert len(smtps.inbox.envelopes) == 1

    # Python 3.11's asyncio leaves the socket of a failed TLS handshake to the garbage
    # collector now and then (ResourceWarning: unclosed transport), outside our code.
    @pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
    async def test_an_untrusted_certificate_is_refused(self, smtps: LoopbackController) -> None:
        """A mail server whose TLS certificate is not trusted gets no email and the failure says
        "TLS certificate not trusted"."""
        settings = smtp_settings(smtps.port, security="tls")
        with pytest.raises(NotifyError) as caught:
            await EmailNotifier(settings).send(reminder_email())
        assert "TLS certificate not trusted" in caught.value.reason
        assert smtps.inbox.envelopes == []
        del caught
        gc.collect()  # any leaked socket is reported here, not in a later test
