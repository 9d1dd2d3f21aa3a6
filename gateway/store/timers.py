"""Durable timers: one row per (kind, key), due at an instant, fired exactly once.

A runner *leases* a due timer with a guarded UPDATE (so two runners never work the same one)
and the handler *fires* it inside the transaction that carries its effects (`FireTimer`, a
`Batch.extra` item guarded by the lease): either the effects and the `fired_at` mark commit
together, or neither does and the lease runs out so another runner tries again. Re-arming a
timer (the same kind and key) moves its instant and clears both marks.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.store.conversations import OutboxWrite, SqliteRows
from gateway.store.records import dumps
from gateway.store.tables import timers

_RAW_ARM = SqliteRows(
    timers,
    ("kind", "key", "due_at", "data", "created_at"),
    ' ON CONFLICT (kind, "key") DO UPDATE SET due_at = excluded.due_at, data = excluded.data,'
    " fired_at = NULL, lease = NULL, lease_until = NULL",
)


class TimerLost(Exception):
    """The timer was fired, re-armed or disarmed by someone else while this runner held it."""


@dataclass(frozen=True, slots=True)
class TimerRecord:
    pk: int
    kind: str
    key: str
    due_at: datetime
    fired_at: datetime | None
    lease: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ArmTimer:
    """Set (kind, key) to go off at `due_at`, replacing any earlier setting."""

    kind: str
    key: str
    due_at: datetime
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def row(self) -> tuple[str, str, str]:
        return ("timers", self.kind, self.key)

    @classmethod
    async def apply_together(
        cls, conn: AsyncConnection, writes: list[tuple[ArmTimer, datetime]]
    ) -> None:
        """Several `apply`s of distinct timers as one multi-row upsert. PostgreSQL only: its
        group writer (and `apply` there) is the only caller; SQLite arms through `apply` or
        `apply_sqlite`."""
        await conn.execute(
            _ARM_MANY,
            [
                {
                    "kind": write.kind,
                    "key": write.key,
                    "due_at": write.due_at,
                    "data": dumps(write.data),
                    "created_at": now,
                }
                for write, now in writes
            ],
        )

    async def apply(self, conn: AsyncConnection, now: datetime) -> list[OutboxWrite]:
        if conn.dialect.name == "postgresql":
            await ArmTimer.apply_together(conn, [(self, now)])
            return []
        values = {"due_at": self.due_at, "data": dumps(self.data)}
        statement = sqlite.insert(timers).values(
            kind=self.kind, key=self.key, created_at=now, **values
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[timers.c.kind, timers.c.key],
                set_={**values, "fired_at": None, "lease": None, "lease_until": None},
            )
        )
        return []

    def apply_sqlite(self, db: sqlite3.Connection, now: datetime) -> list[OutboxWrite]:
        """`apply` on the plain sqlite3 connection, inside the group writer's one call."""
        db.execute(
            _RAW_ARM.sql,
            _RAW_ARM.params(self.kind, self.key, self.due_at, dumps(self.data), now),
        )
        return []


@dataclass(frozen=True, slots=True)
class DisarmTimer:
    """Forget (kind, key): what it waited for happened."""

    kind: str
    key: str

    @property
    def row(self) -> tuple[str, str, str]:
        return ("timers", self.kind, self.key)

    @classmethod
    async def apply_together(
        cls, conn: AsyncConnection, writes: list[tuple[DisarmTimer, datetime]]
    ) -> None:
        """Several `apply`s as one statement (pipelined parameter sets)."""
        await conn.execute(
            _DISARM, [{"disarm_kind": write.kind, "disarm_key": write.key} for write, _ in writes]
        )

    async def apply(self, conn: AsyncConnection, now: datetime) -> list[OutboxWrite]:
        await conn.execute(_DISARM, {"disarm_kind": self.kind, "disarm_key": self.key})
        return []

    def apply_sqlite(self, db: sqlite3.Connection, now: datetime) -> list[OutboxWrite]:
        """`apply` on the plain sqlite3 connection, inside the group writer's one call."""
        db.execute(
            'DELETE FROM timers WHERE kind = ? AND "key" = ? AND fired_at IS NULL',
            (self.kind, self.key),
        )
        return []


@dataclass(frozen=True, slots=True)
class FireTimer:
    """Mark a leased timer fired, in the transaction of its effects; lose to any change."""

    pk: int
    lease: str

    async def apply(self, conn: AsyncConnection, now: datetime) -> list[OutboxWrite]:
        result = await conn.execute(
            update(timers)
            .where(
                and_(
                    timers.c.pk == self.pk,
                    timers.c.lease == self.lease,
                    timers.c.fired_at.is_(None),
                )
            )
            .values(fired_at=now)
        )
        if result.rowcount != 1:
            raise TimerLost(str(self.pk))
        return []


def _arm_many() -> Any:
    statement = postgresql.insert(timers)
    return statement.on_conflict_do_update(
        index_elements=[timers.c.kind, timers.c.key],
        set_={
            "due_at": statement.excluded.due_at,
            "data": statement.excluded.data,
            "fired_at": None,
            "lease": None,
            "lease_until": None,
        },
    )


_ARM_MANY = _arm_many()  # built once: the rows come as parameter sets
_DISARM = delete(timers).where(
    and_(
        timers.c.kind == bindparam("disarm_kind"),
        timers.c.key == bindparam("disarm_key"),
        timers.c.fired_at.is_(None),
    )
)


class Timers:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def due(self, now: datetime, limit: int = 100) -> list[TimerRecord]:
        """Timers due by `now`, not fired, and not leased by a live runner; earliest first."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(timers)
                    .where(
                        and_(
                            timers.c.fired_at.is_(None),
                            timers.c.due_at <= now,
                            or_(timers.c.lease_until.is_(None), timers.c.lease_until < now),
                        )
                    )
                    .order_by(timers.c.due_at, timers.c.pk)
                    .limit(limit)
                )
            ).all()
        return [_timer(row) for row in rows]

    async def lease(self, timer: TimerRecord, now: datetime, seconds: float) -> str | None:
        """Take the timer for `seconds`; None when another runner has it or it moved."""
        token = secrets.token_hex(8)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(timers)
                .where(
                    and_(
                        timers.c.pk == timer.pk,
                        timers.c.fired_at.is_(None),
                        timers.c.due_at == timer.due_at,
                        or_(timers.c.lease_until.is_(None), timers.c.lease_until < now),
                    )
                )
                .values(lease=token, lease_until=now + timedelta(seconds=seconds))
            )
        return token if result.rowcount == 1 else None

    async def get(self, kind: str, key: str) -> TimerRecord | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(timers).where(and_(timers.c.kind == kind, timers.c.key == key))
                )
            ).first()
        return _timer(row) if row else None


def _timer(row: Row[Any]) -> TimerRecord:
    return TimerRecord(
        pk=int(row.pk),
        kind=row.kind,
        key=row.key,
        due_at=row.due_at,
        fired_at=row.fired_at,
        lease=row.lease,
        data=json.loads(row.data),
    )
