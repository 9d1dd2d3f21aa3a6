"""The SQLite outbox store's hot path (plain sqlite3, `SqliteEngine.write_plain`) does and
stores exactly what its SQLAlchemy statements do: the same calls on two databases, one
through each path, answer the same and leave the same bytes in the tables."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.store.database import SqliteEngine, create_engine, migrate
from gateway.store.outbox import OutboxStore
from gateway.store.outbox_rows import AttemptWrite, OutboxRow
from gateway.store.tables import agents, envelopes, outbox

NOW = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
LATER = NOW + timedelta(seconds=2)


async def _seed(engine: AsyncEngine) -> None:
    """Two agents (one with an endpoint), three envelopes, five pending delivery rows over two
    partitions, the third not due yet."""
    async with engine.begin() as conn:
        for address, url in (("support@acme.example", "https://acme.example/hook"), ("b@x", None)):
            await conn.execute(
                agents.insert().values(
                    address=address,
                    kind="brand",
                    brand=None,
                    display_name=address,
                    description="",
                    skills="[]",
                    endpoint_url=url,
                    endpoint_status="active" if url else None,
                    endpoint_note=None,
                    status="active",
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
        for n in range(3):
            await conn.execute(
                envelopes.insert().values(
                    sender="alice@people.example",
                    envelope_id=f"env-{n}",
                    recipient="support@acme.example",
                    task_id="tsk_1",
                    act="say",
                    digest="d" * 64,
                    body=f'{{"id": "env-{n}", "text": "héllo {n}"}}',
                    answer=None,
                    accepted_at=NOW,
                )
            )
        for n, (partition, due) in enumerate(
            [
                ("support@acme.example", NOW),
                ("b@x", NOW),
                ("support@acme.example", NOW),
                ("b@x", NOW + timedelta(hours=1)),
                ("support@acme.example", NOW),
            ]
        ):
            payload = (
                f'{{"envelope_pk": {n % 3 + 1}, "agent": "{partition}",'
                ' "task": {"id": "tsk_1", "state": "working", "control": "agent"}}'
            )
            await conn.execute(
                outbox.insert().values(
                    public_id=f"dlv_{n}",
                    kind="delivery",
                    partition=partition,
                    payload=payload if n != 1 else '{"other": true}',
                    status="pending",
                    attempts=0,
                    next_attempt_at=due,
                    created_at=NOW - timedelta(minutes=n),
                    updated_at=NOW,
                    task_id="tsk_1",
                )
            )


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """The gateway's SQLite engine (plain sqlite3 path) and a plain SQLAlchemy engine (statement
    path), each on a database of its own with the same rows."""
    fast = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'fast.db'}")
    plain = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}")
    assert isinstance(fast, SqliteEngine) and not isinstance(plain, SqliteEngine)
    for engine in (fast, plain):
        await migrate(engine)
        await _seed(engine)
    yield fast, plain
    await fast.dispose()
    await plain.dispose()


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as db:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY pk").fetchall()
            for table in ("outbox", "outbox_attempts")
        }


async def _script(store: OutboxStore) -> list[Any]:
    """Every hot-path call, in an order that meets each of their branches."""
    seen: list[Any] = []
    first = await store.claim_head("delivery", "support@acme.example", "r1", NOW, 30)
    seen.append(first)
    seen.append(await store.claim_head("delivery", "support@acme.example", "r2", NOW, 30))
    seen.append(await store.claim_woken("delivery", 4, "r1", NOW, 30))  # b@x's head: row 2
    seen.append(await store.claim_woken("delivery", 4, "r1", NOW, 30))  # leased now
    seen.append(await store.claim_woken("notification", 3, "r1", NOW, 30))  # other kind
    seen.append(await store.partition_of(3))
    seen.append(await store.partition_of(999))
    assert isinstance(first, OutboxRow)
    retry = AttemptWrite(LATER, "retry", 503, "HTTP 503", None, 12, "pending", LATER, "HTTP 503")
    seen.append(await store.record(first, "r2", retry))  # not r2's lease: kept False
    seen.append(await store.record(first, "r1", retry, claim_next_s=30))  # same head, not due
    ok = AttemptWrite(LATER, "ok", 200, None, "reply accepted: x", 7, "delivered", LATER, None)
    later = LATER + timedelta(seconds=61)  # r1's lease on row 1 (if any) has run out
    again = await store.claim_head("delivery", "support@acme.example", "r1", later, 30)
    seen.append(again)
    assert isinstance(again, OutboxRow)
    following = await store.record(again, "r1", ok, claim_next_s=30)
    seen.append(following)
    seen.append(await store.partition_of(1))
    # The row after a held one: claimed ahead, then past it while recording.
    held = following[1]
    assert isinstance(held, OutboxRow)
    soon = LATER + timedelta(seconds=1)  # held's lease (from LATER) still runs
    ahead = await store.claim_after(held, "r1", soon, 30)
    seen.append(ahead)
    seen.append(await store.claim_after(held, "r2", soon, 30))
    seen.append(await store.claim_after(held, "r1", later, 30))  # held's lease ran out
    assert isinstance(ahead, OutboxRow)
    seen.append(await store.record(held, "r1", ok, claim_next_s=30, after=ahead.pk))
    seen.append(await store.claim_after(ahead, "r1", soon, 30))
    return seen


async def test_the_plain_sqlite3_path_answers_and_stores_what_sqlalchemy_does(
    pair: tuple[AsyncEngine, AsyncEngine], tmp_path: Path
) -> None:
    fast, plain = pair
    fast_seen = await _script(OutboxStore(fast))
    plain_seen = await _script(OutboxStore(plain))
    assert fast_seen == plain_seen
    following = fast_seen[10][1]
    assert following is not None and following.public_id == "dlv_2"  # the next head, claimed
    assert fast_seen[12] is not None and fast_seen[12].public_id == "dlv_4"  # after dlv_2
    assert fast_seen[13:] == [None, None, (True, None), None]
    assert following.target is not None and following.target.envelope["text"] == "héllo 2"
    assert following.created_at.tzinfo is not None
    assert fast_seen[2].target is None  # a row naming no envelope has no target
    assert _dump(tmp_path / "fast.db") == _dump(tmp_path / "plain.db")
    # The stored times are what SQLAlchemy writes, so its range comparisons still hold.
    assert _dump(tmp_path / "fast.db")["outbox_attempts"][0][2] == "2025-03-04 05:06:09.891011"
