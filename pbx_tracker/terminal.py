"""What the commands print: rich tables (and lines) rendered as plain text."""

from __future__ import annotations

from rich.console import Console, RenderableType

__all__ = ["as_text"]


def as_text(*shown: RenderableType, width: int) -> str:
    """``shown`` one after the other as plain text (no colours, no terminal needed),
    at most ``width`` columns, without trailing blank lines."""
    console = Console(record=True, width=width, force_terminal=False)
    with console.capture() as captured:
        for item in shown:
            console.print(item)
    return captured.get().rstrip()
