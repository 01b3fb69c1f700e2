"""The FastAGI wire format, without sockets: request headers, replies, quoting.

Asterisk opens a TCP connection per `AGI(agi://host:port/script?query,arg1,...)`,
sends its environment as `agi_key: value` lines (LF-terminated) ended by an
empty line, then answers each command line the server sends with a reply:
`200 result=1 (value)`, `200 result=-1`, `510 Invalid or unknown command`,
`511 Command Not Permitted on a dead channel or intercept routine`, the
multi-line `520-...` / `520 End of proper usage.`, and for GOSUB a
`100 result=0 Trying...` before the final reply.  When the channel hangs up it
inserts an unsolicited `HANGUP` line into the dialogue, at any moment.
`ReplyAssembler` turns that stream of lines back into one reply per command.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

__all__ = [
    "HANGUP_LINE",
    "AgiProtocolError",
    "AgiReply",
    "AgiRequest",
    "ReplyAssembler",
    "parse_reply",
    "quote",
]

HANGUP_LINE = "HANGUP"
_STATUS = re.compile(r"(?P<code>\d{3})(?P<sep>[ -]|$)")
_RESULT = re.compile(r"result=(?P<result>\S*)")
_KEY = re.compile(r"agi_\w+")
_SHOWN = 80


class AgiProtocolError(ValueError):
    """Text that is not what a FastAGI peer may send (bad header line, bad reply)."""


def _shown(text: str) -> str:
    """`text` for an error message: repr, cut to a readable length."""
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


# -- replies ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgiReply:
    """Asterisk's final reply to one command.

    `result` is the value after `result=` ('' when there is none, as in 510),
    `data` the text in parentheses after it (GET VARIABLE's value; it may hold
    spaces and parentheses), `text` the reply as received (lines joined by LF).
    """

    code: int
    result: str
    data: str | None
    text: str

    @property
    def ok(self) -> bool:
        """True for `200` with a result other than `-1` (failure or hang-up)."""
        return self.code == 200 and self.result != "-1"


def parse_reply(lines: Sequence[str]) -> AgiReply:
    """The reply made of `lines`: one line, or a whole `520-` ... `520 ...` block."""
    if not lines:
        raise AgiProtocolError("empty AGI reply")
    first = lines[0]
    status = _STATUS.match(first)
    if status is None:
        raise AgiProtocolError(f"AGI reply without a status code: {_shown(first)}")
    text = "\n".join(lines)
    if status["sep"] == "-":
        return AgiReply(int(status["code"]), "", None, text)
    rest = first[status.end() :]
    result = _RESULT.match(rest)
    if result is None:
        return AgiReply(int(status["code"]), "", None, text)
    return AgiReply(int(status["code"]), result["result"], _data(rest[result.end() :]), text)


def _data(rest: str) -> str | None:
    """`(value)` right after the result, up to the last `)` of the line; None if absent."""
    rest = rest.lstrip(" ")
    if not rest.startswith("("):
        return None
    end = rest.rfind(")")
    return rest[1:end] if end > 0 else None


class ReplyAssembler:
    """Collects the lines Asterisk sends after a command until its final reply.

    Feed one line at a time (without the line end): `feed` returns the reply
    once complete, None while more is needed.  An unsolicited `HANGUP` sets
    `hung_up` and is skipped, as is `100 result=0 Trying...`, so replies stay
    paired with their commands.  A line that cannot start a reply raises
    `AgiProtocolError`.
    """

    def __init__(self) -> None:
        self.hung_up = False
        self._block: list[str] = []
        self._block_end = ""

    def feed(self, line: str) -> AgiReply | None:
        if self._block:
            self._block.append(line)
            if line.startswith(self._block_end):
                return parse_reply(self._block)
            return None
        if line.strip() == HANGUP_LINE:
            self.hung_up = True
            return None
        if not line.strip():
            return None
        status = _STATUS.match(line)
        if status is None:
            raise AgiProtocolError(f"unexpected line instead of an AGI reply: {_shown(line)}")
        if status["sep"] == "-":
            self._block = [line]
            self._block_end = f"{status['code']} "
            return None
        if status["code"] == "100":
            return None
        return parse_reply([line])


# -- the request ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgiRequest:
    """What Asterisk asked for: its `agi_*` environment, the route name and arguments.

    `script` is `agi_network_script` up to any `?`, without leading slashes
    (`AGI(agi://host/route?x=1,...)` -> "route"), `query` the `?x=1` part,
    `args` the `AGI()` arguments (`agi_arg_1` ... `agi_arg_N`) in order.
    Values are kept as Asterisk sent them ("unknown" for a missing caller name).
    """

    env: dict[str, str]
    script: str = ""
    query: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls, env: Iterable[tuple[str, str]]) -> AgiRequest:
        """A request from ordered `(key, value)` pairs (a later key wins)."""
        values = dict(env)
        path, _, query = values.get("agi_network_script", "").partition("?")
        numbered = []
        for key, value in values.items():
            number = key[8:] if key.startswith("agi_arg_") else ""
            if number.isdigit() and number.isascii():
                numbered.append((int(number), value))
        return cls(
            env=values,
            script=path.lstrip("/"),
            query=dict(parse_qsl(query, keep_blank_values=True)) if query else {},
            args=[value for _, value in sorted(numbered)],
        )

    @classmethod
    def parse(cls, lines: Sequence[str]) -> AgiRequest:
        """A request from the header lines (line ends removed, blank line excluded)."""
        if not lines:
            raise AgiProtocolError("empty AGI request: no agi_* lines before the blank line")
        return cls.from_env(_header_pair(number, line) for number, line in enumerate(lines, 1))

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def caller(self) -> str:
        """The caller's number (`agi_callerid`)."""
        return self.env.get("agi_callerid", "")

    @property
    def caller_name(self) -> str:
        """The caller's name (`agi_calleridname`; Asterisk sends "unknown" when there is none)."""
        return self.env.get("agi_calleridname", "")

    @property
    def extension(self) -> str:
        return self.env.get("agi_extension", "")

    @property
    def context(self) -> str:
        return self.env.get("agi_context", "")


def _header_pair(number: int, line: str) -> tuple[str, str]:
    key, separator, value = line.partition(": ")
    if not separator:
        raise AgiProtocolError(f"request line {number} is not 'agi_key: value': {_shown(line)}")
    if not _KEY.fullmatch(key):
        raise AgiProtocolError(f"request line {number} has no agi_* key: {_shown(line)}")
    return key, value


# -- commands -------------------------------------------------------------------


def quote(value: str) -> str:
    """`value` as one quoted AGI argument: `"..."`, `\\` and `"` escaped, CR/LF removed.

    For `SET VARIABLE NAME "value"` and `VERBOSE "message" 1`; Asterisk's
    argument parser undoes exactly this escaping.
    """
    flat = value.replace("\r", "").replace("\n", "")
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'
