"""Reads and connections of the SQLite thread path: the inbox read in one thread call gives
what the SQLAlchemy query gives, on both backends; a pooled connection left in a transaction
is rolled back on its way back to the pool (the pool's own reset is off: it would roll back
every connection, a thread round trip each)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.store.conversations import Batch, Conversations, EnvelopeWrite, TaskWrite
from gateway.store.database import SqliteEngine, create_engine, migrate, run_in_sqlite_thread
from gateway.store.directory import Directory
from gateway.store.records import TaskRecord
from identity.ids import new_id

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


async def _fill(engine: AsyncEngine) -> None:
    """Bob's inbox: five envelopes, the first four in a task, the last outside any."""
    conversations = Conversations(engine, new_id)
    task = TaskRecord(
        id="tsk_1",
        initiator="alice@people.example",
        responder="bob@people.example",
        brand=None,
        state="working",
        control="agent",
        created_at=NOW,
        updated_at=NOW,
        completed_at=None,
        escalated=False,
        confirmed=False,
        resolved_by=None,
        turns_without_progress=0,
        route_why=None,
    )
    for n in range(5):
        write = EnvelopeWrite(
            sender="alice@people.example",
            envelope_id=f"env-{n}",
            recipient="bob@people.example",
            task_id="tsk_1" if n < 4 else None,
            act="say",
            digest="d" * 64,
            body={"id": f"env-{n}", "text": f"hello {n} ✓"},
            answer=None,
            inbox_for=("bob@people.example",),
        )
        await conversations.commit(
            Batch(
                now=NOW,
                task=TaskWrite(task, None if n == 0 else n) if n < 4 else None,
                envelopes=[write],
            )
        )


async def test_inbox_reads_items_after_a_seq_in_order(engine: AsyncEngine) -> None:
    await _fill(engine)
    conversations = Conversations(engine, new_id)
    items = await conversations.inbox("bob@people.example", 1, 3)
    assert [item.seq for item in items] == [2, 3, 4]
    assert items[0].envelope == {"id": "env-1", "text": "hello 1 ✓"}
    assert items[0].task == {"id": "tsk_1", "state": "working", "control": "agent"}
    rest = await conversations.inbox("bob@people.example", 4, 100)
    assert [(item.seq, item.task) for item in rest] == [(5, None)]
    assert await conversations.inbox("bob@people.example", 5, 100) == []
    assert await conversations.inbox("nobody@people.example", 0, 100) == []


async def test_sqlite_inbox_in_the_thread_equals_the_sqlalchemy_query(tmp_path: Path) -> None:
    fast = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await migrate(fast)
    await _fill(fast)
    plain = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        assert isinstance(fast, SqliteEngine) and not isinstance(plain, SqliteEngine)
        for after, limit in ((0, 100), (2, 2), (5, 10)):
            thread = await Conversations(fast, new_id).inbox("bob@people.example", after, limit)
            query = await Conversations(plain, new_id).inbox("bob@people.example", after, limit)
            assert thread == query
    finally:
        await fast.dispose()
        await plain.dispose()


async def test_a_connection_left_in_a_transaction_is_rolled_back_in_the_pool(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    assert isinstance(engine, SqliteEngine)
    await migrate(engine)
    try:

        def left_open(db: sqlite3.Connection) -> int:
            db.execute("BEGIN")
            db.execute("SELECT count(*) FROM inbox").fetchone()
            return id(db)

        def state(db: sqlite3.Connection) -> tuple[int, bool]:
            return id(db), db.in_transaction

        async with engine.connect() as conn:
            opened = await run_in_sqlite_thread(conn, left_open)
        # One connection in the pool: the next checkout is the same one, rolled back.
        async with engine.connect() as conn:
            assert await run_in_sqlite_thread(conn, state) == (opened, False)
        async with engine.begin() as conn:  # SQLAlchemy's own transactions end as before
            await conn.exec_driver_sql("SELECT 1")
        async with engine.connect() as conn:
            assert await run_in_sqlite_thread(conn, state) == (opened, False)
    finally:
        await engine.dispose()


async def test_thread_calls_reuse_their_connections_and_leave_no_transaction_open(
    tmp_path: Path,
) -> None:
    """Reads and writes in the thread run on connections kept out of the pool: a read that
    left a transaction open, or a write that failed, leaves none behind for the next call;
    concurrent calls get connections of their own; dispose closes them all."""
    before = set(threading.enumerate())
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    assert isinstance(engine, SqliteEngine)
    await migrate(engine)
    seen: set[int] = set()
    try:

        def left_open(db: sqlite3.Connection) -> None:
            seen.add(id(db))
            db.execute("BEGIN")

        def state(db: sqlite3.Connection) -> tuple[int, bool]:
            seen.add(id(db))
            return id(db), db.in_transaction

        def fails(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES ('a', 1)")
            raise ValueError("refused")

        await engine.read_in_thread(left_open)
        first, open_transaction = await engine.read_in_thread(state)
        assert open_transaction is False
        with pytest.raises(ValueError, match="refused"):
            await engine.write_in_thread(fails)
        assert await engine.write_in_thread(state) == (first, True)  # BEGIN IMMEDIATE is on
        assert await engine.read_in_thread(state) == (first, False)

        def count(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT count(*) FROM inbox_heads").fetchone()[0])

        assert await engine.read_in_thread(count) == 0  # the failed write left nothing
        await asyncio.gather(*(engine.read_in_thread(state) for _ in range(6)))
        assert len(seen) > 1
    finally:
        await engine.dispose()
    made = [thread for thread in threading.enumerate() if thread not in before]
    for thread in made:
        thread.join(5)
    assert [thread for thread in made if thread.is_alive()] == []


async def test_a_kept_connection_whose_driver_failed_is_dropped(tmp_path: Path) -> None:
    """A kept connection whose aiosqlite connection was closed under it fails the call it was
    picked for, and is dropped: the next call gets a fresh connection and works, while a
    failure of the work itself (SQLite's own error) keeps the connection."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    assert isinstance(engine, SqliteEngine)
    await migrate(engine)
    try:

        def mark(db: sqlite3.Connection) -> None:
            db.execute("CREATE TEMP TABLE marked (x)")  # a table of this connection only

        def marked(db: sqlite3.Connection) -> bool:
            query = "SELECT count(*) FROM temp.sqlite_master WHERE name = 'marked'"
            return bool(db.execute(query).fetchone()[0])

        def bad_sql(db: sqlite3.Connection) -> None:
            db.execute("SELECT * FROM no_such_table")

        await engine.read_in_thread(mark)
        with pytest.raises(sqlite3.OperationalError):
            await engine.read_in_thread(bad_sql)
        assert await engine.read_in_thread(marked) is True  # SQLite's own error: kept
        [kept] = engine._kept
        driver = (await kept.connection.get_raw_connection()).driver_connection
        await driver.close()  # the aiosqlite connection and its thread are gone
        with pytest.raises(ValueError, match="closed"):
            await engine.read_in_thread(marked)
        assert await engine.read_in_thread(marked) is False  # a fresh connection
        assert await engine.write_in_thread(marked) is False
    finally:
        await engine.dispose()


def test_plain_sqlite_rows_bind_what_core_binds() -> None:
    """The group writer's plain rows (`SqliteRows.params`) hold what SQLAlchemy's own bind
    processor of each column gives, timestamps included: they share one memory of recent
    answers across columns and tables, which must never hand one column's answer for
    another instant, nor mix up equal instants written in other time zones."""
    from datetime import timedelta, timezone

    from sqlalchemy.dialects import sqlite

    from gateway.store import conversations, escalations, timers

    dialect = sqlite.dialect()
    rows = [
        conversations._RAW_TASK,
        conversations._RAW_EVENT,
        conversations._RAW_ENVELOPE,
        conversations._RAW_INBOX,
        conversations._RAW_OUTBOX,
        escalations._RAW_ESCALATION,
        escalations._RAW_MOVE,
        escalations._RAW_EVENT,
        timers._RAW_ARM,
    ]
    samples = {
        "datetime": [
            NOW,
            NOW + timedelta(microseconds=1),
            NOW.astimezone(timezone(timedelta(hours=5, minutes=30))),
            datetime(999, 1, 1, tzinfo=UTC),
            None,
        ],
        "bool": [True, False, None],
        "other": ["text", 7, None],
    }
    for row in rows:
        for turn in range(5):
            values = []
            for name in row.columns:
                column_type = row.table.c[name].type
                python_type = getattr(column_type, "impl", column_type).python_type
                kind = {datetime: "datetime", bool: "bool"}.get(python_type, "other")
                options = samples[kind]
                values.append(options[turn % len(options)])
            expected = tuple(
                value
                if (process := row.table.c[name].type._cached_bind_processor(dialect)) is None
                else process(value)
                for name, value in zip(row.columns, values, strict=True)
            )
            assert row.params(*values) == expected, (row.sql, values)
    with pytest.raises(ValueError):
        conversations._RAW_INBOX.params("bob@people.example", 1)


async def test_the_plain_agent_read_equals_the_sqlalchemy_query(tmp_path: Path) -> None:
    """`Directory.agent` on the SQLite engine reads in one plain sqlite3 call; its record is
    the one the SQLAlchemy query makes: every member, keys in order, a revoked key with its
    time, an endpoint; and an unknown address is None on both."""
    from identity.keys import PrivateKey

    url = f"sqlite+aiosqlite:///{tmp_path / 'plain-agent.db'}"
    engine = create_engine(url)
    await migrate(engine)
    plain = Directory(engine)
    keys = [PrivateKey.from_seed(bytes([seed]) * 32).public for seed in (1, 2, 3)]
    await plain.create_brand("acme.example", "Acme", {}, "hash", NOW)
    await plain.register_agent(
        address="support@acme.example",
        kind="brand",
        brand="acme.example",
        display_name="Support",
        description="Answers questions",
        skills=("billing", "wifi"),
        endpoint_url="https://agent.acme.example/hook",
        keys=[(key.kid, dict(key.jwk)) for key in keys[:2]],
        now=NOW,
    )
    await plain.add_key("support@acme.example", keys[2].kid, dict(keys[2].jwk), NOW)
    await plain.revoke_key("support@acme.example", keys[0].kid, NOW)
    core = create_async_engine(url)
    try:
        through_core = Directory(core)
        for address in ("support@acme.example", "nobody@acme.example"):
            assert await plain.agent(address) == await through_core.agent(address)
        found = await plain.agent("support@acme.example")
        assert found is not None and [key.status for key in found.keys].count("revoked") == 1
    finally:
        await core.dispose()
        await engine.dispose()
