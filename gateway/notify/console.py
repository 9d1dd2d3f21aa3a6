"""The operator console's live queue: a brand's escalation events, followed like an inbox.

Events are rows with a per-brand `seq`, so a stream resumes after `Last-Event-ID` with nothing
lost; the bus subject `escalations.<brand>` wakes followers on every replica at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator

from gateway.bus import Bus, Subscription
from gateway.store.escalations import Escalations, EventRecord

_PREFIX = "escalations."


class ConsoleStream:
    def __init__(self, bus: Bus, escalations: Escalations) -> None:
        self._bus = bus
        self._escalations = escalations
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self._bus.subscribe(_PREFIX + ">", self._wake)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _wake(self, subject: str, _data: bytes) -> None:
        for event in self._waiters.get(subject[len(_PREFIX) :], ()):
            event.set()

    async def follow(
        self, brand: str, after: int, heartbeat: float
    ) -> AsyncIterator[EventRecord | None]:
        """Every event of `brand` after `after`, forever; None after a quiet `heartbeat`."""
        while True:
            waiter = asyncio.Event()
            self._waiters[brand].add(waiter)
            try:
                events = await self._escalations.events(brand, after)
                if not events:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(waiter.wait(), heartbeat)
                    events = await self._escalations.events(brand, after)
            finally:
                self._waiters[brand].discard(waiter)
                if not self._waiters[brand]:
                    del self._waiters[brand]
            if not events:
                yield None
            for event in events:
                yield event
                after = event.seq
