"""One AMI message's text (`Key: Value` lines) to a dict of strings."""

from __future__ import annotations


def parse_message(text: str) -> dict[str, str]:
    """Header fields of one message; repeated headers are joined by newlines.

    A header is `Key: Value` (or `Key:` with nothing after it); other lines
    (garbage, `Key:Value`, an old-style command body) are skipped, as
    panoramisk does.
    """
    fields: dict[str, str] = {}
    for line in text.split("\n"):  # not splitlines(): U+2028 in a caller name is no line end
        line = line.removesuffix("\r")
        key, sep, value = line.partition(": ")
        if not sep:
            if not line.endswith(":"):
                continue
            key, value = line[:-1], ""
        key = key.strip()
        fields[key] = f"{fields[key]}\n{value}" if key in fields else value
    return fields
