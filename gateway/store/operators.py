"""Operators: a brand's humans, with the hashed token that lets them in (shown once)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clock import iso
from gateway.errors import AddressTaken
from gateway.store.records import dumps
from gateway.store.tables import agents, operators, tokens


@dataclass(frozen=True, slots=True)
class OperatorRecord:
    address: str
    brand: str
    handle: str
    display_name: str
    email: str | None
    skills: tuple[str, ...]
    created_at: datetime

    def view(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "brand": self.brand,
            "handle": self.handle,
            "display_name": self.display_name,
            "email": self.email,
            "skills": list(self.skills),
            "created_at": iso(self.created_at),
        }


class Operators:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(
        self,
        *,
        address: str,
        brand: str,
        handle: str,
        display_name: str,
        email: str | None,
        skills: Sequence[str],
        token_hash: str,
        now: datetime,
    ) -> OperatorRecord:
        """Add an operator and its token in one transaction.

        Raises:
            AddressTaken: An agent or operator holds the address already (never reassigned).
        """
        taken = AddressTaken(
            f"the address {address} is registered already; choose another handle",
            address=address,
        )
        try:
            async with self._engine.begin() as conn:
                agent = (
                    await conn.execute(select(agents.c.id).where(agents.c.address == address))
                ).first()
                if agent is not None:
                    raise taken
                await conn.execute(
                    operators.insert().values(
                        address=address,
                        brand=brand,
                        handle=handle,
                        display_name=display_name,
                        email=email,
                        skills=dumps(list(skills)),
                        created_at=now,
                    )
                )
                await conn.execute(
                    tokens.insert().values(
                        token_hash=token_hash,
                        role="operator",
                        brand=brand,
                        subject=address,
                        created_at=now,
                    )
                )
        except IntegrityError as exc:
            raise taken from exc
        return OperatorRecord(address, brand, handle, display_name, email, tuple(skills), now)

    async def get(self, address: str) -> OperatorRecord | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(operators).where(operators.c.address == address))
            ).first()
        return _operator(row) if row else None

    async def for_brand(self, brand: str) -> list[OperatorRecord]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(operators)
                    .where(operators.c.brand == brand)
                    .order_by(operators.c.address)
                )
            ).all()
        return [_operator(row) for row in rows]


def _operator(row: Row[Any]) -> OperatorRecord:
    return OperatorRecord(
        address=row.address,
        brand=row.brand,
        handle=row.handle,
        display_name=row.display_name,
        email=row.email,
        skills=tuple(json.loads(row.skills)),
        created_at=row.created_at,
    )
