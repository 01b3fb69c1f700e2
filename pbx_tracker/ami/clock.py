"""A clock for captured AMI text that carries no times of its own.

Raw AMI text (manager.conf `timestampevents = no`) never says when a message
happened, but many messages say how long ago something else did.
`estimate_times` turns those statements into a time (epoch seconds) for every
message of a capture, using only what the messages say.

The facts come from `pbx_tracker.ami.clock_facts` (what it uses: anchors and
links between messages); `pbx_tracker.ami.clock_solving` turns them into times
(how it combines them: difference constraints, dropping the least trusted link
of a contradiction, bursts).

Known error
-----------
On the 16 capture pairs of tests/data/asterisk-traces (raw text against the
JSON Lines receive times; each event's time from its call's first
`Newchannel`) the median error is 15 ms.  The answering `BridgeEnter`, every
`DialEnd` and the caller's `Hangup` are within 60 ms wherever an answered
Dial's or a queue's figures, a Dial timeout or a Cdr in the same second cover
them.  What only whole seconds measure comes out early by up to a second: a
caller hanging up during voicemail (0.46 s on the capture), a queue ringing a
member again (0.36 s).  A moment nothing measures is placed right after the
burst before it: the customer answering an originated callback (3 s early on
the capture: its ANSWEREDTIME_MS counts from the manager's answer).  Absolute
times are early by up to about a second: Uniqueids give whole seconds.  A
duration too long for the capture is caught only if a later message dates
itself.  On a busy day built from the captures (benchmarks/raw_clock.py) the
median is 11 ms, the 95th percentile 33 ms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pbx_tracker.ami.clock_facts import read_facts
from pbx_tracker.ami.clock_solving import solve

__all__ = ["estimate_times"]


def estimate_times(
    messages: Sequence[Mapping[str, str]], known: Sequence[float | None] | None = None
) -> list[float]:
    """Epoch seconds for each message, in arrival order; `known` times are kept as they are."""
    facts = read_facts(messages)
    for index, moment in enumerate(known or ()):
        if moment is not None and math.isfinite(moment):
            facts.bound(index, moment, moment)
    return solve(facts)
