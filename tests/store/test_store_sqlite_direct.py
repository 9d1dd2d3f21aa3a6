"""The SQLite hot path in the event loop's own thread (`SqliteEngine.write_plain`,
`read_plain`): one plain connection, no thread round trip, never waiting on a lock (a database
locked by another process sends the call to a database thread, where it waits), and
checkpoints left to a database thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.store import database
from gateway.store.database import SqliteEngine, create_engine, migrate


async def _engine(path: Path) -> SqliteEngine:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    assert isinstance(engine, SqliteEngine)
    await migrate(engine)
    return engine


def _heads(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM inbox_heads").fetchone()[0])


async def test_plain_calls_run_in_the_loop_thread_on_one_connection(tmp_path: Path) -> None:
    engine = await _engine(tmp_path / "store.db")
    seen: list[tuple[int, int, bool]] = []
    try:

        def write(db: sqlite3.Connection, agent: str) -> None:
            seen.append((threading.get_ident(), id(db), db.in_transaction))
            db.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES (?, 1)", (agent,))

        def fails(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES ('c', 1)")
            raise ValueError("refused")

        def read(db: sqlite3.Connection) -> int:
            seen.append((threading.get_ident(), id(db), db.in_transaction))
            return _heads(db)

        await engine.write_plain(write, "a")
        with pytest.raises(ValueError, match="refused"):
            await engine.write_plain(fails)
        with pytest.raises(sqlite3.IntegrityError):  # SQLite's own failure: rolled back too
            await engine.write_plain(write, "a")
        await engine.write_plain(write, "b")
        assert await engine.read_plain(read) == 2  # a and b; neither failure left a row
        loop_thread = threading.get_ident()
        assert {thread for thread, _, _ in seen} == {loop_thread}
        assert len({db for _, db, _ in seen}) == 1
        assert [open_ for _, _, open_ in seen] == [True, True, True, False]
    finally:
        await engine.dispose()


async def test_a_database_locked_by_another_process_sends_the_write_to_a_thread(
    tmp_path: Path,
) -> None:
    """Another connection holds the write lock (as another process would): the write waits in
    a database thread, the event loop goes on meanwhile (reads included), and the write lands
    once the lock is released."""
    path = tmp_path / "store.db"
    engine = await _engine(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await engine.read_plain(_heads)  # the direct connection exists
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES ('other', 1)")
        threads: list[int] = []

        def write(db: sqlite3.Connection) -> None:
            threads.append(threading.get_ident())
            db.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES ('mine', 1)")

        pending = asyncio.create_task(engine.write_plain(write))
        ticks = 0
        for _ in range(20):  # the loop is free while the write waits for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert not pending.done()
        assert await engine.read_plain(_heads) == 0  # reads do not wait for the lock
        other.execute("COMMIT")
        await asyncio.wait_for(pending, 10)
        assert ticks == 20
        assert threads and threads[0] != threading.get_ident()
        assert await engine.read_plain(_heads) == 2
    finally:
        other.close()
        await engine.dispose()


async def test_checkpoints_run_in_a_database_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct connection never checkpoints (its commits stay in the WAL, the database
    file does not grow); every `_CHECKPOINT_EVERY` commits a passive checkpoint copies the
    WAL into the database file."""
    monkeypatch.setattr(database, "_CHECKPOINT_EVERY", 50)
    path = tmp_path / "store.db"
    engine = await _engine(path)
    try:
        await engine.read_in_thread(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        size = path.stat().st_size

        def write(db: sqlite3.Connection, n: int) -> None:
            db.execute(
                "INSERT INTO inbox_heads (agent, last_seq) VALUES (?, 1)", (f"{n:04d}" * 500,)
            )

        for n in range(49):
            await engine.write_plain(write, n)
        assert engine._checkpoint is None
        assert path.stat().st_size == size  # 49 commits, about 100 KB, all in the WAL
        await engine.write_plain(write, 49)
        checkpoint = engine._checkpoint
        assert checkpoint is not None
        await checkpoint
        assert path.stat().st_size > size + 50 * 2000
        assert await engine.read_plain(_heads) == 50
    finally:
        await engine.dispose()


async def test_a_database_in_memory_is_written_in_its_thread() -> None:
    """A database in memory is seen by its one connection only: no direct connection."""
    engine = create_engine("sqlite+aiosqlite://")
    assert isinstance(engine, SqliteEngine)
    try:
        threads: list[int] = []

        def work(db: sqlite3.Connection) -> int:
            threads.append(threading.get_ident())
            return int(db.execute("SELECT 1").fetchone()[0])

        assert await engine.write_plain(work) == 1
        assert await engine.read_plain(work) == 1
        assert threading.get_ident() not in threads
        assert engine._direct is None
    finally:
        await engine.dispose()


async def test_the_wal_starts_again_after_each_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes keep coming while checkpoints run: the WAL is still reused from its start (a
    checkpoint racing the writer never copies all of it, and the WAL grew without end)."""
    monkeypatch.setattr(database, "_CHECKPOINT_EVERY", 20)
    path = tmp_path / "store.db"
    wal = path.with_name("store.db-wal")
    engine = await _engine(path)
    try:

        def write(db: sqlite3.Connection, n: int) -> None:
            db.execute(
                "INSERT INTO inbox_heads (agent, last_seq) VALUES (?, 1)", (f"{n:05d}" * 800,)
            )

        async def writer(first: int) -> None:
            for n in range(first, first + 200):
                await engine.write_plain(write, n)
                await asyncio.sleep(0)  # as between requests: the checkpoint gets its turn

        await asyncio.gather(*(writer(k * 1000) for k in range(4)))  # 800 commits of 4 KB
        first = wal.stat().st_size  # the most the WAL held at once so far
        for round_ in range(1, 5):  # four times as many again
            await asyncio.gather(*(writer((4 * round_ + k) * 1000) for k in range(4)))
        # Reused, its longest stays near the first round's; never reused, it is five times it.
        assert wal.stat().st_size < first * 2.5
        assert await engine.read_plain(_heads) == 4000
    finally:
        await engine.dispose()
