"""The inbox wake-ups of acceptances that commit together go out as one message per agent,
carrying the highest seq, on a real in-process bus and a real store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from gateway.bus.memory import MemoryBus
from gateway.inbox_wakeups import InboxWakeups
from gateway.store.conversations import Batch, Conversations, EnvelopeWrite
from gateway.store.database import create_engine, migrate
from identity.ids import new_id

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


async def _recording(bus: MemoryBus) -> list[tuple[str, int]]:
    heard: list[tuple[str, int]] = []

    async def note(subject: str, data: bytes) -> None:
        heard.append((subject, int(data)))

    await bus.subscribe("inbox.*", note)
    return heard


def _batch(n: int, agent: str) -> Batch:
    return Batch(
        now=NOW,
        envelopes=[
            EnvelopeWrite(
                sender="alice@people.example",
                envelope_id=f"env-{n}",
                recipient=agent,
                task_id=None,
                act="say",
                digest="d" * 64,
                body={"id": f"env-{n}"},
                answer=None,
                inbox_for=(agent,),
            )
        ],
    )


async def test_acceptances_resuming_together_send_one_message_per_agent():
    """Four callers at once with seqs for two agents: two messages, each with its agent's
    highest seq (not four); a later caller gets a message of its own."""
    bus = MemoryBus()
    heard = await _recording(bus)
    wakeups = InboxWakeups(bus)
    await asyncio.gather(
        wakeups.publish([("a", 1)]),
        wakeups.publish([("a", 3), ("b", 1)]),
        wakeups.publish([("a", 2)]),
        wakeups.publish([]),
    )
    assert sorted(heard) == [("inbox.a", 3), ("inbox.b", 1)]
    await wakeups.publish([("a", 4)])
    assert heard[2:] == [("inbox.a", 4)]


async def test_envelopes_of_one_group_commit_wake_each_inbox_once_with_the_highest_seq(
    tmp_path: Path,
):
    """Eight envelopes committed at once (one group commit: one transaction) into two
    inboxes, each acceptance then publishing its seqs: one wake-up per inbox, carrying its
    last seq, fewer wake-ups than envelopes; every acceptance returns."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        await migrate(engine)
        store = Conversations(engine, new_id)
        bus = MemoryBus()
        heard = await _recording(bus)
        wakeups = InboxWakeups(bus)

        async def accept(n: int) -> None:
            committed = await store.commit(_batch(n, "a" if n < 6 else "b"))
            await wakeups.publish(committed.inbox)

        await asyncio.gather(*(accept(n) for n in range(8)))
        assert sorted(heard) == [("inbox.a", 6), ("inbox.b", 2)]
        assert len(heard) < 8
    finally:
        await engine.dispose()
