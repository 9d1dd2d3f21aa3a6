"""The retry schedule: classification, Retry-After, backoff bounds and the budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.schedule import Backoff, Verdict, classify_status, parse_retry_after

NOW = datetime(2026, 11, 26, 6, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.OK),
        (202, Verdict.OK),
        (204, Verdict.OK),
        (299, Verdict.OK),
        (301, Verdict.FINAL),
        (302, Verdict.FINAL),
        (307, Verdict.FINAL),
        (308, Verdict.FINAL),
        (400, Verdict.FINAL),
        (401, Verdict.FINAL),
        (403, Verdict.FINAL),
        (404, Verdict.FINAL),
        (408, Verdict.RETRY),
        (409, Verdict.FINAL),
        (410, Verdict.DISABLE),
        (413, Verdict.FINAL),
        (422, Verdict.FINAL),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (599, Verdict.RETRY),
        (100, Verdict.FINAL),
    ],
)
def test_status_classification(status: int, verdict: Verdict) -> None:
    """Each status maps to the protocol's verdict: 2xx ok, 410 disable, 408/429/5xx retry."""
    assert classify_status(status) == verdict


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Thu, 26 Nov 2026 06:00:30 GMT", 30.0),
        ("Thu, 26 Nov 2026 05:59:00 GMT", 0.0),
        ("Thu, 26 Nov 2026 06:00:30", None),
    ],
)
def test_retry_after_forms(header: str | None, seconds: float | None) -> None:
    """Retry-After is read as delay-seconds or an HTTP date; anything else is ignored."""
    assert parse_retry_after(header, NOW) == seconds


def test_ceiling_doubles_up_to_the_cap() -> None:
    """The jitter ceiling doubles per failed attempt and stops at the maximum."""
    backoff = Backoff(base_s=1.0, max_s=10.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.ceiling(10_000) == 10.0


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    draw=st.floats(min_value=0.0, max_value=0.999999),
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=1e7)),
)
def test_delay_is_within_jitter_and_honours_retry_after(
    attempt: int, draw: float, retry_after: float | None
) -> None:
    """A delay never exceeds the ceiling unless Retry-After asks for more, and never falls
    below Retry-After (capped)."""
    backoff = Backoff(base_s=0.5, max_s=300.0, retry_after_max_s=3600.0)
    delay = backoff.delay(attempt, retry_after, lambda: draw)
    assert delay >= 0
    if retry_after is None:
        assert delay <= backoff.ceiling(attempt)
    else:
        assert delay >= min(retry_after, 3600.0)
        assert delay <= max(backoff.ceiling(attempt), min(retry_after, 3600.0))


def test_budget_ends_retries_with_a_last_attempt_at_the_deadline() -> None:
    """Attempts are planned up to the budget's deadline, never after; past it, None."""
    backoff = Backoff(base_s=10.0, max_s=100.0, budget_s=60.0)
    first = NOW
    planned = backoff.next_attempt(
        first_at=first, now=first + timedelta(seconds=55), attempt=5, draw=lambda: 0.99
    )
    assert planned == first + timedelta(seconds=60)
    assert (
        backoff.next_attempt(first_at=first, now=first + timedelta(seconds=60), attempt=6) is None
    )
    early = backoff.next_attempt(first_at=first, now=first, attempt=1, draw=lambda: 0.5)
    assert early == first + timedelta(seconds=5)
