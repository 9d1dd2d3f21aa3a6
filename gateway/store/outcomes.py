"""The outcome ledger's rows: appended in the transaction that ends (or reopens) a task.

The brand's head row (`outcome_heads`) holds the last seq and hash; bumping it locks it until
commit, so entries of one brand are chained strictly one after another, whatever replica
writes them. Entries are never updated or deleted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.clock import iso
from gateway.ledger import GENESIS, seal
from gateway.store.conversations import OutboxWrite
from gateway.store.heads import bump
from gateway.store.records import dumps
from gateway.store.tables import outcome_heads, outcomes
from identity.keys import PrivateKey


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """Append one entry to `brand`'s ledger, chained to the previous one and signed."""

    brand: str
    task: str
    agent: str
    outcome: str
    resolved_by: str | None
    escalated: bool
    confirmed: bool
    at: datetime
    key: PrivateKey

    async def apply(self, conn: AsyncConnection, now: datetime) -> list[OutboxWrite]:
        head = await bump(conn, outcome_heads, self.brand, {"last_hash": GENESIS})
        entry = seal(
            {
                "brand": self.brand,
                "seq": int(head.last_seq),
                "task": self.task,
                "agent": self.agent,
                "outcome": self.outcome,
                "resolved_by": self.resolved_by,
                "escalated": self.escalated,
                "confirmed": self.confirmed,
                "at": iso(self.at),
                "prev_hash": head.last_hash,
            },
            self.key,
        )
        await conn.execute(
            outcomes.insert().values(
                brand=self.brand,
                seq=entry["seq"],
                task_id=self.task,
                agent=self.agent,
                outcome=self.outcome,
                resolved_by=self.resolved_by,
                escalated=self.escalated,
                confirmed=self.confirmed,
                at=entry["at"],
                prev_hash=entry["prev_hash"],
                hash=entry["hash"],
                sig=dumps(entry["sig"]),
            )
        )
        await conn.execute(
            update(outcome_heads)
            .where(outcome_heads.c.brand == self.brand)
            .values(last_hash=entry["hash"])
        )
        return []


class Outcomes:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def entries(
        self, brand: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The brand's entries in seq order, `at` within [since, until)."""
        query = select(outcomes).where(outcomes.c.brand == brand)
        if since is not None:
            query = query.where(outcomes.c.at >= iso(since))
        if until is not None:
            query = query.where(outcomes.c.at < iso(until))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(outcomes.c.seq))).all()
        return [_entry(row) for row in rows]

    async def for_task(self, task_id: str) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(outcomes).where(outcomes.c.task_id == task_id).order_by(outcomes.c.seq)
                )
            ).all()
        return [_entry(row) for row in rows]


def _entry(row: Row[Any]) -> dict[str, Any]:
    return {
        "brand": row.brand,
        "seq": int(row.seq),
        "task": row.task_id,
        "agent": row.agent,
        "outcome": row.outcome,
        "resolved_by": row.resolved_by,
        "escalated": bool(row.escalated),
        "confirmed": bool(row.confirmed),
        "at": row.at,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
        "sig": json.loads(row.sig),
    }
