"""Time, passed in rather than read: the gateway asks a `Clock`, so tests can move it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to (tests and simulations)."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, moment: datetime) -> None:
        self._now = moment


def iso(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds and a `Z`, the protocol's way to write a time."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
