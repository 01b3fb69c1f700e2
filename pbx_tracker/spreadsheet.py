"""Cells of the CSV files people open in a spreadsheet: text is never run as a formula.

Excel, LibreOffice Calc and Google Sheets run a cell that starts with ``=``,
``+``, ``-`` or ``@`` as a formula (and may read a leading tab or CR the same
way), so a UTM tag stored through the public visits API, say
``=HYPERLINK("http://evil.example/","click")``, would be a live link in a
marketer's report.  As OWASP's "CSV Injection" page advises
(https://owasp.org/www-community/attacks/CSV_Injection), such a text cell gets
a leading single quote, which spreadsheets read as "this is text"; the csv
module still quotes the cell when it needs to.

Numbers stay numbers: an int, float or Decimal as it is, and text that is
nothing but a number (``-5``, ``-0.19``, ``+74951110002`` in E.164, a Unix
timestamp), which no spreadsheet can run.  Every CSV the project writes passes
its cells through `safe_cell`.
"""

from __future__ import annotations

import re
from typing import TypeVar, cast

__all__ = ["FORMULA_STARTS", "safe_cell"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")

Cell = TypeVar("Cell")


def safe_cell(value: Cell) -> Cell:
    """``value`` with a ``'`` in front when it is text a spreadsheet would run; else as is."""
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_STARTS)
        and _PLAIN_NUMBER.fullmatch(value) is None
    ):
        return cast(Cell, "'" + value)
    return value
