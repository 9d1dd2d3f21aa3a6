"""How often an inbox stream reads the store: once per item, not once more to find nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextmanager
def inbox_reads() -> Iterator[list[str]]:
    """Collect every SQL statement that reads the inbox table while the block runs."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM inbox" in statement:
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


async def test_a_followed_stream_reads_the_store_once_per_item(gateway):
    """Five envelopes sent one after another reach the stream with one inbox read each (plus
    the read when the stream opens): the wake-up's seq tells the hub there is nothing more."""
    _, agents = await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    support = agents["support"]
    alice = await gateway.person("alice")
    stream = support.stream(after=0, heartbeat=30)
    with inbox_reads() as reads:
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)  # the stream is open and waiting
        task = None
        for number in range(5):
            sent = await alice.send("acme.example", f"message {number}", task=task)
            task = sent["task"]
            item = await asyncio.wait_for(first, 10) if number == 0 else await anext(stream)
            assert item["envelope"]["id"] == sent["id"]
        await asyncio.sleep(0.2)  # let the stream go back to waiting
    await stream.aclose()
    assert len(reads) <= 6, f"{len(reads)} inbox reads for 5 items"
