"""Who may do what on the pages, by role: one place for every page's rule.

- **manager**: their own callbacks, the calls (and marks spam);
- **supervisor**: watches the floor: the live board, everyone's callbacks, the
  calls, the reports;
- **marketer**: the calls and the reports;
- **admin**: everything.
"""

from __future__ import annotations

__all__ = [
    "BOARD_ROLES",
    "CALLBACK_ROLES",
    "REPORT_ROLES",
    "ROLES",
    "SPAM_ROLES",
    "sees_every_callback",
]

ROLES = ("manager", "supervisor", "marketer", "admin")
CALLBACK_ROLES = ("manager", "supervisor", "admin")  # who works the callbacks
SPAM_ROLES = ("manager", "supervisor", "admin")  # who marks calls as spam
REPORT_ROLES = ("marketer", "supervisor", "admin")
BOARD_ROLES = ("supervisor", "admin")  # the live board


def sees_every_callback(role: str) -> bool:
    """A supervisor or an admin sees (and works) every manager's callbacks."""
    return role in ("supervisor", "admin")
