"""`python -m pbx_tracker`."""

from pbx_tracker.cli import main

main()
