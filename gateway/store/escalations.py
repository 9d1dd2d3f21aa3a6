"""Escalations and their events: the rows operators work on and channels hear about.

Writes are `Batch.extra` items, so an escalation opens, moves and announces itself in the
same transaction as the envelope or operator action that caused it. An event is written once,
with one outbox row of kind `notification` per active channel of the brand that wants it
(partition = the channel id): a notification can never be sent for an event that was not
committed, nor be written twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.clock import iso
from gateway.store.conversations import OutboxWrite, SqliteRows
from gateway.store.heads import bump
from gateway.store.records import dumps
from gateway.store.tables import channels, escalation_events, escalation_heads, escalations

_RAW_ESCALATION = SqliteRows(
    escalations,
    (
        "id",
        "task_id",
        "brand",
        "state",
        "reason",
        "reason_text",
        "rule",
        "priority",
        "summary",
        "claimed_by",
        "created_at",
        "updated_at",
        "closed_at",
    ),
)
_RAW_MOVE = SqliteRows(escalations, ("state", "claimed_by", "updated_at", "closed_at"))
_RAW_EVENT = SqliteRows(
    escalation_events, ("brand", "seq", "id", "kind", "escalation_id", "body", "at")
)
_RAW_BUMP = (
    "INSERT INTO escalation_heads (brand, last_seq) VALUES (?, 1) ON CONFLICT (brand)"
    " DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq"
)


class EscalationMoved(Exception):
    """The escalation changed between read and guarded write (another operator won)."""


@dataclass(frozen=True, slots=True)
class EscalationRecord:
    id: str
    task_id: str
    brand: str
    state: str
    reason: str
    reason_text: str
    rule: str
    priority: str
    summary: str
    claimed_by: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None

    def view(self) -> dict[str, Any]:
        """The escalation as PROTOCOL section 5 shows it (plus rule and times)."""
        return {
            "id": self.id,
            "task": self.task_id,
            "brand": self.brand,
            "state": self.state,
            "reason": self.reason,
            "reason_text": self.reason_text,
            "rule": self.rule,
            "priority": self.priority,
            "summary": self.summary,
            "claimed_by": self.claimed_by,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "closed_at": iso(self.closed_at) if self.closed_at else None,
        }


@dataclass(frozen=True, slots=True)
class EventRecord:
    brand: str
    seq: int
    id: str
    kind: str
    escalation_id: str
    body: dict[str, Any]

    def view(self) -> dict[str, Any]:
        return {**self.body, "seq": self.seq}


@dataclass(frozen=True, slots=True)
class OpenEscalation:
    """Insert a new escalation."""

    record: EscalationRecord

    async def apply(self, conn: AsyncConnection, now: datetime) -> list[OutboxWrite]:
        r = self.record
        await conn.execute(
            escalations.insert().values(
                id=r.id,
                task_id=r.task_id,
                brand=r.brand,
                state=r.state,
                reason=r.reason,
                reason_text=r.reason_text,
                rule=r.rule,
                priority=r.priority,
                summary=r.summary,
                claimed_by=r.claimed_by,
                created_at=r.created_at,
                updated_at=r.updated_at,
                closed_at=r.closed_at,
            )
        )
        return []

    def apply_sqlite(self, db: sqlite3.Connection, now: datetime) -> list[OutboxWrite]:
        """`apply` on the plain sqlite3 connection, inside the group writer's one call."""
        r = self.record
        db.execute(
            _RAW_ESCALATION.sql,
            _RAW_ESCALATION.params(
                r.id,
                r.task_id,
                r.brand,
                r.state,
                r.reason,
                r.reason_text,
                r.rule,
                r.priority,
                r.summary,
                r.claimed_by,
                r.created_at,
                r.updated_at,
                r.closed_at,
            ),
        )
        return []


@dataclass(frozen=True, slots=True)
class MoveEscalation:
    """Move an escalation from the (state, holder) it was read in; lose to any other change."""

    id: str
    was_state: str
    was_holder: str | None
    state: str
    holder: str | None
    closed: bool = False

    async def apply(self, conn: AsyncConnection, now: datetime) -> list[OutboxWrite]:
        holder = escalations.c.claimed_by
        result = await conn.execute(
            update(escalations)
            .where(
                and_(
                    escalations.c.id == self.id,
                    escalations.c.state == self.was_state,
                    holder.is_(None) if self.was_holder is None else holder == self.was_holder,
                )
            )
            .values(
                state=self.state,
                claimed_by=self.holder,
                updated_at=now,
                closed_at=now if self.closed else None,
            )
        )
        if result.rowcount != 1:
            raise EscalationMoved(self.id)
        return []

    def apply_sqlite(self, db: sqlite3.Connection, now: datetime) -> list[OutboxWrite]:
        """`apply` on the plain sqlite3 connection, inside the group writer's one call."""
        values = _RAW_MOVE.params(self.state, self.holder, now, now if self.closed else None)
        holder = "claimed_by IS NULL" if self.was_holder is None else "claimed_by = ?"
        cursor = db.execute(
            "UPDATE escalations SET state = ?, claimed_by = ?, updated_at = ?, closed_at = ?"
            f" WHERE id = ? AND state = ? AND {holder}",
            (
                *values,
                self.id,
                self.was_state,
                *(() if self.was_holder is None else (self.was_holder,)),
            ),
        )
        if cursor.rowcount != 1:
            raise EscalationMoved(self.id)
        return []


@dataclass(frozen=True, slots=True)
class AppendEvent:
    """Record an escalation event (next seq of the brand's stream) and fan it out to channels."""

    brand: str
    id: str
    kind: str
    escalation_id: str
    body: dict[str, Any]
    new_id: Callable[[str], str]

    async def apply(self, conn: AsyncConnection, now: datetime) -> list[OutboxWrite]:
        head = await bump(conn, escalation_heads, self.brand)
        await conn.execute(
            escalation_events.insert().values(
                brand=self.brand,
                seq=int(head.last_seq),
                id=self.id,
                kind=self.kind,
                escalation_id=self.escalation_id,
                body=dumps(self.body),
                at=now,
            )
        )
        rows = (
            await conn.execute(
                select(channels.c.id, channels.c.events).where(
                    and_(channels.c.brand == self.brand, channels.c.status == "active")
                )
            )
        ).all()
        return self._notifications([(row.id, row.events) for row in rows])

    def apply_sqlite(self, db: sqlite3.Connection, now: datetime) -> list[OutboxWrite]:
        """`apply` on the plain sqlite3 connection, inside the group writer's one call."""
        (seq,) = db.execute(_RAW_BUMP, (self.brand,)).fetchone()
        db.execute(
            _RAW_EVENT.sql,
            _RAW_EVENT.params(
                self.brand,
                int(seq),
                self.id,
                self.kind,
                self.escalation_id,
                dumps(self.body),
                now,
            ),
        )
        rows = db.execute(
            "SELECT id, events FROM channels WHERE brand = ? AND status = 'active'",
            (self.brand,),
        ).fetchall()
        return self._notifications(rows)

    def _notifications(self, rows: list[tuple[str, str]]) -> list[OutboxWrite]:
        return [
            OutboxWrite(
                public_id=self.new_id("ntf"),
                kind="notification",
                partition=channel,
                payload={"channel": channel, "event": self.body},
            )
            for channel, events in rows
            if self.kind in json.loads(events)
        ]


class Escalations:
    """Reads of escalations and the brand's event stream."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, escalation_id: str) -> EscalationRecord | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(escalations).where(escalations.c.id == escalation_id))
            ).first()
        return _escalation(row) if row else None

    async def for_brand(
        self, brand: str | None, state: str | None = None, limit: int = 200
    ) -> list[EscalationRecord]:
        query = select(escalations)
        if brand is not None:
            query = query.where(escalations.c.brand == brand)
        if state is not None:
            query = query.where(escalations.c.state == state)
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(query.order_by(escalations.c.created_at.desc()).limit(limit))
            ).all()
        return [_escalation(row) for row in rows]

    async def for_task(self, task_id: str) -> list[EscalationRecord]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(escalations)
                    .where(escalations.c.task_id == task_id)
                    .order_by(escalations.c.created_at)
                )
            ).all()
        return [_escalation(row) for row in rows]

    async def live_for_task(self, task_id: str) -> EscalationRecord | None:
        """The task's escalation that is still open or claimed, if any."""
        found = [e for e in await self.for_task(task_id) if e.state in ("open", "claimed")]
        return found[-1] if found else None

    async def events(self, brand: str, after: int, limit: int = 100) -> list[EventRecord]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(escalation_events)
                    .where(
                        and_(escalation_events.c.brand == brand, escalation_events.c.seq > after)
                    )
                    .order_by(escalation_events.c.seq)
                    .limit(limit)
                )
            ).all()
        return [
            EventRecord(
                brand=row.brand,
                seq=int(row.seq),
                id=row.id,
                kind=row.kind,
                escalation_id=row.escalation_id,
                body=json.loads(row.body),
            )
            for row in rows
        ]


def _escalation(row: Row[Any]) -> EscalationRecord:
    return EscalationRecord(
        id=row.id,
        task_id=row.task_id,
        brand=row.brand,
        state=row.state,
        reason=row.reason,
        reason_text=row.reason_text,
        rule=row.rule,
        priority=row.priority,
        summary=row.summary,
        claimed_by=row.claimed_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        closed_at=row.closed_at,
    )
