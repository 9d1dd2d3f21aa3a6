"""Inbox reading: poll, long-poll and streams, woken by the bus (`inbox.<agent>`).

Any replica may serve any inbox: the items are in the database and every replica hears the
wake-ups (see `gateway.feed`).
"""

from __future__ import annotations

from gateway.bus import Bus
from gateway.feed import Feed
from gateway.store.conversations import Conversations
from gateway.store.records import InboxItem


class InboxHub(Feed[InboxItem]):
    def __init__(self, bus: Bus, conversations: Conversations) -> None:
        super().__init__(bus, "inbox", conversations.inbox)
