"""Which dialplan applications CEL logs, and the application `ExecIf` / `Exec` run.

`DEFAULT_APPS` is the ``apps =`` list of the shipped cel.conf; an application runs
logged under the name Asterisk registers it with (``BackGround``, whatever the
dialplan wrote).
"""

from __future__ import annotations

# the apps = of the shipped config/asterisk/cel_pbx_tracker.conf
DEFAULT_APPS = frozenset((
    "agi", "answer", "appdial", "appqueue", "background", "busy", "congestion", "dial",
    "endwhile", "execif", "gosub", "goto", "gotoif", "hangup", "mixmonitor", "noop",
    "playback", "queue", "read", "return", "ringing", "set", "voicemail", "wait",
    "waitexten", "while", "followme", "progress",
))  # fmt: skip
# applications as Asterisk registers them: CEL shows these names, whatever the dialplan wrote
_REGISTERED = {
    name.lower(): name
    for name in (
        "AGI", "Answer", "BackGround", "Busy", "Congestion", "Dial", "EndWhile", "Exec",
        "ExecIf", "ExitWhile", "FollowMe", "Gosub", "GosubIf", "Goto", "GotoIf", "Hangup",
        "MixMonitor", "NoOp", "Playback", "Progress", "Queue", "Read", "Return", "Ringing",
        "Set", "VoiceMail", "Wait", "WaitExten", "While",
    )
}  # fmt: skip


def executed(app: str, data: str) -> tuple[str, str] | None:
    """The application ``ExecIf`` / ``Exec`` runs at the same step, with its arguments.

    ``ExecIf(expr?App(args)[:Other(args)])`` runs App when ``expr`` is a non-zero number
    or other non-empty text (pbx_checkcondition), else Other if given.
    """
    if app == "ExecIf":
        condition, sep, branches = data.partition("?")
        if not sep:
            return None
        when_true, _, when_false = _split_outside_parentheses(branches, ":")
        data = when_true if _true(condition) else when_false
    elif app != "Exec":
        return None
    name, _, args = data.strip().partition("(")
    if not name.strip():
        return None
    name = _REGISTERED.get(name.strip().lower(), name.strip())
    return name, args[:-1] if args.endswith(")") else args


def _true(condition: str) -> bool:
    text = condition.strip()
    try:
        return int(text) != 0
    except ValueError:
        return bool(text)


def _split_outside_parentheses(text: str, separator: str) -> tuple[str, str, str]:
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == separator and depth == 0:
            return text[:index], separator, text[index + 1 :]
    return text, "", ""
