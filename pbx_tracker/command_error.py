"""The one error of the command line's commands.

Every command raises `CommandError` when the user asked for something that
cannot be done (a task that is closed, a date that is no date, an unknown
pool, a file that cannot be written); the command line prints it as one
``error: ...`` line on stderr and exits 1 (`pbx_tracker.cli.common.run_command`).
A room's own errors (a task that changed meanwhile, a bad spend file) are
turned into it where a command meets them.
"""

from __future__ import annotations

__all__ = ["CommandError"]


class CommandError(Exception):
    """What cannot be done, in one line for the terminal."""
