"""The in-process bus of the embedded default: one gateway process, no broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

import structlog

from gateway.bus import Handler, matches

log = structlog.get_logger(__name__)

_RETRY_DELAY_S = 0.5
_SEEN_IDS = 10_000


class _Subscription:
    def __init__(self, bus: MemoryBus, pattern: str, handler: Handler) -> None:
        self._bus = bus
        self.pattern = pattern
        self.handler = handler

    async def stop(self) -> None:
        self._bus._subscriptions.discard(self)


class _Consumer:
    def __init__(self, bus: MemoryBus, subject: str, handler: Handler) -> None:
        self._bus = bus
        self.subject = subject
        self.handler = handler
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(), name=f"bus-consume-{subject}")

    async def _run(self) -> None:
        while True:
            data = await self.queue.get()
            try:
                await self.handler(self.subject, data)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus.handler_failed", subject=self.subject)
                await asyncio.sleep(_RETRY_DELAY_S)
                self.queue.put_nowait(data)

    async def stop(self) -> None:
        self._bus._consumers.pop(self.subject, None)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class MemoryBus:
    """Fan-out subscriptions and one consumer per work subject, all in this event loop."""

    def __init__(self) -> None:
        self._subscriptions: set[_Subscription] = set()
        self._consumers: dict[str, _Consumer] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        if msg_id is not None:
            if msg_id in self._seen:
                return
            self._seen[msg_id] = None
            if len(self._seen) > _SEEN_IDS:
                self._seen.popitem(last=False)
        for subscription in list(self._subscriptions):
            if matches(subscription.pattern, subject):
                try:
                    await subscription.handler(subject, data)
                except Exception:
                    log.exception("bus.subscriber_failed", subject=subject)
        consumer = self._consumers.get(subject)
        if consumer is not None:
            consumer.queue.put_nowait(data)

    async def subscribe(self, pattern: str, handler: Handler) -> _Subscription:
        subscription = _Subscription(self, pattern, handler)
        self._subscriptions.add(subscription)
        return subscription

    async def consume(self, subject: str, handler: Handler) -> _Consumer:
        if subject in self._consumers:
            raise RuntimeError(f"{subject} has a consumer already")
        consumer = _Consumer(self, subject, handler)
        self._consumers[subject] = consumer
        return consumer

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        for consumer in list(self._consumers.values()):
            await consumer.stop()
        self._subscriptions.clear()
