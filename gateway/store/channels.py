"""A brand's notification channels: where escalation events go (webhook, slack, email)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clock import iso
from gateway.store.records import dumps
from gateway.store.tables import channels


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    id: str
    brand: str
    kind: str  # "webhook", "slack" or "email"
    target: str  # a URL, or an email address
    events: tuple[str, ...]
    status: str  # "active" or "disabled"
    note: str | None
    created_at: datetime

    def view(self) -> dict[str, Any]:
        target = "url" if self.kind in ("webhook", "slack") else "to"
        return {
            "id": self.id,
            "kind": self.kind,
            target: self.target,
            "events": list(self.events),
            "status": self.status,
            "note": self.note,
            "created_at": iso(self.created_at),
        }


class Channels:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(
        self,
        *,
        channel_id: str,
        brand: str,
        kind: str,
        target: str,
        events: Sequence[str],
        now: datetime,
    ) -> ChannelRecord:
        async with self._engine.begin() as conn:
            await conn.execute(
                channels.insert().values(
                    id=channel_id,
                    brand=brand,
                    kind=kind,
                    target=target,
                    events=dumps(list(events)),
                    status="active",
                    created_at=now,
                )
            )
        return ChannelRecord(channel_id, brand, kind, target, tuple(events), "active", None, now)

    async def get(self, channel_id: str) -> ChannelRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(channels).where(channels.c.id == channel_id))).first()
        return _channel(row) if row else None

    async def for_brand(self, brand: str) -> list[ChannelRecord]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(channels)
                    .where(channels.c.brand == brand)
                    .order_by(channels.c.created_at)
                )
            ).all()
        return [_channel(row) for row in rows]

    async def remove(self, brand: str, channel_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(channels).where(and_(channels.c.id == channel_id, channels.c.brand == brand))
            )
        return bool(result.rowcount)

    async def disable(self, channel_id: str, note: str) -> None:
        """The receiver said 410 Gone: stop sending until an admin adds the channel again."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(channels)
                .where(channels.c.id == channel_id)
                .values(status="disabled", note=note)
            )


def _channel(row: Row[Any]) -> ChannelRecord:
    return ChannelRecord(
        id=row.id,
        brand=row.brand,
        kind=row.kind,
        target=row.target,
        events=tuple(json.loads(row.events)),
        status=row.status,
        note=row.note,
        created_at=row.created_at,
    )
