"""The SQLite hot path in the event loop's own thread (`SqliteEngine.write_plain`,
`read_plain`): plain connections (one for writes, one for reads), no thread round trip but a
write's COMMIT, which goes to the committer's thread, never waiting on a lock (a database
locked by another process sends the call to a database thread, where it waits), and
checkpoints left to a database thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.store import database
from gateway.store.conversations import Batch, Conversations, EnvelopeWrite
from gateway.store.database import SqliteEngine, create_engine, migrate
from identity.ids import new_id

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


async def _engine(path: Path) -> SqliteEngine:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    assert isinstance(engine, SqliteEngine)
    await migrate(engine)
    return engine


def _heads(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM inbox_heads").fetchone()[0])


def _trace_commits(db: sqlite3.Connection, commits: list[int]) -> None:
    """From now on, note in `commits` the thread of each COMMIT run on `db`."""
    db.set_trace_callback(
        lambda sql: commits.append(threading.get_ident()) if sql == "COMMIT" else None
    )


async def test_plain_calls_run_in_the_loop_thread_and_commits_beside_it(tmp_path: Path) -> None:
    """Writes share one connection and reads another, both used in the event loop's thread;
    a write's COMMIT runs there too, or in the committer's thread when it asks for that
    (`commit_aside`, traced on the connection)."""
    engine = await _engine(tmp_path / "store.db")
    seen: list[tuple[int, int, bool]] = []
    commits: list[int] = []  # the thread of each COMMIT on the writes' connection
    try:

        def write(db: sqlite3.Connection, agent: str) -> None:
            if not seen:
                _trace_commits(db, commits)
            seen.append((threading.get_ident(), id(db), db.in_transaction))
            db.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES (?, 1)", (agent,))

        def fails(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES ('c', 1)")
            raise ValueError("refused")

        def read(db: sqlite3.Connection) -> int:
            seen.append((threading.get_ident(), id(db), db.in_transaction))
            return _heads(db)

        await engine.write_plain(write, "a", commit_aside=True)
        with pytest.raises(ValueError, match="refused"):
            await engine.write_plain(fails, commit_aside=True)
        with pytest.raises(sqlite3.IntegrityError):  # SQLite's own failure: rolled back too
            await engine.write_plain(write, "a", commit_aside=True)
        await engine.write_plain(write, "b")
        assert await engine.read_plain(read) == 2  # a and b; neither failure left a row
        loop_thread = threading.get_ident()
        assert {thread for thread, _, _ in seen} == {loop_thread}
        writes, read_ = {db for _, db, _ in seen[:3]}, seen[3][1]
        assert len(writes) == 1 and read_ not in writes
        assert [open_ for _, _, open_ in seen] == [True, True, True, False]
        # The two writes that held: a's COMMIT in the committer's thread, b's in this one.
        assert len(commits) == 2 and commits[0] != loop_thread and commits[1] == loop_thread
    finally:
        await engine.dispose()


async def test_a_commit_that_fails_in_the_committers_thread_is_rolled_back(
    tmp_path: Path,
) -> None:
    """A COMMIT SQLite refuses (a deferred foreign key broken) raises to the writer, leaves
    nothing written, and the next write goes through on the same connection."""
    engine = await _engine(tmp_path / "store.db")
    try:

        def orphan(db: sqlite3.Connection) -> None:
            db.execute("PRAGMA defer_foreign_keys=ON")  # checked at COMMIT, not at the INSERT
            db.execute(
                "INSERT INTO task_events (task_id, at, kind, data)"
                " VALUES ('tsk_missing', '2025-01-02 03:04:05', 'opened', '{}')"
            )

        def write(db: sqlite3.Connection) -> int:
            db.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES ('a', 1)")
            return id(db)

        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await engine.write_plain(orphan, commit_aside=True)
        first = id(engine._direct_writes)
        assert await engine.write_plain(write, commit_aside=True) == first
        assert await engine.read_plain(_heads) == 1

        def events(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT count(*) FROM task_events").fetchone()[0])

        assert await engine.read_plain(events) == 0
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


@pytest.mark.parametrize(
    "database",
    [
        "",  # in memory: seen by its one connection only
        "file:{tmp}/store.db?mode=rwc&uri=true",  # with options: opened as the URL says
    ],
)
async def test_databases_the_direct_connection_cannot_open_are_left_to_the_threads(
    tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database in memory, or a URL with options (here SQLite's URI form), is used through
    the threads' connections only: the direct connection would open another database. No
    folder is made for either (the URI form once left a `file:/tmp/...` tree in the working
    directory)."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    engine = create_engine(f"sqlite+aiosqlite:///{database.format(tmp=tmp_path)}")
    assert list(workdir.iterdir()) == []
    assert isinstance(engine, SqliteEngine)
    try:
        threads: list[int] = []

        def work(db: sqlite3.Connection) -> int:
            threads.append(threading.get_ident())
            return int(db.execute("SELECT 1").fetchone()[0])

        assert await engine.write_plain(work) == 1
        assert await engine.read_plain(work) == 1
        assert threads and threading.get_ident() not in threads
        assert engine._direct is None and engine._direct_writes is None
    finally:
        await engine.dispose()


async def test_the_wal_starts_again_after_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes keep coming while checkpoints run, and short reads in database threads come
    and go: the WAL is still started again from its beginning (a checkpoint racing the
    writer never copied all of it, and the WAL grew without end). Each start bumps the
    first salt in the WAL's header."""
    monkeypatch.setattr(database, "_CHECKPOINT_EVERY", 20)
    path = tmp_path / "store.db"
    wal = path.with_name("store.db-wal")
    engine = await _engine(path)

    def salt() -> int:
        with wal.open("rb") as file:
            return int.from_bytes(file.read(20)[16:20], "big")

    def write(db: sqlite3.Connection, n: int) -> None:
        db.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES (?, 1)", (f"{n:05d}" * 800,))

    async def writer(first: int) -> None:
        for n in range(first, first + 200):
            await engine.write_plain(write, n)
            await asyncio.sleep(0)  # as between requests: the checkpoint gets its turn

    reading = True

    async def reader() -> None:  # as the directory's refreshes: SQLAlchemy, in a thread
        while reading:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT count(*) FROM inbox_heads"))

    try:
        await engine.write_plain(write, 99_999)
        first = salt()
        readers = [asyncio.create_task(reader()) for _ in range(2)]
        await asyncio.gather(*(writer(k * 1000) for k in range(8)))  # 1,600 commits, 80 checkpoints
        reading = False
        await asyncio.gather(*readers)
        assert salt() - first >= 10
        assert await engine.read_plain(_heads) == 1601
    finally:
        await engine.dispose()


async def test_a_group_commit_waits_in_a_thread_while_another_process_writes(
    tmp_path: Path,
) -> None:
    """The real group write (`Conversations.commit`) with the database locked by another
    connection: it goes to a database thread, waits, and lands once the lock is released."""
    path = tmp_path / "store.db"
    engine = await _engine(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        conversations = Conversations(engine, new_id)
        write = EnvelopeWrite(
            sender="alice@people.example",
            envelope_id="env-1",
            recipient="bob@people.example",
            task_id=None,
            act="say",
            digest="d" * 64,
            body={"id": "env-1", "text": "hello"},
            answer=None,
            inbox_for=("bob@people.example",),
        )
        await engine.read_plain(_heads)  # the direct connection exists
        other.execute("BEGIN IMMEDIATE")
        pending = asyncio.create_task(
            conversations.commit(Batch(now=NOW, task=None, envelopes=[write]))
        )
        await asyncio.sleep(0.2)
        assert not pending.done()
        other.execute("COMMIT")
        committed = await asyncio.wait_for(pending, 10)
        assert committed.inbox == (("bob@people.example", 1),)
        items = await conversations.inbox("bob@people.example", 0, 10)
        assert [item.envelope for item in items] == [{"id": "env-1", "text": "hello"}]
    finally:
        other.close()
        await engine.dispose()


def _say(number: int) -> EnvelopeWrite:
    return EnvelopeWrite(
        sender="alice@people.example",
        envelope_id=f"env-{number}",
        recipient="bob@people.example",
        task_id=None,
        act="say",
        digest="d" * 64,
        body={"id": f"env-{number}", "text": "hello"},
        answer=None,
        inbox_for=("bob@people.example",),
    )


async def test_a_group_of_several_commits_aside_and_a_group_of_one_in_place(
    tmp_path: Path,
) -> None:
    """`Conversations.commit`: batches that queue together share a transaction whose COMMIT
    runs in the committer's thread; a batch alone commits in the event loop's thread."""
    engine = await _engine(tmp_path / "store.db")
    commits: list[int] = []
    try:
        conversations = Conversations(engine, new_id)
        await conversations.commit(Batch(now=NOW, task=None, envelopes=[_say(0)]))
        writes = engine._direct_writes
        assert writes is not None
        _trace_commits(writes, commits)
        together = await asyncio.gather(
            *(
                conversations.commit(Batch(now=NOW, task=None, envelopes=[_say(n)]))
                for n in (1, 2, 3)
            )
        )
        alone = await conversations.commit(Batch(now=NOW, task=None, envelopes=[_say(4)]))
        assert [c.inbox for c in [*together, alone]] == [
            (("bob@people.example", seq),) for seq in (2, 3, 4, 5)
        ]
        loop_thread = threading.get_ident()
        assert len(commits) == 2 and commits[0] != loop_thread and commits[1] == loop_thread
    finally:
        await engine.dispose()


async def _held_commit(engine: SqliteEngine) -> tuple[threading.Event, threading.Event]:
    """Make the writes' connection, then hold each COMMIT on it in the committer's thread
    until the returned `release` is set; `reached` is set when a COMMIT is being held."""
    await engine.write_plain(lambda db: None)  # the writes' connection exists
    reached, release = threading.Event(), threading.Event()

    def hold(sql: str) -> None:
        if sql == "COMMIT" and threading.current_thread() is not threading.main_thread():
            reached.set()
            release.wait(10)

    assert engine._direct_writes is not None
    engine._direct_writes.set_trace_callback(hold)
    return reached, release


def _insert_head(db: sqlite3.Connection, agent: str) -> str:
    db.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES (?, 1)", (agent,))
    return agent


async def _until(event: threading.Event) -> None:
    for _ in range(500):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the COMMIT never reached its thread")


async def test_a_writer_cancelled_twice_keeps_the_lock_until_its_commit_ends(
    tmp_path: Path,
) -> None:
    """However often the writer is cancelled while its COMMIT runs in the committer's thread,
    the writers' lock and the connection stay its own until that COMMIT ends; it holds, and
    counts towards the next checkpoint."""
    engine = await _engine(tmp_path / "store.db")
    try:
        reached, release = await _held_commit(engine)
        commits = engine._commits
        write = asyncio.create_task(engine.write_plain(_insert_head, "a", commit_aside=True))
        await _until(reached)
        write.cancel()
        await asyncio.sleep(0.05)
        write.cancel()
        await asyncio.sleep(0.05)
        assert not write.done() and engine._writers.locked()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await write
        assert not engine._writers.locked()
        assert await engine.read_plain(_heads) == 1 and engine._commits == commits + 1
        assert await engine.write_plain(_insert_head, "b", commit_aside=True) == "b"
    finally:
        await engine.dispose()


async def test_dispose_waits_for_a_commit_in_the_committers_thread(tmp_path: Path) -> None:
    """Disposing of the engine while a COMMIT runs aside: the writer is answered as the
    COMMIT went (it held), and only then are the connections closed."""
    path = tmp_path / "store.db"
    engine = await _engine(path)
    reached, release = await _held_commit(engine)
    write = asyncio.create_task(engine.write_plain(_insert_head, "a", commit_aside=True))
    await _until(reached)
    disposing = asyncio.create_task(engine.dispose())
    await asyncio.sleep(0.05)
    assert not disposing.done()
    release.set()
    assert await write == "a"
    await disposing
    assert engine._direct_writes is None
    with sqlite3.connect(path) as db:
        assert _heads(db) == 1


async def test_a_caller_cancelled_while_it_waits_still_has_its_batch_written(
    tmp_path: Path,
) -> None:
    """Cancelling the caller of `Conversations.commit` cancels only its wait: the batch is
    written with its group, and the others in the group are answered as usual."""
    engine = await _engine(tmp_path / "store.db")
    try:
        conversations = Conversations(engine, new_id)
        first = asyncio.create_task(
            conversations.commit(Batch(now=NOW, task=None, envelopes=[_say(1)]))
        )
        second = asyncio.create_task(
            conversations.commit(Batch(now=NOW, task=None, envelopes=[_say(2)]))
        )
        await asyncio.sleep(0)  # both queued; the writer has not run yet
        first.cancel()
        committed = await second
        with pytest.raises(asyncio.CancelledError):
            await first
        assert committed.inbox == (("bob@people.example", 2),)
        items = await conversations.inbox("bob@people.example", 0, 10)
        assert [item.envelope["id"] for item in items] == ["env-1", "env-2"]
    finally:
        await engine.dispose()


async def test_opening_the_direct_connection_on_a_locked_database_waits_in_a_thread(
    tmp_path: Path,
) -> None:
    """Another process holds the database in exclusive locking mode when the direct
    connection is first needed: that call goes to a database thread and waits."""
    path = tmp_path / "store.db"
    await (await _engine(path)).dispose()  # migrated, and no connection of ours left open
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    assert isinstance(engine, SqliteEngine)
    try:
        threads: list[int] = []

        def read(db: sqlite3.Connection) -> int:
            threads.append(threading.get_ident())
            return _heads(db)

        pending = asyncio.create_task(engine.read_plain(read))
        await asyncio.sleep(0.2)
        assert not pending.done()
        other.execute("COMMIT")
        other.close()  # exclusive mode keeps the lock until the connection closes
        assert await asyncio.wait_for(pending, 10) == 0
        assert threads and threads[0] != threading.get_ident()
        assert await engine.read_plain(read) == 0  # and now directly
        assert threads[-1] == threading.get_ident()
    finally:
        other.close()
        await engine.dispose()


async def test_a_direct_connection_left_in_a_transaction_is_replaced(tmp_path: Path) -> None:
    """A call whose ROLLBACK fails leaves its connection in a transaction, holding the write
    lock: that connection is closed, and the next call works on a fresh one."""
    engine = await _engine(tmp_path / "store.db")
    try:
        held: list[sqlite3.Connection] = []

        def stuck(db: sqlite3.Connection) -> None:
            held.append(db)
            db.execute("BEGIN IMMEDIATE")
            db.set_authorizer(
                lambda action, *_: (
                    sqlite3.SQLITE_DENY
                    if action == sqlite3.SQLITE_TRANSACTION
                    else sqlite3.SQLITE_OK
                )
            )
            raise ValueError("refused")

        with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
            await engine.read_plain(stuck)  # its ROLLBACK was refused too
        seen: list[int] = []

        def write(db: sqlite3.Connection) -> None:
            seen.append(id(db))
            db.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES ('a', 1)")

        await engine.write_plain(write)
        assert await engine.read_plain(_heads) == 1
        assert seen and seen[0] == id(engine._direct_writes)
        assert engine._direct is not None and engine._direct is not held[0]
    finally:
        await engine.dispose()


@pytest.mark.parametrize(("sync", "level"), [("normal", 1), ("full", 2)])
async def test_synchronous_is_the_engines_on_every_connection(
    tmp_path: Path, sync: str, level: int
) -> None:
    """`sqlite_sync` (SWITCHBOARD_SQLITE_SYNC) is SQLite's `synchronous` on the pool's
    connections and on both plain ones; with `full`, every COMMIT of the writes' connection
    waits for the disk in the committer's thread, a single write's too."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", sqlite_sync=sync)
    assert isinstance(engine, SqliteEngine)
    await migrate(engine)
    commits: list[int] = []
    try:

        def write(db: sqlite3.Connection) -> int:
            _trace_commits(db, commits)
            db.execute("INSERT INTO inbox_heads (agent, last_seq) VALUES ('a', 1)")
            return int(db.execute("PRAGMA synchronous").fetchone()[0])

        def read(db: sqlite3.Connection) -> int:
            return int(db.execute("PRAGMA synchronous").fetchone()[0])

        assert await engine.write_plain(write) == level
        assert await engine.read_plain(read) == level
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == level
        loop_thread = threading.get_ident()
        assert len(commits) == 1 and (commits[0] != loop_thread) == (sync == "full")
    finally:
        await engine.dispose()


def test_an_unknown_synchronous_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="normal, full"):
        create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", sqlite_sync="off")
