"""The daemon: the composition root that wires the rooms into one running service.

`core.Daemon` builds the services in order, runs them and shuts them down;
`intake` takes each AMI item in (manager board, correlator, CEL gaps);
`http` is its HTTP side (visits API, pages, metrics, health); `lifecycle`
supervises the background loops and the stop signals; `capture` records live
AMI traffic for `pbx-tracker capture`.  A finished call goes down
`pbx_tracker.pipeline`, as it does for `replay`.
"""

from pbx_tracker.daemon.core import CEL_STORE_SECONDS, Daemon, run_daemon

__all__ = ["CEL_STORE_SECONDS", "Daemon", "run_daemon"]
