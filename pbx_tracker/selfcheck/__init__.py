"""The self-check: the whole configuration held against the Asterisk it runs with.

Run after each AMI login by the daemon and by ``check-config --live``: AMI
event classes and actions, dial strings' channel drivers, dialplan contexts,
the recordings folder, CEL.  It reads every section, so it sits with the
composition root (it may import `pbx_tracker.config`), not in a room.
"""
