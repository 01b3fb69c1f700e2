"""Captured FastAGI conversations: tests/data/asterisk-traces/*.agi.txt read into sessions
(Asterisk's environment, each command and its reply, an unsolicited hang-up)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pbx_tracker.sim.agi_dialogue import REPLY_OK, Env, agi_args, is_command


@dataclass(slots=True)
class AgiTraceSession:
    """One captured FastAGI conversation: Asterisk's environment and each command's reply.

    `hangup_after` is the number of exchanges before an unsolicited `HANGUP`
    line, if the capture has one.
    """

    title: str = ""
    env: Env = field(default_factory=list)
    exchanges: list[tuple[str, str]] = field(default_factory=list)
    hangup_after: int | None = None

    @property
    def commands(self) -> list[str]:
        return [command for command, _ in self.exchanges]

    @property
    def replies(self) -> list[str]:
        return [reply for _, reply in self.exchanges]

    def variables_read(self) -> dict[str, str]:
        """The channel variables the router read (`GET VARIABLE` answered with a value)."""
        found: dict[str, str] = {}
        for command, reply in self.exchanges:
            words = agi_args(command)
            if is_command(words, "GET", "VARIABLE") and reply.startswith(REPLY_OK + " ("):
                found[words[2]] = reply[len(REPLY_OK) + 2 : reply.rindex(")")]
        return found

    def variables_set(self) -> dict[str, str]:
        """The channel variables the router set, in order (last value wins)."""
        found: dict[str, str] = {}
        for command, _ in self.exchanges:
            words = agi_args(command)
            if is_command(words, "SET", "VARIABLE") and len(words) == 4:
                found[words[2]] = words[3]
        return found


def read_agi_trace(path: str | Path) -> list[AgiTraceSession]:
    """The sessions of a `*.agi.txt` capture (`<< ` from Asterisk, `>> ` to it, `#` notes)."""
    reader = _TraceReader()
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        try:
            reader.feed(line)
        except ValueError as error:
            raise ValueError(f"{path}:{number}: {error}") from None
    return reader.sessions


class _TraceReader:
    """The state of reading one capture file, line by line."""

    def __init__(self) -> None:
        self.sessions: list[AgiTraceSession] = []
        self.in_header = False
        self.command: str | None = None
        self.reply: list[str] = []

    def feed(self, line: str) -> None:
        if line.startswith("# session"):
            self._start(line[2:])
        elif line.startswith("#") or not line.strip():
            return
        elif line.startswith(">> "):
            self._need_session()
            self.command = line[3:]
        elif line.startswith("<< "):
            self._from_asterisk(line[3:])
        else:
            raise ValueError(f"neither '<< ', '>> ' nor '#': {line!r}")

    def _start(self, title: str) -> None:
        self.sessions.append(AgiTraceSession(title=title))
        self.in_header = True
        self.command, self.reply = None, []

    def _need_session(self) -> AgiTraceSession:
        if not self.sessions:
            self._start("")
        return self.sessions[-1]

    def _from_asterisk(self, text: str) -> None:
        session = self._need_session()
        if self.in_header:
            if not text:
                self.in_header = False
                return
            key, separator, value = text.partition(": ")
            if not separator:
                raise ValueError(f"environment line without ': ': {text!r}")
            session.env.append((key, value))
        elif text == "HANGUP":
            session.hangup_after = len(session.exchanges)
        elif self.command is None:
            raise ValueError(f"a reply without a command: {text!r}")
        else:
            self.reply.append(text)
            if _reply_complete(self.reply):
                session.exchanges.append((self.command, "\n".join(self.reply)))
                self.command, self.reply = None, []


def _reply_complete(lines: Sequence[str]) -> bool:
    """True once `lines` end a reply: after `100 Trying`, and in a `520-` block, they go on."""
    first, last = lines[0], lines[-1]
    if first[3:4] == "-":
        return len(lines) > 1 and last.startswith(f"{first[:3]} ")
    return not last.startswith("100 ")
