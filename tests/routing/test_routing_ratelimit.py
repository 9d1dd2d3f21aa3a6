"""The token bucket: bursts, refill, Retry-After, and the bound over any window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.ratelimit import ANY_PERSON, Bucket, bucket_scope, take


def send(times: list[float], rate: int, burst: int | None = None) -> list[float]:
    """Retry-after for each send at `times`, carrying the bucket along."""
    bucket: Bucket | None = None
    waits = []
    for now in times:
        bucket, wait = take(bucket, now, rate, burst)
        waits.append(wait)
    return waits


def test_default_burst_is_the_minute_rate() -> None:
    """120 per minute: 120 sends at once pass, the 121st waits half a second."""
    waits = send([100.0] * 121, 120)
    assert waits[:120] == [0.0] * 120
    assert waits[120] == pytest.approx(0.5)


def test_refill_after_waiting_retry_after() -> None:
    """Waiting the announced Retry-After makes the next send pass."""
    bucket, wait = take(Bucket(tokens=0.0, updated=10.0), 10.0, 60)
    assert wait == pytest.approx(1.0)
    _, again = take(bucket, 10.0 + wait, 60)
    assert again == 0.0


def test_refused_send_takes_nothing() -> None:
    """A refused send does not push the next allowed instant further away."""
    bucket = Bucket(tokens=0.0, updated=0.0)
    for _ in range(5):
        bucket, wait = take(bucket, 0.0, 60, burst=1)
        assert wait == pytest.approx(1.0)
    assert take(bucket, 1.0, 60, burst=1)[1] == 0.0


def test_clock_going_backwards_adds_nothing() -> None:
    """A monotonic clock should not go back; if it does, no tokens appear."""
    bucket, _ = take(None, 50.0, 60, burst=1)
    _, wait = take(bucket, 10.0, 60, burst=1)
    assert wait > 0


def test_bad_rates_are_bugs() -> None:
    """A zero rate or burst is refused."""
    with pytest.raises(ValueError):
        take(None, 0.0, 0)
    with pytest.raises(ValueError):
        take(None, 0.0, 10, burst=0)


@given(
    gaps=st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=200),
    rate=st.integers(1, 600),
    burst=st.none() | st.integers(1, 50),
)
def test_allowed_never_exceed_burst_plus_rate_over_any_window(
    gaps: list[float], rate: int, burst: int | None
) -> None:
    """Over every window [t_i, t_j], allowed sends <= burst + rate * (t_j - t_i) / 60."""
    times = []
    now = 1000.0
    for gap in gaps:
        now += gap
        times.append(now)
    waits = send(times, rate, burst)
    assert all(wait >= 0.0 for wait in waits)
    allowed = [1 if wait == 0.0 else 0 for wait in waits]
    capacity = rate if burst is None else burst
    for i in range(len(times)):
        count = 0
        for j in range(i, len(times)):
            count += allowed[j]
            assert count <= capacity + rate * (times[j] - times[i]) / 60 + 1e-6


def test_bucket_scope() -> None:
    """To a brand: its brand; from a brand agent to a person: that person; from a person to a
    person: one scope for all of them."""
    assert bucket_scope("personal", "support@acme.example", "acme.example") == "acme.example"
    assert bucket_scope("brand", "sales@globex.example", "globex.example") == "globex.example"
    assert bucket_scope("brand", "alice@people.example", None) == "alice@people.example"
    assert bucket_scope("personal", "bob@people.example", None) == ANY_PERSON


@given(
    st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), min_size=1, max_size=60),
    st.integers(min_value=1, max_value=600),
)
def test_a_bucket_left_a_minute_is_as_good_as_none(times: list[float], rate: int) -> None:
    """What lets the gateway forget buckets nobody took from for a minute (and a second: an
    emptied bucket is a rounding error short of one token after exactly 60 s): whatever was
    taken before, the next envelope finds the bucket as a newcomer's."""
    bucket: Bucket | None = None
    for now in sorted(times):
        bucket, _ = take(bucket, now, rate)
    assert bucket is not None
    later = bucket.updated + 61.0
    assert take(bucket, later, rate) == take(None, later, rate)
