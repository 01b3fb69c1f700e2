"""The FastAGI wire format: replies as Asterisk sends them, request headers, quoting."""

from __future__ import annotations

import pytest

from pbx_tracker.agi.protocol import (
    AgiProtocolError,
    AgiReply,
    AgiRequest,
    ReplyAssembler,
    parse_reply,
    quote,
)
from pbx_tracker.sim.agi_client import env_for_call

MARIA = "\u041c\u0430\u0440\u0438\u044f \u0418\u0432\u0430\u043d\u043e\u0432\u0430"
USAGE_520 = [
    "520-Invalid command syntax.  Proper usage follows:",
    " Usage: GET VARIABLE <variablename>",
    "   Returns 0 if <variablename> is not set.",
    "520 End of proper usage.",
]


# -- replies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code", "result", "data", "ok"),
    [
        ("200 result=1 (yandex-direct)", 200, "1", "yandex-direct", True),
        ("200 result=1 (Ivan (sales) Petrov)", 200, "1", "Ivan (sales) Petrov", True),
        ("200 result=1 ()", 200, "1", "", True),
        ("200 result=0", 200, "0", None, True),
        ("200 result=-1", 200, "-1", None, False),
        ("200 result=0 endpos=12345", 200, "0", None, True),
        ("200 result=49 (timeout)", 200, "49", "timeout", True),
        ("510 Invalid or unknown command", 510, "", None, False),
        ("511 Command Not Permitted on a dead channel or intercept routine", 511, "", None, False),
    ],
)
def test_one_line_replies(line: str, code: int, result: str, data: str | None, ok: bool) -> None:
    """Each one-line reply Asterisk sends to an AGI command gives its code, result and the value in
    brackets (even one with brackets inside), and only a 200 with a result other than -1 counts as
    success."""
    reply = parse_reply([line])
    assert reply == AgiReply(code, result, data, line)
    assert reply.ok is ok


def test_multi_line_520_reply_keeps_the_usage_text() -> None:
    """A multi-line 520 usage reply is one failed reply whose text keeps Asterisk's whole usage
    message for the log."""
    reply = parse_reply(USAGE_520)
    assert (reply.code, reply.result, reply.data, reply.ok) == (520, "", None, False)
    assert reply.text == "\n".join(USAGE_520)


@pytest.mark.parametrize("lines", [[], [""], ["HANGUP"], ["result=1"], ["20 result=1"]])
def test_text_that_is_no_reply_is_rejected(lines: list[str]) -> None:
    """Text that is no AGI reply (empty, HANGUP alone, no status code) is refused with a protocol
    error instead of being taken as an answer."""
    with pytest.raises(AgiProtocolError):
        parse_reply(lines)


def feed_all(assembler: ReplyAssembler, lines: list[str]) -> list[AgiReply | None]:
    return [assembler.feed(line) for line in lines]


def test_assembler_skips_trying_until_the_final_reply() -> None:
    """A '100 Trying' line from Asterisk is not taken as the answer; the command's reply is the
    final 200 line."""
    assembler = ReplyAssembler()
    first, final = feed_all(assembler, ["100 result=0 Trying...", "200 result=0"])
    assert first is None
    assert final == parse_reply(["200 result=0"])


def test_assembler_collects_a_520_block() -> None:
    """The lines of a 520 usage block are gathered into one reply delivered only at the block's last
    line."""
    *pending, reply = feed_all(ReplyAssembler(), USAGE_520)
    assert pending == [None, None, None]
    assert reply == parse_reply(USAGE_520)


@pytest.mark.parametrize(
    "lines",
    [
        ["HANGUP", "200 result=1 (pool)"],
        ["100 result=0 Trying...", "HANGUP", "200 result=1 (pool)"],
        ["", "HANGUP", "", "200 result=1 (pool)"],
    ],
)
def test_assembler_skips_hangup_and_keeps_the_reply_of_this_command(lines: list[str]) -> None:
    """The unsolicited HANGUP is no reply: the value that follows belongs to this command."""
    assembler = ReplyAssembler()
    *pending, reply = feed_all(assembler, lines)
    assert pending == [None] * len(pending)
    assert reply is not None and reply.data == "pool"
    assert assembler.hung_up


def test_assembler_rejects_a_line_that_starts_no_reply() -> None:
    """A request header line arriving where a reply is expected is refused with an error that quotes
    the line."""
    with pytest.raises(AgiProtocolError, match="agi_network: yes"):
        ReplyAssembler().feed("agi_network: yes")


# -- requests -----------------------------------------------------------------


def header(env: list[tuple[str, str]]) -> list[str]:
    return [f"{key}: {value}" for key, value in env]


def test_request_from_a_captured_style_header() -> None:
    """A FastAGI request shaped like the captured PBX's gives the script, the arguments (dialled
    number, caller), the call's unique id, channel, caller name in Cyrillic, extension and context,
    with every header kept in order."""
    env = env_for_call(
        did="74951110001",
        caller="79161234506",
        uniqueid="1795348362.13",
        channel="IAX2/carrier-9034",
        caller_name=MARIA,
    )
    request = AgiRequest.parse(header(env))
    assert request.script == "route"
    assert request.query == {}
    assert request.args == ["74951110001", "79161234506"]
    assert request.uniqueid == "1795348362.13"
    assert request.channel == "IAX2/carrier-9034"
    assert (request.caller, request.caller_name) == ("79161234506", MARIA)
    assert (request.extension, request.context) == ("74951110001", "tracked-inbound")
    assert request.env["agi_accountcode"] == ""
    assert list(request.env) == [key for key, _ in env]


def test_arguments_are_in_numeric_order_not_text_order() -> None:
    """Eleven AGI arguments arrive as argument 1 to 11 in numeric order even when their headers come
    in another order."""
    args = [f"a{number}" for number in range(1, 12)]
    env = env_for_call(did="1", caller="2", uniqueid="3.4", channel="IAX2/x-1", args=args)
    shuffled = sorted(header(env), reverse=True)  # agi_arg_9 before agi_arg_11 before agi_arg_1
    assert AgiRequest.parse(shuffled).args == args


@pytest.mark.parametrize(
    ("script", "name", "query"),
    [
        ("route", "route", {}),
        ("route?x=1&y=two%20words", "route", {"x": "1", "y": "two words"}),
        ("/route?empty=", "route", {"empty": ""}),
        ("//callback", "callback", {}),
    ],
)
def test_script_name_without_query_and_leading_slash(
    script: str, name: str, query: dict[str, str]
) -> None:
    """The script named in the agi:// URL is found without its leading slashes, and its query string
    is decoded into parameters."""
    request = AgiRequest.parse(["agi_network: yes", f"agi_network_script: {script}"])
    assert (request.script, request.query) == (name, query)


def test_a_value_may_contain_the_separator() -> None:
    """A caller name or argument containing ': ' (such as 'Sales: Moscow') arrives whole."""
    request = AgiRequest.parse(["agi_calleridname: Sales: Moscow", "agi_arg_1: a: b"])
    assert request.caller_name == "Sales: Moscow"
    assert request.args == ["a: b"]


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ([], "empty AGI request"),
        (["agi_network: yes", "GET / HTTP/1.1"], "line 2 is not 'agi_key: value'"),
        (["agi_network:yes"], "line 1 is not 'agi_key: value'"),
        (["Host: example.com"], "line 1 has no agi_\\* key"),
        (["agi_: x"], "line 1 has no agi_\\* key"),
        (["agi network: yes"], "line 1 has no agi_\\* key"),
    ],
)
def test_bad_headers_are_rejected_with_the_line(lines: list[str], problem: str) -> None:
    """A request that is empty, not 'agi_key: value' (an HTTP request, say) or has no agi_ key is
    refused with an error naming the bad line."""
    with pytest.raises(AgiProtocolError, match=problem):
        AgiRequest.parse(lines)


# -- quoting ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("IAX2/101/101", '"IAX2/101/101"'),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\path", '"C:\\\\path"'),
        ("two\r\nlines\n", '"twolines"'),
        (MARIA, f'"{MARIA}"'),
    ],
)
def test_quote(value: str, quoted: str) -> None:
    """Values sent to Asterisk in an AGI command are double-quoted with quotes and backslashes
    escaped and line breaks removed, so a value cannot inject a second command."""
    assert quote(value) == quoted
