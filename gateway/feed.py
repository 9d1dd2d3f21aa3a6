"""A feed: rows with a per-key `seq`, read after a point, woken by the bus instead of polled.

The inbox (per agent) and the operator console (per brand) are both feeds. The rows live in
the database; every replica subscribes to `<prefix>.>` on the bus, so a commit on replica A
wakes a reader on replica B at once. A reader registers its waiter before it reads, so a
wake-up between the read and the wait is never lost.

A wake-up may carry the new row's seq; the feed remembers the highest seq it has heard of per
key, and a reader already past it waits without asking the store (a stream then reads the
store once per row, not once per row plus once to find nothing more). A lost wake-up costs no
more than without this: at the end of each wait the store is read regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from gateway.bus import Bus, Subscription


class Sequenced(Protocol):
    @property
    def seq(self) -> int: ...


T = TypeVar("T", bound=Sequenced)
Fetch = Callable[[str, int, int], Awaitable[list[T]]]

_HEADS_KEPT = 100_000  # keys whose newest seq is remembered (the least recently woken go)


class Feed(Generic[T]):
    """Reads `fetch(key, after, limit)` and waits for `<prefix>.<key>` wake-ups."""

    def __init__(self, bus: Bus, prefix: str, fetch: Fetch[T]) -> None:
        self._bus = bus
        self._prefix = prefix + "."
        self._fetch = fetch
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._subscription: Subscription | None = None
        self._heads: OrderedDict[str, int] = OrderedDict()

    async def start(self) -> None:
        self._subscription = await self._bus.subscribe(self._prefix + ">", self._wake)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _wake(self, subject: str, data: bytes) -> None:
        key = subject[len(self._prefix) :]
        try:
            seq = int(data)
        except ValueError:
            self._heads.pop(key, None)  # a wake-up without a seq: the store must be asked
        else:
            if seq > self._heads.get(key, 0):
                self._heads[key] = seq
                self._heads.move_to_end(key)
                if len(self._heads) > _HEADS_KEPT:
                    self._heads.popitem(last=False)
        for event in self._waiters.get(key, ()):
            event.set()

    async def read(self, key: str, after: int, limit: int, wait: float) -> list[T]:
        """Rows after `after`; when there are none, wait up to `wait` seconds for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            event = asyncio.Event()
            self._waiters[key].add(event)
            try:
                remaining = deadline - loop.time()
                head = self._heads.get(key)
                if head is None or head > after or remaining <= 0:
                    rows = await self._fetch(key, after, limit)
                    remaining = deadline - loop.time()
                    if rows or remaining <= 0:
                        return rows
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
            finally:
                self._discard(key, event)

    async def follow(self, key: str, after: int, heartbeat: float) -> AsyncIterator[T | None]:
        """Every row after `after`, forever; `None` when `heartbeat` seconds pass quietly."""
        while True:
            rows = await self.read(key, after, 100, heartbeat)
            if not rows:
                yield None
                continue
            for row in rows:
                yield row
                after = row.seq

    def _discard(self, key: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[key]
