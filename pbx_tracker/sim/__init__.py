"""A simulated Asterisk: a real AMI server and calls shaped like captured traffic.

`FakeAsterisk` (`sim.asterisk`) is the AMI server the tests, the benchmarks and
`pbx-tracker demo` talk to; `make_call` (`sim.scenarios`) and `generate_day`
(`sim.generated_day`) produce the event streams it plays, templated from real
captures.
"""

from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.generated_day import generate_day
from pbx_tracker.sim.ids import IdAllocator
from pbx_tracker.sim.scenarios import ExpectedCall, SimCall, make_call, merge
from pbx_tracker.sim.traces import trace_events

__all__ = [
    "ExpectedCall",
    "FakeAsterisk",
    "IdAllocator",
    "SimCall",
    "generate_day",
    "make_call",
    "merge",
    "trace_events",
]
