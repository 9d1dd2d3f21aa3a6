"""Who is registered: brands, agents, their keys, and the hashed bearer tokens."""

from __future__ import annotations

import json
import sqlite3
from collections import namedtuple
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.errors import AddressTaken, BrandExists, NotFound
from gateway.store.database import SqliteEngine
from gateway.store.records import AgentRecord, BrandRecord, KeyRecord, TokenRecord, dumps
from gateway.store.tables import agent_keys, agents, brands, tokens


class Directory:
    """Reads and writes the registry tables. Every method is one short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # Brands ------------------------------------------------------------------------------

    async def create_brand(
        self,
        domain: str,
        display_name: str,
        policy: dict[str, Any],
        admin_token_hash: str,
        now: datetime,
    ) -> BrandRecord:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    brands.insert().values(
                        domain=domain,
                        display_name=display_name,
                        policy=dumps(policy),
                        policy_version=1,
                        created_at=now,
                    )
                )
                await _insert_token(conn, admin_token_hash, "brand_admin", domain, None, now)
        except IntegrityError as exc:
            raise BrandExists(f"the brand {domain} exists already", domain=domain) from exc
        return BrandRecord(domain, display_name, policy, 1, now)

    async def brand(self, domain: str) -> BrandRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(brands).where(brands.c.domain == domain))).first()
        return _brand(row) if row else None

    async def set_policy(self, domain: str, policy: dict[str, Any]) -> BrandRecord:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(brands)
                .where(brands.c.domain == domain)
                .values(policy=dumps(policy), policy_version=brands.c.policy_version + 1)
            )
            if result.rowcount == 0:
                raise NotFound(f"no brand {domain}", domain=domain)
            row = (await conn.execute(select(brands).where(brands.c.domain == domain))).one()
        return _brand(row)

    # Tokens ------------------------------------------------------------------------------

    async def add_token(
        self, token_hash: str, role: str, brand: str | None, subject: str | None, now: datetime
    ) -> None:
        async with self._engine.begin() as conn:
            await _insert_token(conn, token_hash, role, brand, subject, now)

    async def token(self, token_hash: str) -> TokenRecord | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(tokens.c.role, tokens.c.brand, tokens.c.subject).where(
                        and_(tokens.c.token_hash == token_hash, tokens.c.revoked_at.is_(None))
                    )
                )
            ).first()
        return TokenRecord(row.role, row.brand, row.subject) if row else None

    # Agents ------------------------------------------------------------------------------

    async def register_agent(
        self,
        *,
        address: str,
        kind: str,
        brand: str | None,
        display_name: str,
        description: str,
        skills: Sequence[str],
        endpoint_url: str | None,
        keys: Sequence[tuple[str, dict[str, str]]],
        now: datetime,
        endpoint_max_batch: int = 1,
    ) -> AgentRecord:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    agents.insert().values(
                        address=address,
                        kind=kind,
                        brand=brand,
                        display_name=display_name,
                        description=description,
                        skills=dumps(list(skills)),
                        endpoint_url=endpoint_url,
                        endpoint_status="active" if endpoint_url else None,
                        endpoint_max_batch=endpoint_max_batch if endpoint_url else 1,
                        status="active",
                        created_at=now,
                        updated_at=now,
                    )
                )
                for kid, jwk in keys:
                    await conn.execute(
                        agent_keys.insert().values(
                            agent=address, kid=kid, jwk=dumps(jwk), status="active", created_at=now
                        )
                    )
        except IntegrityError as exc:
            raise AddressTaken(
                f"the address {address} is registered already; addresses are never reassigned",
                address=address,
            ) from exc
        # Read back from the database itself, never through a cache: a lookup of this address
        # begun before the INSERT committed could still be on its way with "not there".
        found = await Directory.agent(self, address)
        assert found is not None
        return found

    async def agent(self, address: str) -> AgentRecord | None:
        if isinstance(self._engine, SqliteEngine):
            # The directory cache renews every hot agent once a TTL; through SQLAlchemy that
            # read cost four thread round trips (BEGIN, two SELECTs, ROLLBACK).
            found: AgentRecord | None = await self._engine.read_plain(_agent_sqlite, address)
            return found
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(agents).where(agents.c.address == address))).first()
            if row is None:
                return None
            key_rows = (
                await conn.execute(
                    select(agent_keys)
                    .where(agent_keys.c.agent == address)
                    .order_by(agent_keys.c.created_at, agent_keys.c.kid)
                )
            ).all()
        return _agent(row, key_rows)

    async def brand_agents(self, domain: str) -> list[AgentRecord]:
        """A brand's active agents in registration order."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(agents)
                    .where(
                        and_(
                            agents.c.brand == domain,
                            agents.c.kind == "brand",
                            agents.c.status == "active",
                        )
                    )
                    .order_by(agents.c.id)
                )
            ).all()
        return [_agent(row, ()) for row in rows]

    async def all_brand_agents(
        self, domain: str | None = None, limit: int = 500
    ) -> list[AgentRecord]:
        async with self._engine.connect() as conn:
            query = select(agents).where(
                and_(agents.c.kind == "brand", agents.c.status == "active")
            )
            if domain:
                query = query.where(agents.c.brand == domain)
            rows = (await conn.execute(query.order_by(agents.c.id).limit(limit))).all()
        return [_agent(row, ()) for row in rows]

    async def update_agent(
        self, address: str, changes: dict[str, Any], now: datetime
    ) -> AgentRecord:
        values: dict[str, Any] = {"updated_at": now}
        for name in ("display_name", "description"):
            if name in changes:
                values[name] = changes[name]
        if "skills" in changes:
            values["skills"] = dumps(list(changes["skills"]))
        if "endpoint_url" in changes:
            values["endpoint_url"] = changes["endpoint_url"]
            values["endpoint_status"] = "active" if changes["endpoint_url"] else None
            values["endpoint_note"] = None
            values["endpoint_max_batch"] = changes.get("endpoint_max_batch", 1)
        async with self._engine.begin() as conn:
            await conn.execute(update(agents).where(agents.c.address == address).values(**values))
        found = await Directory.agent(self, address)  # the row as it is now (see register_agent)
        if found is None:
            raise NotFound(f"no agent {address}", address=address)
        return found

    async def disable_endpoint(self, address: str, note: str, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(agents)
                .where(agents.c.address == address)
                .values(endpoint_status="disabled", endpoint_note=note, updated_at=now)
            )

    async def add_key(self, address: str, kid: str, jwk: dict[str, str], now: datetime) -> bool:
        """Add a key; False when that key was already on the agent (nothing changes)."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    agent_keys.insert().values(
                        agent=address, kid=kid, jwk=dumps(jwk), status="active", created_at=now
                    )
                )
        except IntegrityError:
            return False
        return True

    async def revoke_key(self, address: str, kid: str, now: datetime) -> str:
        """Revoke a key; returns the status it had ("active" or "revoked")."""
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    select(agent_keys.c.status).where(
                        and_(agent_keys.c.agent == address, agent_keys.c.kid == kid)
                    )
                )
            ).first()
            if row is None:
                raise NotFound(f"{address} has no key {kid}", address=address, kid=kid)
            if row.status == "active":
                await conn.execute(
                    update(agent_keys)
                    .where(and_(agent_keys.c.agent == address, agent_keys.c.kid == kid))
                    .values(status="revoked", revoked_at=now)
                )
            return str(row.status)

    async def count_agents(self) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(agents))).scalar_one())


async def _insert_token(
    conn: AsyncConnection,
    token_hash: str,
    role: str,
    brand: str | None,
    subject: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        tokens.insert().values(
            token_hash=token_hash, role=role, brand=brand, subject=subject, created_at=now
        )
    )


def _brand(row: Row[Any]) -> BrandRecord:
    return BrandRecord(
        domain=row.domain,
        display_name=row.display_name,
        policy=json.loads(row.policy),
        policy_version=row.policy_version,
        created_at=row.created_at,
    )


def _agent(row: Any, key_rows: Sequence[Any]) -> AgentRecord:
    return AgentRecord(
        address=row.address,
        kind=row.kind,
        brand=row.brand,
        display_name=row.display_name,
        description=row.description,
        skills=tuple(json.loads(row.skills)),
        endpoint_url=row.endpoint_url,
        endpoint_status=row.endpoint_status,
        endpoint_note=row.endpoint_note,
        endpoint_max_batch=int(row.endpoint_max_batch),
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        keys=tuple(
            KeyRecord(k.kid, json.loads(k.jwk), k.status, k.created_at, k.revoked_at)
            for k in key_rows
        ),
    )


class _PlainRows:
    """A SELECT of a whole table as plain sqlite3 SQL, its rows as named tuples with
    SQLAlchemy's own result processors applied (so values match what Core would read)."""

    def __init__(self, table: Any, where: str) -> None:
        dialect = sqlite.dialect()
        names = tuple(column.name for column in table.c)
        selected = ", ".join(f'{table.name}."{name}"' for name in names)
        self.sql = f"SELECT {selected} FROM {table.name} WHERE {where}"
        self._row = namedtuple(f"_{table.name}_row", names)  # type: ignore[misc]
        self._processed = tuple(
            (index, process)
            for index, process in enumerate(
                column.type._cached_result_processor(dialect, None) for column in table.c
            )
            if process is not None
        )

    def row(self, values: Sequence[Any]) -> Any:
        row = list(values)
        for index, process in self._processed:
            row[index] = process(row[index])
        return self._row(*row)


_PLAIN_AGENT = _PlainRows(agents, "agents.address = ?")
_PLAIN_KEYS = _PlainRows(
    agent_keys, "agent_keys.agent = ? ORDER BY agent_keys.created_at, agent_keys.kid"
)


def _agent_sqlite(db: sqlite3.Connection, address: str) -> AgentRecord | None:
    """`Directory.agent` in one plain sqlite3 call: the same two queries in one read
    transaction (one snapshot), the same record."""
    db.execute("BEGIN")
    try:
        row = db.execute(_PLAIN_AGENT.sql, (address,)).fetchone()
        key_rows = db.execute(_PLAIN_KEYS.sql, (address,)).fetchall() if row else []
    finally:
        db.execute("ROLLBACK")
    if row is None:
        return None
    return _agent(_PLAIN_AGENT.row(row), [_PLAIN_KEYS.row(k) for k in key_rows])
