"""The `Bus` port: wake-ups and work between the parts of one gateway, or between replicas.

The database stays the source of truth; the bus only says "look now". Two patterns:
- `subscribe` is fan-out: every replica's handler sees every message (inbox and console
  wake-ups, so a stream open on replica B sees what replica A accepted at once);
- `consume` is a shared work queue: each message goes to one consumer among all replicas,
  is acknowledged when the handler returns, and comes back when the handler raises.

Adapters: `gateway.bus.memory` (embedded, one process) and `gateway.bus.nats` (JetStream).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

Handler = Callable[[str, bytes], Awaitable[None]]


class Subscription(Protocol):
    async def stop(self) -> None: ...


class Bus(Protocol):
    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        """Send `data` on `subject`. `msg_id` lets the bus drop a repeat of the same message."""
        ...

    async def subscribe(self, pattern: str, handler: Handler) -> Subscription:
        """Fan-out: call `handler(subject, data)` for every message matching `pattern`
        (NATS syntax: `*` one token, `>` the rest)."""
        ...

    async def consume(self, subject: str, handler: Handler) -> Subscription:
        """Work queue: each message on `subject` reaches one consumer; raising redelivers."""
        ...

    async def ping(self) -> bool:
        """Readiness: is the bus reachable now?"""
        ...

    async def close(self) -> None: ...


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: tokens split on `.`, `*` matches one, `>` the rest."""
    pattern_tokens = pattern.split(".")
    subject_tokens = subject.split(".")
    for index, token in enumerate(pattern_tokens):
        if token == ">":
            return len(subject_tokens) > index
        if index >= len(subject_tokens):
            return False
        if token != "*" and token != subject_tokens[index]:
            return False
    return len(pattern_tokens) == len(subject_tokens)
