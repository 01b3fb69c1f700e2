"""The fast path for plain events reads every message as panoramisk's parser does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from panoramisk.message import Message

from pbx_tracker.ami.messages import parse_message

keys = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True).filter(
    lambda key: key.lower() not in {"event", "result", "content"}
)
values = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]))
headers = st.lists(st.tuples(keys, values), max_size=12)


def panoramisk_fields(text: str) -> dict[str, str]:
    message = Message.from_line(text)
    return {
        key: value if isinstance(value, str) else "\n".join(value)
        for key, value in message._store.values()
        if key != "content"
    }


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"), headers)
def test_same_fields_as_panoramisk(event: str, fields: list[tuple[str, str]]) -> None:
    """Any plain AMI event is read into the same header names and values as panoramisk reads it, so
    switching to the fast parser changes no call record."""
    spelling: dict[str, str] = {}  # Asterisk spells a header one way within a message
    fields = [(spelling.setdefault(k.lower(), k), v) for k, v in fields]
    text = "\r\n".join([f"Event: {event}", *(f"{k}: {v}" for k, v in fields)])
    assert parse_message(text) == panoramisk_fields(text)


def test_repeated_headers_and_garbage_lines() -> None:
    """A header Asterisk repeats (several ChanVariable lines) keeps all its values one per line, and
    a line that is no header is skipped instead of breaking the event."""
    text = (
        "Event: VarSet\r\nChanVariable: A=1\r\nnot a header\r\nWeird:NoSpace\r\nChanVariable: B=2"
    )
    assert parse_message(text) == {"Event": "VarSet", "ChanVariable": "A=1\nB=2"}


def test_a_caller_name_with_a_unicode_line_separator_stays_one_value() -> None:
    """A caller name containing a Unicode line separator arrives whole as one value, not cut into a
    bogus extra header."""
    assert parse_message("Event: Newchannel\r\nCallerIDName: Ivan\u2028Petrov") == {
        "Event": "Newchannel",
        "CallerIDName": "Ivan\u2028Petrov",
    }
