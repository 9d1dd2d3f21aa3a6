"""The operator console's live queue: a brand's escalation events, followed like an inbox.

Events are rows with a per-brand `seq`, so a stream resumes after `Last-Event-ID` with nothing
lost; the bus subject `escalations.<brand>` wakes followers on every replica at once (see
`gateway.feed`).
"""

from __future__ import annotations

from gateway.bus import Bus
from gateway.feed import Feed
from gateway.store.escalations import Escalations, EventRecord


class ConsoleStream(Feed[EventRecord]):
    def __init__(self, bus: Bus, escalations: Escalations) -> None:
        super().__init__(bus, "escalations", escalations.events)
