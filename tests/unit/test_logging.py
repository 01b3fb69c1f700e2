"""configure_logging(): one stream, JSON or console, journald priorities, secrets never shown."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from pbx_tracker.logging import (
    FOREIGN_LOGGERS,
    REDACTED,
    SecretFilter,
    SecretRedactor,
    configure_logging,
    syslog_priority,
)

SECRET = "s3cret-AMI"


class TTY(io.StringIO):
    """A text stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts outside journald and leaves logging as it found it."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture(name="sio")
def _sio() -> io.StringIO:
    return io.StringIO()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(stream)]


def raise_and_log(log: Any, message: str) -> None:
    try:
        raise RuntimeError(message)
    except RuntimeError:
        log.exception("it failed")


class TestFormat:
    def test_json_lines_when_not_a_tty(self, sio: io.StringIO) -> None:
        """`auto` on a file or pipe gives one JSON object per line with the standard keys."""
        configure_logging(stream=sio)
        structlog.get_logger("pbx_tracker.test").info("call_recorded", linkedid="1.0")

        [record] = records(sio)
        assert record["event"] == "call_recorded"
        assert record["level"] == "info"
        assert record["logger"] == "pbx_tracker.test"
        assert record["linkedid"] == "1.0"
        stamp = datetime.fromisoformat(record["timestamp"])
        assert UTC.utcoffset(None) == stamp.utcoffset()

    def test_console_on_a_tty(self) -> None:
        """`auto` on a terminal renders for humans, not JSON."""
        tty = TTY()
        configure_logging(stream=tty)
        structlog.get_logger("pbx_tracker.test").warning("ami_disconnected", host="127.0.0.1")

        [line] = lines(tty)
        assert not line.startswith("{")
        assert "ami_disconnected" in line
        assert "127.0.0.1" in line

    def test_format_can_be_forced(self, sio: io.StringIO) -> None:
        """`json` wins over a terminal and `console` over a pipe."""
        tty = TTY()
        configure_logging(fmt="json", stream=tty)
        structlog.get_logger().info("forced")
        configure_logging(fmt="console", stream=sio)
        structlog.get_logger().info("forced")

        assert json.loads(tty.getvalue())["event"] == "forced"
        assert "forced" in sio.getvalue()
        assert not sio.getvalue().startswith("{")

    def test_exception_as_dict_without_locals(self, sio: io.StringIO) -> None:
        """A logged exception is a structured traceback; frames carry no local variables."""
        configure_logging(stream=sio)
        raise_and_log(structlog.get_logger(), "boom")

        [record] = records(sio)
        [exception] = record["exception"]
        assert exception["exc_type"] == "RuntimeError"
        assert exception["exc_value"] == "boom"
        assert all("locals" not in frame for frame in exception["frames"])

    def test_level_filters_ours_and_foreign(self, sio: io.StringIO) -> None:
        """Below the configured level nothing is written, from us or from a library."""
        configure_logging("warning", stream=sio)
        structlog.get_logger().info("hidden")
        logging.getLogger("aiohttp.access").info("hidden too")
        structlog.get_logger().warning("shown")

        assert [r["event"] for r in records(sio)] == ["shown"]

    def test_unknown_level_is_refused(self, sio: io.StringIO) -> None:
        """A misspelt level names itself instead of silently logging everything."""
        with pytest.raises(ValueError, match="'verbose'"):
            configure_logging("verbose", stream=sio)

    def test_stdout_by_default(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a stream the lines go to standard output (the journal under systemd)."""
        configure_logging()
        structlog.get_logger().info("to_stdout")

        assert json.loads(capsys.readouterr().out)["event"] == "to_stdout"


class TestForeignLoggers:
    @pytest.mark.parametrize("name", FOREIGN_LOGGERS)
    def test_routed_into_the_same_stream(self, sio: io.StringIO, name: str) -> None:
        """Library records come out as the same JSON lines, with their logger name."""
        configure_logging(stream=sio)
        logging.getLogger(f"{name}.child").warning("library says %s", "hello")

        [record] = records(sio)
        assert {
            "event": record["event"],
            "level": record["level"],
        } == {"event": "library says hello", "level": "warning"}
        assert f"{name}.child" == record["logger"]
        assert "timestamp" in record

    def test_interleaved_in_order(self, sio: io.StringIO) -> None:
        """Ours and theirs share one stream, in the order they were logged."""
        configure_logging(stream=sio)
        structlog.get_logger().info("first")
        logging.getLogger("panoramisk").info("second")
        structlog.get_logger().info("third")

        assert [r["event"] for r in records(sio)] == ["first", "second", "third"]

    def test_foreign_exception_is_structured(self, sio: io.StringIO) -> None:
        """A library's `logger.exception()` gets the same dict traceback."""
        configure_logging(stream=sio)
        raise_and_log(logging.getLogger("apscheduler.executors"), "job broke")

        [record] = records(sio)
        assert record["level"] == "error"
        assert record["exception"][0]["exc_value"] == "job broke"

    def test_disabled_logger_is_enabled_again(self, sio: io.StringIO) -> None:
        """A `fileConfig()` that disabled e.g. alembic's logger does not silence it."""
        logging.getLogger("alembic").disabled = True
        configure_logging(stream=sio)
        logging.getLogger("alembic").warning("migrating")

        assert [r["event"] for r in records(sio)] == ["migrating"]


class TestJournald:
    @pytest.mark.parametrize(
        ("method", "priority"),
        [("debug", 7), ("info", 6), ("warning", 4), ("error", 3), ("critical", 2)],
    )
    def test_priority_prefix(
        self, sio: io.StringIO, monkeypatch: pytest.MonkeyPatch, method: str, priority: int
    ) -> None:
        """Under journald each JSON line starts with its syslog priority `<N>`."""
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
        configure_logging("debug", stream=sio)
        getattr(structlog.get_logger(), method)("event")

        [line] = lines(sio)
        assert line.startswith(f"<{priority}>{{")
        assert method == json.loads(line[3:])["level"]

    def test_foreign_records_get_a_prefix_too(
        self, sio: io.StringIO, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """journald also sees the level of library records."""
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
        configure_logging(stream=sio)
        logging.getLogger("sqlalchemy.pool").error("connection lost")

        assert lines(sio)[0].startswith("<3>{")

    def test_no_prefix_outside_journald(self, sio: io.StringIO) -> None:
        """Without JOURNAL_STREAM the line is plain JSON."""
        configure_logging(stream=sio)
        structlog.get_logger().error("event")

        assert lines(sio)[0].startswith("{")

    def test_inherited_variable_for_another_stream(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """JOURNAL_STREAM naming a different file (inherited by a child) adds no prefix."""
        monkeypatch.setenv("JOURNAL_STREAM", "1:1")
        with (tmp_path / "out.log").open("w") as stream:
            configure_logging(stream=stream)
            structlog.get_logger().info("event")

        assert (tmp_path / "out.log").read_text().startswith("{")

    def test_matching_stream(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """JOURNAL_STREAM with our stream's device:inode adds the prefix."""
        with (tmp_path / "out.log").open("w") as stream:
            status = os.fstat(stream.fileno())
            monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
            configure_logging(stream=stream)
            structlog.get_logger().info("event")

        assert (tmp_path / "out.log").read_text().startswith("<6>{")

    def test_console_has_no_prefix(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The prefix is for JSON lines only."""
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
        tty = TTY()
        configure_logging(stream=tty)
        structlog.get_logger().info("event")

        assert not tty.getvalue().startswith("<")

    @pytest.mark.parametrize(
        ("level", "priority"),
        [("exception", 3), ("WARN", 4), ("notice", 5), ("something", 6)],
    )
    def test_priority_of_other_names(self, level: str, priority: int) -> None:
        """Aliases map like their level; an unknown name counts as info."""
        assert priority == syslog_priority(level)


class TestRedaction:
    def test_values_keys_and_nesting(self, sio: io.StringIO) -> None:
        """A secret is replaced wherever it sits in the event."""
        configure_logging(stream=sio, secrets=[SECRET])
        structlog.get_logger().info(
            f"login with {SECRET}",
            secret=SECRET,
            nested={SECRET: [f"a {SECRET} b", (SECRET,), {"deep": SECRET}]},
        )

        output = sio.getvalue()
        assert SECRET not in output
        [record] = records(sio)
        assert f"login with {REDACTED}" == record["event"]
        assert record["secret"] == REDACTED
        assert {REDACTED: [f"a {REDACTED} b", [REDACTED], {"deep": REDACTED}]} == record["nested"]

    def test_positional_arguments(self, sio: io.StringIO) -> None:
        """%-style arguments are redacted after formatting."""
        configure_logging(stream=sio, secrets=[SECRET])
        structlog.get_logger().info("secret is %s", SECRET)

        assert records(sio)[0]["event"] == "secret is ***"

    def test_exception_text_json(self, sio: io.StringIO) -> None:
        """The message of a logged exception is redacted in the JSON traceback."""
        configure_logging(stream=sio, secrets=[SECRET])
        raise_and_log(structlog.get_logger(), f"auth failed for {SECRET}")

        assert SECRET not in sio.getvalue()
        assert f"auth failed for {REDACTED}" == records(sio)[0]["exception"][0]["exc_value"]

    def test_exception_text_console(self) -> None:
        """The message of a logged exception is redacted in the console traceback."""
        tty = TTY()
        configure_logging(stream=tty, secrets=[SECRET])
        raise_and_log(structlog.get_logger(), f"auth failed for {SECRET}")

        assert SECRET not in tty.getvalue()
        assert f"RuntimeError: auth failed for {REDACTED}" in tty.getvalue()

    def test_panoramisk_fail_to_send(self, sio: io.StringIO) -> None:
        """panoramisk 1.4's `'Fail to send %r' % data` of a Login never shows the secret."""
        configure_logging(stream=sio, secrets=[SECRET])
        data = f"Action: Login\r\nUsername: pbx-tracker\r\nSecret: {SECRET}\r\n\r\n".encode()
        logging.getLogger("panoramisk.manager").warning("Fail to send %r", data)

        assert SECRET not in sio.getvalue()
        assert "Secret: ***" in records(sio)[0]["event"]

    def test_foreign_exception_text(self, sio: io.StringIO) -> None:
        """A library's exception text is redacted too."""
        configure_logging(stream=sio, secrets=[SECRET])
        raise_and_log(logging.getLogger("aiohttp.client"), f"401 for token {SECRET}")

        assert SECRET not in sio.getvalue()

    def test_escaped_forms(self, sio: io.StringIO) -> None:
        """Secrets with quotes, backslashes or non-ASCII are caught after JSON/repr escaping."""
        tricky = 'pa"ss\\wörd'
        configure_logging(stream=sio, secrets=[tricky])

        class Leaky:
            def __repr__(self) -> str:
                return f"Leaky({tricky!r})"

        structlog.get_logger().info("event", value=tricky, obj=Leaky(), raw=tricky.encode())

        output = sio.getvalue()
        [record] = records(sio)
        assert record["value"] == REDACTED
        assert record["raw"] == REDACTED
        assert record["obj"] == "Leaky('***')"
        for form in (tricky, json.dumps(tricky)[1:-1], repr(tricky)[1:-1]):
            assert form not in output

    def test_longer_secret_first(self) -> None:
        """When one secret contains another, the longer one is replaced whole."""
        redactor = SecretRedactor(["abc", "abcdef"])

        assert redactor.redact_text("x abcdef y") == "x *** y"

    def test_a_short_secret_is_masked_as_a_value_never_inside_words(self, sio: io.StringIO) -> None:
        """With the AMI secret ``x`` the log still reads ``pbx_tracker.daemon`` (stars
        inside words would mangle the line and tell the secret), while the secret
        itself, standing as a value, is masked."""
        configure_logging(stream=sio, secrets=["x"])
        logging.getLogger("pbx_tracker.daemon").warning("Secret: x; box of 2 x 3")
        data = b"Action: Login\r\nSecret: x\r\n\r\n"
        logging.getLogger("panoramisk.manager").warning("Fail to send %r", data)

        first, second = records(sio)
        assert first["logger"] == "pbx_tracker.daemon"
        assert first["event"] == "Secret: ***; box of 2 *** 3"
        assert "Secret: ***" in second["event"] and "Action: Login" in second["event"]

    def test_secret_bearing_fields_are_masked_whole(self, sio: io.StringIO) -> None:
        """A value logged under a secret's name is masked even when the config does not
        know it (a CRM token, a password typed wrong); a path to a secret is not."""
        configure_logging(stream=sio)
        structlog.get_logger().info(
            "crm.login",
            password="typed-Wrong-1",
            api_token="tok-123",
            headers={"Authorization": "Bearer abc.def"},
            secret_file="/etc/pbx-tracker/ami_secret",
            tokens=3,
        )

        [record] = records(sio)
        assert record["password"] == record["api_token"] == REDACTED
        assert record["headers"] == {"Authorization": REDACTED}
        assert record["secret_file"] == "/etc/pbx-tracker/ami_secret"
        assert record["tokens"] == 3

    def test_a_secret_with_punctuation_at_its_edges_is_masked_anywhere(self) -> None:
        """A secret that begins and ends with punctuation has no word to be part of."""
        redactor = SecretRedactor(["-k3y-"])

        assert redactor.redact_text("url=/hook-k3y-x") == "url=/hook***x"

    def test_empty_secrets_are_ignored(self, sio: io.StringIO) -> None:
        """An unset secret ('') does not turn every line into stars."""
        configure_logging(stream=sio, secrets=["", SECRET])
        structlog.get_logger().info("plain text")

        assert records(sio)[0]["event"] == "plain text"

    def test_filter_rewrites_the_record(self) -> None:
        """`SecretFilter` redacts a stdlib record's formatted message in place."""
        record = logging.LogRecord(
            "panoramisk", logging.INFO, __file__, 1, "got %s", (SECRET,), None
        )

        assert SecretFilter(SecretRedactor([SECRET])).filter(record)
        assert record.getMessage() == "got ***"

    def test_filter_leaves_bad_formats_alone(self) -> None:
        """A record whose %-format is broken passes untouched (logging reports it)."""
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("nan",), None)

        assert SecretFilter(SecretRedactor([SECRET])).filter(record)
        assert record.args == ("nan",)


class TestReconfiguration:
    def test_second_call_replaces_the_first(self, sio: io.StringIO) -> None:
        """Configuring again swaps the handler: one output, the new secrets."""
        earlier = io.StringIO()
        configure_logging(stream=earlier)
        configure_logging(stream=sio, secrets=[SECRET])
        structlog.get_logger().info(SECRET)

        assert earlier.getvalue() == ""
        assert [r["event"] for r in records(sio)] == [REDACTED]

    def test_logger_taken_before_follows(self, sio: io.StringIO) -> None:
        """A module-level logger obtained before configuration uses the latest setup."""
        log = structlog.get_logger("pbx_tracker.early")
        configure_logging(stream=io.StringIO())
        log.info("warm up")
        configure_logging(stream=sio)
        log.info("after")

        assert [r["event"] for r in records(sio)] == ["after"]

    def test_capture_logs_still_works(self, sio: io.StringIO) -> None:
        """Tests elsewhere can use `structlog.testing.capture_logs()` after configuration."""
        log = structlog.get_logger("pbx_tracker.other")
        configure_logging(stream=sio)
        log.info("warm up")
        with capture_logs() as captured:
            log.info("captured", linkedid="1.0")

        assert captured == [{"event": "captured", "linkedid": "1.0", "log_level": "info"}]

    def test_no_side_effects_at_import(self) -> None:
        """Importing the module configures neither structlog nor the logging module."""
        code = (
            "import logging, structlog\n"
            "before = list(logging.getLogger().handlers)\n"
            "import pbx_tracker.logging\n"
            "assert not structlog.is_configured()\n"
            "assert logging.getLogger().handlers == before\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
