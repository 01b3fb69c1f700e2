"""The `pbx-tracker` command line: parses, configures logging, then delegates.

`main` holds the service's own commands (run, check-config, db, replay,
capture, demo); each group of commands a person runs by hand has its module
(callbacks, spam, pool, exports, reports and spend, web users); `common` is
what they share: loading the config or exiting with one line, the runner.
"""

from pbx_tracker.cli.main import main

__all__ = ["main"]
