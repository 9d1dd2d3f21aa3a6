"""Per-owner counters ("heads"), bumped inside a transaction.

The upsert takes the head row's lock until commit (PostgreSQL) or runs under SQLite's write
lock, so writers that share a head serialise and their numbers become visible in order: no
reader ever sees a gap that fills in later.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def bump(
    conn: AsyncConnection, table: Table, owner: str, initial: dict[str, Any] | None = None
) -> Any:
    """Increment `table.last_seq` for the row keyed by its first column; return the new row.

    Args:
        conn: The open transaction.
        table: A heads table whose first column is the key and which has `last_seq`.
        owner: The key value.
        initial: Values of other columns for a row created by this call.
    """
    key = table.c[next(iter(table.c.keys()))]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values({key.name: owner, "last_seq": 1, **(initial or {})})
    statement = statement.on_conflict_do_update(
        index_elements=[key], set_={"last_seq": table.c.last_seq + 1}
    ).returning(*table.c)
    return (await conn.execute(statement)).one()
