"""Counts in the pages and the command line: "1 call", never "1 calls"."""

from __future__ import annotations

from pbx_tracker.web.pages.layout import plural


def test_one_is_singular_and_every_other_count_plural() -> None:
    """A user reads "1 call", "0 calls", "2 calls" (and an irregular plural when given)."""
    assert [plural(n, "call") for n in (0, 1, 2)] == ["0 calls", "1 call", "2 calls"]
    assert plural(1, "AMI message") == "1 AMI message"
    assert plural(3, "entry", "entries") == "3 entries"
