"""structlog setup: JSON lines or console, one stream, secrets redacted, journald levels.

`configure_logging()` is called once by the composition root (and again by
tests, which is fine).  Importing this module changes nothing.

Every record - ours through structlog, and those of panoramisk, APScheduler,
SQLAlchemy, aiohttp, Alembic through the standard library - ends in one
`logging.StreamHandler` whose `structlog.stdlib.ProcessorFormatter` renders it
(the structlog docs' "render with structlog-based formatters within logging").
So the format, the redaction and the journald prefix are decided in one place,
and reconfiguring swaps that handler: loggers taken earlier follow along.

Secrets are redacted three times over, because a leak has many ways out:
`SecretFilter` rewrites the message of foreign records (panoramisk 1.4 logs a
failed `Login` action with its secret), `SecretRedactor` walks the event dict
(keys, values, nested containers, the already-rendered exception; the whole
value of a secret-bearing key such as ``secret`` or ``password``) and, after
rendering, replaces what is left in the output line (e.g. the ``repr()`` of an
object).  Tracebacks are rendered without local variables: locals hold values
the redactor cannot know about (customers' numbers, tokens).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "FOREIGN_LOGGERS",
    "REDACTED",
    "SecretFilter",
    "SecretRedactor",
    "configure_logging",
    "syslog_priority",
]

LogFormat = Literal["auto", "json", "console"]

REDACTED = "***"
FOREIGN_LOGGERS = ("panoramisk", "apscheduler", "sqlalchemy", "aiohttp", "alembic")

# syslog(3) priorities; journald reads a leading "<N>" (SyslogLevelPrefix=, on by default).
_PRIORITIES = {"critical": 2, "error": 3, "exception": 3, "warning": 4, "warn": 4}
_PRIORITIES |= {"notice": 5, "info": 6, "debug": 7, "notset": 7}
_MAX_DEPTH = 32


def syslog_priority(level: str) -> int:
    """The syslog priority of a structlog/stdlib level name (info when unknown)."""
    return _PRIORITIES.get(level.lower(), 6)


class SecretRedactor:
    """Replace every configured secret value with ``***``: a whole value, never a piece
    of other text.

    A value under a secret-bearing key (``secret``, ``password``, ``token``, ...) is
    replaced whole.  In text (messages, reprs, tracebacks) a secret is replaced where it
    stands as a value of its own: not inside a longer word, so the AMI secret ``x``
    leaves ``pbx_tracker.daemon`` alone (stars there would both mangle the line and
    tell the secret).  Besides each secret itself it looks for the forms a renderer may
    give it: ``repr()``-escaped, JSON-escaped (with and without ``ensure_ascii``), both.
    `pbx-tracker check-config` refuses secrets too short to be secrets.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        needles: set[str] = set()
        for secret in secrets:
            if secret:
                needles |= _rendered_forms(secret)
        ordered = sorted(needles, key=len, reverse=True)  # longest first wins
        alternatives = "|".join(map(_whole_value, ordered))
        self._pattern = re.compile(alternatives) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact_text(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text

    def redact(self, value: Any, depth: int = 0, key: object = None) -> Any:
        """A copy of *value* with secrets replaced in every str/bytes it contains (all
        of a str/bytes under a secret-bearing *key*)."""
        if isinstance(value, str | bytes | bytearray):
            if value and _is_secret_key(key):
                return REDACTED
            if isinstance(value, str):
                return self.redact_text(value)
            text = bytes(value).decode("utf-8", "replace")
            redacted = self.redact_text(text)
            return value if redacted == text else redacted
        if depth > _MAX_DEPTH:
            return value
        if isinstance(value, Mapping):
            return {
                self.redact(k, depth + 1): self.redact(v, depth + 1, key=k)
                for k, v in value.items()
            }
        if isinstance(value, list | set | frozenset) or _is_plain_tuple(value):
            return type(value)(self.redact(item, depth + 1) for item in value)
        return value  # other objects are rendered with repr(): the text pass covers them

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        redacted: EventDict = self.redact(event_dict)
        return redacted


# Keys whose str value is a secret whatever it is (a path to one is not).
_SECRET_KEY = re.compile(r"secret|passw|token|api_?key|authori[sz]ation|credential|cookie", re.I)
_NOT_SECRET_KEY = re.compile(r"(_file|_path|_set)$", re.I)
_WORD = "[0-9A-Za-z_]"


def _is_secret_key(key: object) -> bool:
    return (
        isinstance(key, str)
        and _SECRET_KEY.search(key) is not None
        and _NOT_SECRET_KEY.search(key) is None
    )


def _whole_value(needle: str) -> str:
    """A pattern for *needle* standing on its own: where it begins (ends) with a word
    character, the character before (after) it must not be one."""
    before = f"(?<!{_WORD})" if re.match(_WORD, needle[0]) else ""
    after = f"(?!{_WORD})" if re.match(_WORD, needle[-1]) else ""
    return f"{before}{re.escape(needle)}{after}"


def _rendered_forms(secret: str) -> set[str]:
    """The secret as is, repr()-escaped, and each of those JSON-escaped (objects' reprs)."""
    forms = {secret, repr(secret)[1:-1]}
    for form in list(forms):
        forms |= {json.dumps(form)[1:-1], json.dumps(form, ensure_ascii=False)[1:-1]}
    return forms


def _is_plain_tuple(value: object) -> bool:
    return isinstance(value, tuple) and not hasattr(value, "_fields")


class SecretFilter(logging.Filter):
    """Redact secrets from the message of standard-library records (panoramisk & co)."""

    def __init__(self, redactor: SecretRedactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactor or not isinstance(record.msg, str):
            return True  # structlog's own records carry an event dict, redacted later
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a bad %-format: let logging report it as usual
        redacted = self.redactor.redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_text:
            record.exc_text = self.redactor.redact_text(record.exc_text)
        return True


class _FinalRenderer:
    """Render, redact what is left in the text, add the journald priority prefix."""

    def __init__(self, render: Processor, redactor: SecretRedactor, journald: bool) -> None:
        self._render = render
        self._redactor = redactor
        self._journald = journald

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        level = str(event_dict.get("level", method_name))
        line = self._redactor.redact_text(str(self._render(logger, method_name, event_dict)))
        return f"<{syslog_priority(level)}>{line}" if self._journald else line


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our root handler; a marker type so reconfiguring replaces only it."""


def configure_logging(
    level: str = "info",
    fmt: LogFormat = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Send every log record, ours and the libraries', as one stream to *stream* (stdout).

    *fmt* ``auto`` means console output on a TTY and JSON lines otherwise.
    Values in *secrets* are replaced by ``***`` wherever they would appear.
    """
    numeric_level = _numeric_level(level)
    out = sys.stdout if stream is None else stream
    as_json = fmt == "json" or (fmt == "auto" and not _isatty(out))
    redactor = SecretRedactor(secrets)
    handler = _Handler(out)
    handler.setFormatter(_formatter(as_json, _isatty(out), redactor, _journald_stream(out)))
    handler.addFilter(SecretFilter(redactor))
    _install(handler, numeric_level)
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so `structlog.testing.capture_logs()` and a second
        # configure_logging() reach module-level loggers taken earlier.
        cache_logger_on_first_use=False,
    )


def _numeric_level(level: str) -> int:
    levels = logging.getLevelNamesMapping()
    name = level.strip().upper()
    if name not in levels or name == "NOTSET":
        choices = ", ".join(n.lower() for n in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
        raise ValueError(f"unknown log level {level!r} (expected one of: {choices})")
    return levels[name]


def _shared_processors() -> list[Processor]:
    """Run on our events before they enter the logging module."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.filter_by_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _formatter(
    as_json: bool, colors: bool, redactor: SecretRedactor, journald: bool
) -> structlog.stdlib.ProcessorFormatter:
    exceptions: Processor
    render: Processor
    if as_json:
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        exceptions = structlog.processors.ExceptionRenderer(transformer)
        render = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        # Plain text traceback *before* redaction (a rich one would be drawn
        # later, by the renderer, wrapped to the terminal's width).
        exceptions = structlog.processors.format_exc_info
        render = structlog.dev.ConsoleRenderer(colors=colors)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exceptions,
            redactor,
            _FinalRenderer(render, redactor, journald and as_json),
        ],
    )


def _install(handler: logging.Handler, level: int) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in FOREIGN_LOGGERS:
        foreign = logging.getLogger(name)
        foreign.propagate = True  # undo a logging.config.fileConfig() (alembic.ini)
        foreign.disabled = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def _journald_stream(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """True when *stream* is journald's stdout/stderr socket (``$JOURNAL_STREAM``).

    systemd sets ``JOURNAL_STREAM=<device>:<inode>`` of that socket; children
    inherit the variable with other stdouts, so it is compared with the stream
    when the stream has a file descriptor.  Without one (tests) the variable
    alone decides.
    """
    expected = environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return True
    return expected == f"{status.st_dev}:{status.st_ino}"
