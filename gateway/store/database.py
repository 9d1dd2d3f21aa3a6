"""The database engine: SQLite (WAL) by default, PostgreSQL through asyncpg when configured.

Migrations are Alembic's, applied at start on a connection the gateway holds. On PostgreSQL an
advisory lock makes concurrent replicas take turns, so two starting at once never race.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState

_log = structlog.get_logger(__name__)
_MIGRATIONS = Path(__file__).with_name("migrations")
_BUSY_TIMEOUT_MS = 30_000  # how long a connection of a database thread waits for a lock
_MIGRATION_LOCK = 0x5B1D  # pg_advisory_lock key: one replica migrates at a time
_WRITE = "switchboard_sqlite_write"  # execution option marking a write transaction


def alembic_config(url: str) -> Config:
    """An Alembic configuration that needs no alembic.ini on disk."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


def create_engine(url: str, *, sqlite_sync: str = "normal") -> AsyncEngine:
    """An async engine tuned for the backend: on SQLite WAL, a busy timeout, and writes that
    take the write lock at BEGIN while reads take none (`_sqlite_begin`). `sqlite_sync` is
    SQLite's `synchronous` (`normal` or `full`; see `SqliteEngine`)."""
    if url.startswith("sqlite"):
        parsed = make_url(url)
        if parsed.database and parsed.database != ":memory:" and not parsed.query:
            # A plain file path: its folder is made. A URL with options (SQLite's URI form,
            # `file:...?mode=rwc&uri=true`) is opened as it says, and no folder is guessed.
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if sqlite_sync not in _SYNC_LEVELS:
            raise ValueError(f"SQLite's synchronous must be one of {', '.join(_SYNC_LEVELS)}")
        engine = SqliteEngine(
            create_async_engine(
                url,
                connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000},
                pool_reset_on_return=None,
            ).sync_engine,
            sync=sqlite_sync,
        )
        event.listen(engine.sync_engine, "connect", engine.prepare_connection)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        event.listen(engine.sync_engine, "reset", _sqlite_reset)
        return engine
    # No pre-ping: it costs a round trip on every checkout (five per accepted envelope). A
    # connection that died with the server fails its statement once, and SQLAlchemy then
    # discards the whole pool, so one request sees a PostgreSQL restart, not every one.
    #
    # Each INSERT of a group has its own text per row count (multi-row VALUES), so a busy
    # replica uses a few hundred statement texts: asyncpg prepares each once per connection
    # (a Parse round trip) and keeps it while it stays in the cache, 100 by default, which
    # made a third of the group's statements prepare again. The pool hands out the most
    # recently returned connection (LIFO), so the writer keeps using warm ones.
    distributed = create_async_engine(
        url,
        pool_size=20,
        max_overflow=10,
        pool_recycle=1800,
        pool_use_lifo=True,
        connect_args={"prepared_statement_cache_size": 1000},
    )
    # An INSERT given a list of rows goes as multi-row INSERT ... VALUES (one Bind/Execute
    # for a group's inbox rows, tasks, events and timers) rather than asyncpg's executemany,
    # which binds and executes each row on its own; with RETURNING that is already so.
    distributed.sync_engine.dialect.use_insertmanyvalues_wo_returning = True
    return distributed


_SYNC_LEVELS = ("normal", "full")


def _sqlite_pragmas(dbapi_connection: Any, sync: str) -> None:
    # aiosqlite's connection defers to the driver; isolation_level None lets SQLAlchemy issue
    # BEGIN itself, and BEGIN IMMEDIATE below takes the write lock up front (no upgrade
    # deadlocks between two writers).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    if sync not in _SYNC_LEVELS:
        raise ValueError(f"SQLite's synchronous must be one of {', '.join(_SYNC_LEVELS)}")
    cursor.execute(f"PRAGMA synchronous={sync.upper()}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_reset(dbapi_connection: Any, record: Any, state: PoolResetState) -> None:
    """A connection going back to the pool is rolled back only if it is in a transaction.

    The pool's own reset (off, `pool_reset_on_return=None`) would ROLLBACK every time, a
    thread round trip each; a connection used only through `run_in_sqlite_thread` never
    began one (SQLAlchemy's BEGIN is ours, `_sqlite_begin`, and the driver is in autocommit
    mode), and SQLAlchemy rolls back its own transactions before this is called."""
    if not state.asyncio_safe or state.transaction_was_reset:
        return
    try:
        open_transaction = bool(record.driver_connection.in_transaction)
    except Exception:  # not connected, or another driver: roll back as the pool would
        open_transaction = True
    if open_transaction:
        dbapi_connection.rollback()


class SqliteEngine(AsyncEngine):
    """An engine for SQLite, which lets one writer in at a time: writers queue here, not there.

    `begin()` is a write transaction: it waits its turn on an asyncio lock of this process,
    then takes SQLite's write lock at `BEGIN IMMEDIATE` (so it never meets another writer of
    this process inside SQLite, whose busy handler sleeps in steps of up to 100 ms; writers of
    other processes still wait there, up to the busy timeout). `connect()` is a read: a
    deferred `BEGIN` that reads one WAL snapshot and neither waits for nor blocks a writer.

    The hot paths (`write_plain`, `read_plain`) run on plain sqlite3 connections (one for
    writes, one for reads) in the event loop's own thread, without a thread round trip per
    statement: in WAL mode with `synchronous=NORMAL` (the default) a commit writes to the WAL
    and does not wait for the disk, so a call takes what its statements take (tens to
    hundreds of µs), while each round trip to a database thread cost more than a statement in
    wake-ups and hand-overs of the interpreter lock. Only the COMMIT of a write that asks for
    it (a group commit of several acceptances) goes to a thread of its own (`_commit_aside`):
    it is one call in C that holds no interpreter lock while it writes the transaction's
    pages to the WAL, the largest part of a group commit's time, and the event loop goes on
    with other requests meanwhile. With `synchronous=FULL` (`sync="full"`,
    SWITCHBOARD_SQLITE_SYNC) each COMMIT also waits for the WAL to reach the disk, so every
    write's COMMIT goes to that thread, even a single acceptance's. These connections never
    wait: their busy timeout is 0, and a call that finds the database locked (by another
    process) goes to a database thread instead, which waits there. They never checkpoint
    either (a checkpoint waits for the disk): every
    `_CHECKPOINT_EVERY` commits, checkpoints run in a database thread (`_run_checkpoint`).
    """

    def __init__(self, sync_engine: Any, *, sync: str = "normal") -> None:
        super().__init__(sync_engine)
        self._sync = sync
        # With `synchronous=FULL` every COMMIT waits for the disk: none may run on the loop.
        self._commits_aside = sync == "full"
        self._writers = asyncio.Lock()
        self._writer: asyncio.Task[Any] | None = None
        # Connections kept out of the pool for the thread calls, idle ones here: a pool
        # checkout and check-in cost about 90 µs of SQLAlchemy per call, the call itself 25.
        self._kept: list[_Kept] = []
        # The direct connection opens a plain file path; a database in memory, which another
        # connection would not see, or a URL with options (`?mode=...&uri=true`) stays with
        # the threads, which open it as the URL says.
        database = self.url.database
        plain = database and database != ":memory:" and not self.url.query
        self._file = database if plain else None
        self._direct: sqlite3.Connection | None = None  # reads (`read_plain`)
        self._direct_writes: sqlite3.Connection | None = None  # writes (`write_plain`)
        self._committer: ThreadPoolExecutor | None = None  # the COMMITs' thread
        self._commits = 0  # by the direct connection since the last checkpoint began
        self._checkpoint: asyncio.Task[None] | None = None

    def prepare_connection(self, dbapi_connection: Any, _record: Any) -> None:
        """Every new connection of the pool: WAL, this engine's `synchronous`, foreign keys."""
        _sqlite_pragmas(dbapi_connection, self._sync)

    def _check_not_nested(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if self._writer is not None and self._writer is task:
            raise RuntimeError(
                "a write transaction was opened inside another one on the same SQLite engine;"
                " it would wait for itself: write through the connection you hold"
            )
        return task

    async def write_plain(
        self, work: Callable[..., Any], *args: Any, commit_aside: bool = False
    ) -> Any:
        """`work(db, *args)` in one write transaction on a plain sqlite3 connection `db`:
        BEGIN IMMEDIATE, `work`, COMMIT (or ROLLBACK if it raises, and the exception is raised
        here). It runs in this thread, and with `commit_aside` its COMMIT in the committer's
        (`_commit_aside`): worth it for a transaction whose COMMIT writes many pages (a group
        commit of several acceptances), not for a small one, whose COMMIT costs about what
        the hand-over between threads does. All of it runs in a database thread when the
        database is locked by another process (then it waits there, up to the busy timeout).
        Writers queue on the same lock as `begin()`; the work must not touch the event
        loop."""
        task = self._check_not_nested()
        async with self._writers:
            self._writer = task
            try:
                db = self._direct_connection(writes=True)
                if db is not None:
                    try:
                        db.execute("BEGIN IMMEDIATE")
                    except sqlite3.OperationalError as exc:
                        if not _busy(exc):
                            raise
                    else:
                        try:
                            if commit_aside or self._commits_aside:
                                result = _rolled_back_on_failure(db, work, args)
                                await self._commit_aside(db)
                            else:
                                result = _in_begun_transaction(db, work, args)
                        finally:
                            self._check_direct(db)
                        self._committed()
                        return result
                return await self._in_thread(_in_transaction, work, args)
            finally:
                self._writer = None

    async def _commit_aside(self, db: sqlite3.Connection) -> None:
        """COMMIT the transaction open on `db` in the committer's thread (see the class doc).
        The caller holds the writers' lock throughout, so nothing else uses `db` meanwhile."""
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-commit")
        committing = asyncio.get_running_loop().run_in_executor(self._committer, _commit, db)
        try:
            await asyncio.shield(committing)
        except asyncio.CancelledError:
            # The COMMIT goes on in its thread and `db` is its own until it ends: wait for it
            # however often this is cancelled, and only then let the lock go.
            while not committing.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([committing])
            if committing.exception() is None:
                self._committed()  # it held: it counts towards the next checkpoint
            raise

    async def read_plain(self, work: Callable[..., Any], *args: Any) -> Any:
        """`work(db, *args)` on a plain sqlite3 connection `db` with no transaction of ours
        around it (as `read_in_thread`), in this thread; in a database thread if the database
        was busy (a read in WAL mode waits for nobody, but may meet a recovery). The work must
        not write nor touch the event loop."""
        db = self._direct_connection()
        if db is not None:
            try:
                return _outside_transaction(db, work, args)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
            finally:
                self._check_direct(db)
        return await self._in_thread(_outside_transaction, work, args)

    def _direct_connection(self, *, writes: bool = False) -> sqlite3.Connection | None:
        """The connection of this thread's reads, or `writes` (made on first use); None when
        the database is one it cannot open (`_file`), or is locked by another process as it
        is opened. The writes' connection also serves the committer's thread, one call at a
        time (the writers' lock), so it is not bound to this thread."""
        db = self._direct_writes if writes else self._direct
        if db is None and self._file is not None and not self._disposed:
            db = sqlite3.connect(
                self._file, timeout=0, isolation_level=None, check_same_thread=not writes
            )
            try:
                _sqlite_pragmas(db, self._sync)
                db.execute("PRAGMA busy_timeout=0")
                db.execute("PRAGMA wal_autocheckpoint=0")
            except sqlite3.OperationalError as exc:
                db.close()
                if _busy(exc):  # locked by another process: this call goes to a thread
                    return None
                raise
            if writes:
                self._direct_writes = db
            else:
                self._direct = db
        return db

    def _check_direct(self, db: sqlite3.Connection) -> None:
        """After a call: a direct connection still in a transaction (its ROLLBACK failed too)
        would hold the write lock and refuse every BEGIN; it is closed, the next call opens
        another."""
        try:
            open_transaction = db.in_transaction
        except sqlite3.ProgrammingError:  # closed already
            open_transaction = False
        if open_transaction:
            if self._direct is db:
                self._direct = None
            if self._direct_writes is db:
                self._direct_writes = None
            with contextlib.suppress(Exception):
                db.close()

    def _committed(self) -> None:
        self._commits += 1
        if self._commits >= _CHECKPOINT_EVERY and self._checkpoint is None and not self._disposed:
            self._commits = 0
            # For the database, not for the commit that happened to be the last one before it:
            # in a context of its own (no request's log ids).
            self._checkpoint = asyncio.create_task(
                self._run_checkpoint(), name="sqlite-checkpoint", context=contextvars.Context()
            )

    async def _run_checkpoint(self) -> None:
        """Two checkpoints in a database thread (the event loop goes on). The first, passive,
        copies the bulk of the WAL while writers go on. The second, with this process's
        writers held back, copies what they added meanwhile and then waits up to
        `_RESTART_WAIT_MS` for readers still on the WAL to leave, so that the next write
        starts the WAL again from its beginning. SQLite does that only after a checkpoint
        that copied all of it with no reader left on it: a checkpoint that only ever ran
        beside a busy writer never caught up, and the WAL grew for ever. Writers wait for the
        second only: 2-4 ms against 11-22 ms for one checkpoint held throughout
        (`bench/delivery.py`, 32 conversations)."""
        try:
            await self.read_in_thread(_checkpoint)
            async with self._writers:
                await self.read_in_thread(_restart)
        except Exception:  # the next one tries again; a checkpoint is never owed to anyone
            _log.warning("sqlite.checkpoint_failed", exc_info=True)
        finally:
            self._checkpoint = None

    async def write_in_thread(self, work: Callable[..., Any], *args: Any) -> Any:
        """`work(db, *args)` in one write transaction, all of it in ONE call in the database's
        thread on the plain sqlite3 connection `db`: BEGIN IMMEDIATE, `work`, COMMIT (or
        ROLLBACK if it raises, and the exception is raised here). Writers queue on the same
        lock as `begin()`; the work must not touch the event loop."""
        task = self._check_not_nested()
        async with self._writers:
            self._writer = task
            try:
                return await self._in_thread(_in_transaction, work, args)
            finally:
                self._writer = None

    async def read_in_thread(self, work: Callable[..., Any], *args: Any) -> Any:
        """`work(db, *args)` as ONE call in the database's thread on the plain sqlite3
        connection `db`, with no transaction of ours around it: each statement `work` runs is
        its own read of one snapshot (the driver is in autocommit mode). For reads of one
        statement, or whose statements need not agree; the work must not write nor touch
        the event loop."""
        return await self._in_thread(_outside_transaction, work, args)

    async def _in_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        """`call(db, *args)` in the thread of a kept connection (made when none is idle)."""
        kept = self._kept.pop() if self._kept else None
        if kept is None:
            conn = await self.connect().start()
            execute, database = await _driver(conn)
            kept = _Kept(conn, execute, database)
        try:
            result, failure, clean = await kept.execute(_caught, call, kept.database, *args)
        except BaseException:
            # Not raised by the work nor by SQLite in it: the driver or its thread failed, or
            # the caller was cancelled with the call still running. Drop the connection.
            await _drop(kept)
            raise
        # Each call leaves no transaction open (see `call`); the calls of one connection run
        # in its thread one after the other, so it may be reused at once.
        if not clean:
            await _drop(kept)
        elif len(self._kept) < _KEPT and not self._disposed:
            self._kept.append(kept)
        else:
            await kept.connection.close()
        if failure is not None:
            raise failure
        return result

    _disposed = False

    async def dispose(self, close: bool = True) -> None:
        """Close the kept connections too (each has a thread that would outlive the engine)."""
        self._disposed = True
        if self._checkpoint is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._checkpoint
        # A write in flight, its COMMIT in the committer's thread included, ends first (and
        # is answered as it went): then nothing uses these connections any more.
        async with self._writers:
            if self._committer is not None:
                self._committer.shutdown(wait=True)
                self._committer = None
            for db in (self._direct, self._direct_writes):
                if db is not None:
                    db.close()
            self._direct = self._direct_writes = None
        kept, self._kept = self._kept, []
        for one in kept:
            with contextlib.suppress(Exception):
                await one.connection.close()
        await super().dispose(close)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        task = self._check_not_nested()
        async with self._writers:
            self._writer = task
            try:
                async with self.connect() as conn:
                    await conn.execution_options(**{_WRITE: True})
                    async with conn.begin():
                        yield conn
            finally:
                self._writer = None


_KEPT = 4  # idle kept connections at most
_CHECKPOINT_EVERY = 200
"""Commits of the direct connection between checkpoints (at a few pages a commit, near
SQLite's own default of one every 1,000 pages of WAL)."""


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLite said SQLITE_BUSY (any of its extended codes): the database is locked."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


_RESTART_WAIT_MS = 10
"""How long the second checkpoint waits for readers to leave the WAL (reads here are short;
one that holds its snapshot longer only delays the WAL's restart to a later checkpoint)."""


def _checkpoint(db: sqlite3.Connection) -> None:
    """Copy what it can of the WAL into the database, waiting for no reader nor writer."""
    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _restart(db: sqlite3.Connection) -> None:
    """Copy all of the WAL into the database and see that the next write starts it again
    from its beginning, waiting a little for readers and other processes' writers."""
    db.execute(f"PRAGMA busy_timeout={_RESTART_WAIT_MS}")
    try:
        db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
    finally:
        db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")


@dataclasses.dataclass(frozen=True, slots=True)
class _Kept:
    connection: AsyncConnection
    execute: Callable[..., Any]  # the aiosqlite connection's call-in-its-thread
    database: sqlite3.Connection


def _caught(
    call: Callable[..., Any], db: sqlite3.Connection, *args: Any
) -> tuple[Any, Exception | None, bool]:
    """`call(db, *args)` in the database's thread: (its result, what it raised, whether the
    connection is fit to keep: it raised nothing, or left no transaction open)."""
    try:
        return call(db, *args), None, True
    except Exception as exc:
        try:
            clean = not db.in_transaction
        except Exception:  # the connection is closed
            clean = False
        return None, exc, clean


async def _drop(kept: _Kept) -> None:
    """Close a kept connection for good: it leaves the pool, which gets a fresh one."""
    with contextlib.suppress(Exception):
        await kept.connection.invalidate()
    with contextlib.suppress(Exception):
        await kept.connection.close()


def _outside_transaction(
    db: sqlite3.Connection, work: Callable[..., Any], args: tuple[Any, ...]
) -> Any:
    try:
        return work(db, *args)
    finally:
        if db.in_transaction:  # a read never leaves one open; if it did, it ends here
            db.execute("ROLLBACK")


def _in_transaction(db: sqlite3.Connection, work: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    db.execute("BEGIN IMMEDIATE")
    return _in_begun_transaction(db, work, args)


def _in_begun_transaction(
    db: sqlite3.Connection, work: Callable[..., Any], args: tuple[Any, ...]
) -> Any:
    result = _rolled_back_on_failure(db, work, args)
    _commit(db)
    return result


def _rolled_back_on_failure(
    db: sqlite3.Connection, work: Callable[..., Any], args: tuple[Any, ...]
) -> Any:
    """`work(db, *args)` in the transaction open on `db`, rolled back if it raises."""
    try:
        return work(db, *args)
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _commit(db: sqlite3.Connection) -> None:
    """COMMIT the transaction open on `db`, or roll it back if that fails."""
    try:
        db.execute("COMMIT")
    except BaseException:  # SQLite may leave the transaction open: the connection is reused
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _sqlite_begin(conn: Connection) -> None:
    """Write transactions (`engine.begin()`) take SQLite's write lock at BEGIN; reads
    (`engine.connect()`) begin a deferred snapshot that takes no lock."""
    write = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision."""
    url = engine.url.render_as_string(hide_password=False)

    def upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        await connection.run_sync(upgrade)


async def run_in_sqlite_thread(conn: AsyncConnection, work: Callable[..., Any], *args: Any) -> Any:
    """`work(db, *args)` in aiosqlite's own thread, on the plain sqlite3 connection `db` under
    `conn`, as one call (each statement there costs microseconds, not a thread round trip).

    This reaches into aiosqlite's `Connection._execute` and `_conn`, which it does not
    publish; pyproject pins aiosqlite to the versions this was checked on, and this check
    turns a future change into a clear error rather than a wrong write.
    """
    execute, database = await _driver(conn)
    return await execute(work, database, *args)


async def _driver(conn: AsyncConnection) -> tuple[Callable[..., Any], sqlite3.Connection]:
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection  # aiosqlite.Connection
    execute = getattr(driver, "_execute", None)
    database = getattr(driver, "_conn", None)
    if execute is None or database is None:
        raise RuntimeError(
            "this aiosqlite has no Connection._execute/_conn: install the version pyproject.toml"
            " names (aiosqlite>=0.20,<0.23)"
        )
    return execute, database
