"""The FastAGI dialogue from Asterisk's side: the environment block it sends, command
lines split as Asterisk splits them, and its reply to each on a live channel."""

from __future__ import annotations

from collections.abc import Sequence

Env = list[tuple[str, str]]  # the agi_* environment block, in order

REPLY_OK = "200 result=1"
REPLY_NOTHING = "200 result=0"
REPLY_UNKNOWN = "510 Invalid or unknown command"
REPLY_DEAD = "511 Command Not Permitted on a dead channel or intercept routine"
REPLY_TRYING = "100 result=0 Trying..."
_KNOWN = (
    "ANSWER",
    "ASYNCAGI BREAK",
    "CHANNEL STATUS",
    "CONTROL STREAM FILE",
    "DATABASE",
    "EXEC",
    "GET DATA",
    "GET FULL VARIABLE",
    "GET OPTION",
    "HANGUP",
    "NOOP",
    "RECEIVE CHAR",
    "RECORD FILE",
    "SAY",
    "SEND IMAGE",
    "SEND TEXT",
    "SET AUTOHANGUP",
    "SET CALLERID",
    "SET CONTEXT",
    "SET EXTENSION",
    "SET MUSIC",
    "SET PRIORITY",
    "STREAM FILE",
    "TDD MODE",
    "WAIT FOR DIGIT",
)


def answer(command: str, variables: dict[str, str]) -> str:
    """Asterisk's reply to `command` on a live channel holding `variables`."""
    words = agi_args(command)
    if is_command(words, "GET", "VARIABLE"):
        if len(words) != 3:
            return _usage("GET VARIABLE <variablename>")
        value = variables.get(words[2])
        return REPLY_NOTHING if value is None else f"{REPLY_OK} ({value})"
    if is_command(words, "SET", "VARIABLE"):
        if len(words) != 4:
            return _usage("SET VARIABLE <variablename> <value>")
        variables[words[2]] = words[3]
        return REPLY_OK
    if is_command(words, "VERBOSE"):
        return REPLY_OK
    if is_command(words, "GOSUB"):
        return f"{REPLY_TRYING}\n{REPLY_NOTHING}"
    spoken = " ".join(words).upper()
    if any(spoken == known or spoken.startswith(known + " ") for known in _KNOWN):
        return REPLY_NOTHING
    return REPLY_UNKNOWN


def _usage(usage: str) -> str:
    return (
        "520-Invalid command syntax.  Proper usage follows:\n"
        f" Usage: {usage}\n"
        "520 End of proper usage."
    )


def is_command(words: Sequence[str], *command: str) -> bool:
    """`words` (of `agi_args`) are `command`, in any case, with or without arguments."""
    return [word.upper() for word in words[: len(command)]] == list(command)


def agi_args(line: str) -> list[str]:
    """A command line split as Asterisk does: spaces separate, `"` groups, `\\` escapes."""
    words: list[str] = []
    current: list[str] = []
    quoted = escaped = started = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = started = True
        elif char == '"':
            quoted = not quoted
            started = True
        elif char in " \t" and not quoted:
            if started:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        words.append("".join(current))
    return words
