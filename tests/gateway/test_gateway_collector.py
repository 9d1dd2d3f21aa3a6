"""The serving process's collector settings, checked in a process of their own (freezing the
heap of the test process would keep every later test's garbage alive)."""

from __future__ import annotations

import json
import subprocess
import sys

from gateway import collector

_PROBE = """
import gc, json
before = (gc.get_threshold(), gc.get_freeze_count())
from gateway.collector import settle
settle()
print(json.dumps({"before": before, "after": (gc.get_threshold(), gc.get_freeze_count())}))
"""


def test_settle_freezes_what_is_alive_and_collects_the_young_less_often():
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(done.stdout)
    (threshold, frozen_before), (settled, frozen_after) = seen["before"], seen["after"]
    assert frozen_before == 0 and threshold != settled
    assert settled == [collector.YOUNG, collector.OLDER, collector.OLDER]
    assert frozen_after > 1000  # the modules and everything else alive at start-up
