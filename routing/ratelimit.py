"""A pure token bucket: how many envelopes one sender may send, and when it may send again.

The gateway keeps one `Bucket` per sender and scope (`bucket_scope`, below), in memory, and
calls `take` for each envelope with a clock reading in seconds. A bucket holds at most
`burst` tokens, refills at `rate_per_minute / 60` tokens per second, and each envelope takes
one. So over any window of `w` seconds a sender gets at most
`burst + rate_per_minute * w / 60` envelopes in one scope.

Choice where the protocol is silent: `burst` defaults to `rate_per_minute`, so "120 per
minute" lets a sender write 120 envelopes at once after a quiet minute, and the 121st in
quick succession is refused, which is what a person reading "120 per minute" expects.
A clock that goes backwards is treated as no time passing.

Which bucket an envelope draws from (`bucket_scope`), where the protocol says only "the
sender is within its rate limit": one per sender and recipient brand for envelopes to a
brand, so a person writing to two brands is limited by each brand's rate separately; one per
brand agent and person it writes to, so a support agent answering hundreds of customers is
not held to one person's rate in all, while no customer can be flooded by it; and one per
personal sender for everything it writes to other people.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bucket:
    """The tokens left and the monotonic time (seconds) they were counted at."""

    tokens: float
    updated: float


def take(
    bucket: Bucket | None, now: float, rate_per_minute: int, burst: int | None = None
) -> tuple[Bucket, float]:
    """Take one token for an envelope sent at `now`.

    Args:
        bucket: The sender's bucket, or None for a sender not seen before (a full bucket).
        now: Monotonic seconds.
        rate_per_minute: Sustained envelopes per minute.
        burst: Bucket size; defaults to `rate_per_minute`.

    Returns:
        The bucket to store, and 0.0 when the envelope is allowed, else the seconds after
        which one token will be available (always > 0; the gateway's `Retry-After`).

    Raises:
        ValueError: A rate or burst below 1.
    """
    if rate_per_minute < 1:
        raise ValueError("rate_per_minute must be at least 1")
    capacity = float(rate_per_minute if burst is None else burst)
    if capacity < 1:
        raise ValueError("burst must be at least 1")
    per_second = rate_per_minute / 60.0
    if bucket is None:
        tokens = capacity
    else:
        elapsed = max(0.0, now - bucket.updated)
        tokens = min(capacity, bucket.tokens + elapsed * per_second)
    updated = now if bucket is None else max(now, bucket.updated)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, updated), 0.0
    return Bucket(tokens, updated), (1.0 - tokens) / per_second


ANY_PERSON = "*"  # the scope of a personal agent's envelopes to other people


def bucket_scope(sender_kind: str, recipient_address: str, recipient_brand: str | None) -> str:
    """The scope of the bucket an envelope draws from, beside its sender (see the module doc):
    the recipient's brand; else, from a brand agent, the person it writes to; else
    `ANY_PERSON`."""
    if recipient_brand is not None:
        return recipient_brand
    if sender_kind == "brand":
        return recipient_address
    return ANY_PERSON
