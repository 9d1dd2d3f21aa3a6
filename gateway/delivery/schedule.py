"""When to try again, and whether to: pure functions over status codes, headers and time.

Classification (PROTOCOL section 6): 2xx is delivered; 410 disables the endpoint; 408, 429,
5xx, timeouts and connection errors are retried; every other 4xx, and 3xx (redirects are never
followed, so a redirect is an endpoint misconfiguration), fails for good.

Backoff is exponential with full jitter (a uniform draw between zero and the exponential
ceiling), so endpoints coming back from an outage are not hit by a synchronised wave. A
`Retry-After` from the endpoint (seconds or an HTTP date) is a floor on the wait. Retries
stop when the next attempt would fall after the budget (24 h by default, counted from when the
row was made); one last attempt is made at the deadline itself.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime


class Verdict(enum.StrEnum):
    """What one answer means for the delivery."""

    OK = "ok"
    RETRY = "retry"
    FINAL = "final"
    DISABLE = "disable"


_RETRY_STATUSES = frozenset({408, 429})


def classify_status(status: int) -> Verdict:
    """The verdict on an HTTP status code."""
    if 200 <= status < 300:
        return Verdict.OK
    if status == 410:
        return Verdict.DISABLE
    if status in _RETRY_STATUSES or 500 <= status < 600:
        return Verdict.RETRY
    return Verdict.FINAL


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait according to a `Retry-After` header, None when absent or unreadable.

    Both RFC 9110 forms are read: delay-seconds (`120`) and an HTTP date
    (`Wed, 21 Oct 2026 07:28:00 GMT`); a date in the past means zero.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - now).total_seconds())


@dataclass(frozen=True, slots=True)
class Backoff:
    """The retry schedule's parameters (from `DeliverySettings`)."""

    base_s: float = 1.0
    max_s: float = 600.0
    budget_s: float = 24 * 3600.0
    retry_after_max_s: float = 6 * 3600.0

    def ceiling(self, attempt: int) -> float:
        """The jitter ceiling after `attempt` failed attempts (1 for the first failure)."""
        exponent = min(max(attempt - 1, 0), 62)
        return float(min(self.max_s, self.base_s * (2**exponent)))

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        draw: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after `attempt` failed attempts: full jitter, floored by
        `Retry-After` (itself capped so a hostile endpoint cannot park a delivery forever)."""
        wait = draw() * self.ceiling(attempt)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.retry_after_max_s))
        return wait

    def next_attempt(
        self,
        *,
        first_at: datetime,
        now: datetime,
        attempt: int,
        retry_after: float | None = None,
        draw: Callable[[], float] = random.random,
    ) -> datetime | None:
        """When to try again after `attempt` failed attempts, or None: the budget is spent."""
        deadline = first_at + timedelta(seconds=self.budget_s)
        if now >= deadline:
            return None
        planned = now + timedelta(seconds=self.delay(attempt, retry_after, draw))
        return min(planned, deadline)
