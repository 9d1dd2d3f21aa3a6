"""Inbox reading: poll, long-poll and streams, woken by the bus instead of polling the store.

Any replica may serve any inbox: the items are in the database, and every replica subscribes
to `inbox.>` on the bus, so a commit on replica A wakes a reader on replica B at once.

Each wake-up carries the new item's seq, and the hub remembers the highest seq it has heard of
per agent: a reader already past it has nothing to read, so it waits without asking the store
(a stream reads the store once per item, not once per item plus once to find nothing more). A
lost wake-up costs no more than before: at the end of each wait the store is read regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator

from gateway.bus import Bus, Subscription
from gateway.store.conversations import Conversations
from gateway.store.records import InboxItem

_PREFIX = "inbox."
_HEADS_KEPT = 100_000  # agents whose newest seq is remembered (the least recently woken go)


class InboxHub:
    def __init__(self, bus: Bus, conversations: Conversations) -> None:
        self._bus = bus
        self._conversations = conversations
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._subscription: Subscription | None = None
        self._heads: OrderedDict[str, int] = OrderedDict()

    async def start(self) -> None:
        self._subscription = await self._bus.subscribe(_PREFIX + ">", self._wake)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _wake(self, subject: str, data: bytes) -> None:
        agent = subject[len(_PREFIX) :]
        try:
            seq = int(data)
        except ValueError:
            self._heads.pop(agent, None)  # a wake-up without a seq: the store must be asked
        else:
            if seq > self._heads.get(agent, 0):
                self._heads[agent] = seq
                self._heads.move_to_end(agent)
                if len(self._heads) > _HEADS_KEPT:
                    self._heads.popitem(last=False)
        for event in self._waiters.get(agent, ()):
            event.set()

    async def read(self, agent: str, after: int, limit: int, wait: float) -> list[InboxItem]:
        """Items after `after`; when there are none, wait up to `wait` seconds for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            event = asyncio.Event()
            self._waiters[agent].add(event)
            try:
                remaining = deadline - loop.time()
                head = self._heads.get(agent)
                if head is None or head > after or remaining <= 0:
                    items = await self._conversations.inbox(agent, after, limit)
                    remaining = deadline - loop.time()
                    if items or remaining <= 0:
                        return items
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
            finally:
                self._discard(agent, event)

    async def follow(
        self, agent: str, after: int, heartbeat: float
    ) -> AsyncIterator[InboxItem | None]:
        """Every item after `after`, forever; `None` when `heartbeat` seconds pass quietly."""
        while True:
            items = await self.read(agent, after, 100, heartbeat)
            if not items:
                yield None
                continue
            for item in items:
                yield item
                after = item.seq

    def _discard(self, agent: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(agent)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[agent]
