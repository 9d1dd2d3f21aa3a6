"""Identifiers: ULIDs (time-ordered, 26 Crockford base32 characters) and prefixed ids.

A ULID sorts by creation time at millisecond grain, which keeps ids of envelopes, tasks and
deliveries roughly in insertion order in database indexes. Strict monotonicity inside one
millisecond is not promised.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid(now: datetime | None = None) -> str:
    """A new ULID: 48 bits of Unix milliseconds (from `now`, else the clock), 80 random bits."""
    millis = int(now.timestamp() * 1000) if now is not None else time.time_ns() // 1_000_000
    if not 0 <= millis < 1 << 48:
        raise ValueError("a ULID's time must lie between 1970 and the year 10889")
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str, now: datetime | None = None) -> str:
    """A prefixed id such as `tsk_01JDZ4Q7...`; `new_id("tsk")` and `new_id("tsk_")` agree."""
    return f"{prefix.rstrip('_')}_{new_ulid(now)}"
