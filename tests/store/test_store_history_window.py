"""The language layer reads a bounded window of a long task, the task view reads it all."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from gateway.store.tables import envelopes


async def _long_task(gateway, count: int) -> str:
    conversations = gateway.services.conversations
    now = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    rows = [
        {
            "sender": "alice@people.example",
            "envelope_id": f"01JDZ4R{n:019d}",
            "recipient": "support@acme.example",
            "task_id": "tsk_long",
            "act": "say",
            "digest": f"{n:064d}",
            "body": json.dumps({"id": f"01JDZ4R{n:019d}", "body": {"text": f"message {n}"}}),
            "answer": None,
            "accepted_at": now,
        }
        for n in range(count)
    ]
    async with conversations._engine.begin() as conn:
        await conn.execute(envelopes.insert(), rows)
    return "tsk_long"


async def test_a_long_task_is_read_as_its_opening_and_newest_envelopes(gateway):
    """With a version (the language layer's read) a 250-envelope task gives the opening
    envelope and the newest 199, oldest first; without one, every envelope in order."""
    task = await _long_task(gateway, 250)
    conversations = gateway.services.conversations
    window = await conversations.history(task, version=7)
    texts = [body["body"]["text"] for body in window]
    assert len(texts) == 200
    assert texts[0] == "message 0"
    assert texts[1] == "message 51" and texts[-1] == "message 249"
    whole = await conversations.history(task)
    assert [body["body"]["text"] for body in whole] == [f"message {n}" for n in range(250)]


async def test_a_short_task_is_read_whole_either_way(gateway):
    """Below the window's size the language layer reads the whole task."""
    task = await _long_task(gateway, 12)
    conversations = gateway.services.conversations
    assert len(await conversations.history(task, version=3)) == 12
    assert len(await conversations.history(task)) == 12
