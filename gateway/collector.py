"""The garbage collector's settings for a serving process.

Reference counting frees almost everything a request makes as soon as the request is done;
the cyclic collector only has to find the rest, and it pauses the event loop while it looks.
With Python's defaults it looks often (every 700 net allocations of container objects) and,
now and then, through the whole heap, modules included. Once the gateway has started, what is
alive will live as long as the process: it is frozen out of the collector's passes, and the
young generation is collected every 20,000 net allocations instead. In `bench.acceptance`
(5 s, 32 callers) the defaults made 90 collections, 124 ms of pauses in all, the longest
9 ms, plus a full pass of 117-388 ms when nothing was frozen; these settings made 2, 14 ms in
all. Cyclic garbage waits a little longer to be freed, which costs a few megabytes at most.

Only the serving process applies this: tests start many gateways in one process.
"""

from __future__ import annotations

import gc

YOUNG = 20_000
"""Net allocations of container objects between collections of the young generation."""

OLDER = 20
"""Collections of one generation between collections of the next (Python's default: 10)."""


def settle() -> None:
    """Freeze what is alive now and collect less often from here on (call once started)."""
    gc.collect()  # no cyclic garbage gets frozen
    gc.freeze()
    gc.set_threshold(YOUNG, OLDER, OLDER)
