"""Tasks, the envelopes in them, inboxes and the outbox: the conversation side of the store.

`commit` writes everything one accepted envelope causes in ONE transaction: the envelope
(whose unique (sender, id) is the replay memory), the task's insert or guarded update, its
events, an inbox item per recipient, and the outbox rows for work that must happen after the
commit. Accepted means durable: the gateway answers 202 only after `commit` returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import (
    PrimaryKeyConstraint,
    Row,
    UniqueConstraint,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.clock import iso
from gateway.store.database import SqliteEngine, run_in_sqlite_thread
from gateway.store.records import InboxItem, StoredEnvelope, TaskRecord, dumps
from gateway.store.tables import (
    UtcDateTime,
    envelopes,
    inbox,
    inbox_heads,
    metadata,
    outbox,
    task_events,
    tasks,
)

log = structlog.get_logger(__name__)

_MAX_GROUP = 64  # batches in one shared transaction at most
_TASKS_WITH_TURNS = 5_000  # tasks whose envelopes are kept in memory (see `history`)
_TURNS_PER_TASK = 200  # the window of a task's envelopes the language layer reads (see `history`)
_TURNS_KEPT = 50_000  # envelope bodies kept in memory in all, whatever the tasks

REPLAY_CONSTRAINT = "uq_envelopes_replay"
TASK_KEY_CONSTRAINT = "pk_tasks"


def violated_constraint(exc: IntegrityError) -> str | None:
    """The name of the unique or primary key constraint an insert broke, on either backend.

    PostgreSQL (asyncpg) names it on the driver's exception. SQLite names only the columns
    ("UNIQUE constraint failed: envelopes.sender, envelopes.envelope_id"), so those are
    looked up among the schema's constraints. Matching names rather than message words keeps
    a new constraint from being taken for the replay memory.
    """
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        name = getattr(error, "constraint_name", None)
        if isinstance(name, str) and name:
            return name
    return _sqlite_constraint(str(exc.orig))


def _sqlite_constraint(message: str) -> str | None:
    for marker in ("UNIQUE constraint failed: ", "PRIMARY KEY constraint failed: "):
        if message.startswith(marker):
            return _SQLITE_CONSTRAINTS.get(message[len(marker) :].strip())
    return None


def _sqlite_constraint_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for table in metadata.tables.values():
        for constraint in table.constraints:
            if not isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint):
                continue
            columns = ", ".join(f"{table.name}.{column.name}" for column in constraint.columns)
            if isinstance(constraint, PrimaryKeyConstraint):
                names[columns] = f"pk_{table.name}"
            elif isinstance(constraint.name, str):
                names[columns] = constraint.name
    return names


_SQLITE_CONSTRAINTS = _sqlite_constraint_names()


class ReplayCollision(Exception):
    """The (sender, envelope id) pair is stored already: the caller decides duplicate or
    conflict by comparing digests."""


class TaskChanged(Exception):
    """The task moved on between read and write (another envelope won); retry from the top."""


@dataclass(frozen=True, slots=True)
class EnvelopeWrite:
    """One envelope to store, with who gets it in their inbox and at their endpoint."""

    sender: str
    envelope_id: str
    recipient: str
    task_id: str | None
    act: str
    digest: str
    body: dict[str, Any]
    answer: dict[str, Any] | None
    inbox_for: tuple[str, ...] = ()
    deliver_to: tuple[str, ...] = ()  # agents whose endpoint gets it (outbox "delivery")
    text: str | None = None  # `body` as the JSON text it arrived in, when the caller has it


@dataclass(frozen=True, slots=True)
class TaskWrite:
    """A new task (expected_version None) or a guarded update of an existing one."""

    record: TaskRecord
    expected_version: int | None
    events: tuple[tuple[str, dict[str, Any]], ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxWrite:
    public_id: str
    kind: str
    partition: str
    payload: dict[str, Any]
    task_id: str | None = None


class SqliteWrite(Protocol):
    """A `Write` that can also write itself with the plain sqlite3 connection.

    On SQLite the group writer runs a whole group's rows in one plain sqlite3 call
    (`SqliteEngine.write_plain`); a batch's leading extras with this method run there too
    (after the batch's own rows), so they cost no statement through SQLAlchemy. It does what
    `apply` does and returns the same outbox rows.
    """

    def apply_sqlite(self, db: sqlite3.Connection, now: datetime) -> list[OutboxWrite]: ...


class Write(Protocol):
    """More rows for the same transaction (escalations, timers, ledger entries...).

    `apply` runs after the task and the envelopes are written; it returns the outbox rows its
    writes cause, and raises to roll the whole batch back (a lost guard, for example).
    """

    async def apply(self, conn: AsyncConnection, now: datetime) -> list[OutboxWrite]: ...


class GroupedWrite(Protocol):
    """A `Write` that PostgreSQL can write together with others of its class in one statement.

    It writes (or deletes) at most the one row named by `row` (its table's name and key, the
    same for every class that writes that table), touches no other rows, needs none of its
    batch's rows written first and causes no outbox rows. PostgreSQL's group writer collects
    such extras over a run of batches and, when no two of them name the same row (so their
    order cannot matter), hands each class's list to `apply_together` once (`(write, its
    batch's now)` in batch order) after the run's own rows; otherwise they apply one by one
    in batch order. On SQLite they go through `apply_sqlite` or `apply` as before.
    """

    @property
    def row(self) -> tuple[Any, ...]: ...

    async def apply(self, conn: AsyncConnection, now: datetime) -> list[OutboxWrite]: ...

    @classmethod
    async def apply_together(
        cls, conn: AsyncConnection, writes: list[tuple[Any, datetime]]
    ) -> None: ...


@dataclass(slots=True)
class Batch:
    """Everything one acceptance writes."""

    now: datetime
    task: TaskWrite | None = None
    envelopes: list[EnvelopeWrite] = field(default_factory=list)
    outbox: list[OutboxWrite] = field(default_factory=list)
    extra: list[Write] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Committed:
    """What the commit produced: inbox seqs per agent and the outbox rows to publish."""

    inbox: tuple[tuple[str, int], ...]
    outbox: tuple[tuple[int, str, str], ...]  # (pk, kind, partition)


class Conversations:
    """The conversation tables. `commit` is group commit: see its docstring."""

    def __init__(self, engine: AsyncEngine, new_id: Any, *, max_group: int = _MAX_GROUP) -> None:
        self._engine = engine
        self._new_id = new_id
        self._max_group = max_group
        self._pending: list[tuple[Batch, asyncio.Future[Committed]]] = []
        self._writer: asyncio.Task[None] | None = None
        # Task id -> (task version, its envelopes' bodies), least recently written first (see
        # `history`). Valid because a task's version moves with every envelope it gets: an
        # envelope comes with its task's guarded write, and a task given envelopes without
        # one has its version bumped in the same transaction on either backend
        # (`_unguarded`), so a window remembered here (or on another replica) for an older
        # version is never taken for the new one.
        self._turns: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        self._turns_kept = 0  # bodies in self._turns

    async def commit(self, batch: Batch) -> Committed:
        """Write `batch` durably; return once its transaction has committed.

        Batches committed at the same time in this process share one transaction: a single
        writer task takes every batch queued while the previous transaction was being
        written, writes them in turn, commits once and answers each caller. One BEGIN,
        COMMIT and fsync then serve many envelopes (the database's write lock is held once).
        If the shared transaction fails (a replay, a lost version guard, an extra write's
        refusal, a deadlock between replicas), it is rolled back whole and each of its
        batches is written again in a transaction of its own, so each caller gets its own
        outcome: a batch is never half written and never fails for another's fault.

        Raises:
            ReplayCollision: The (sender, id) of one of the envelopes is stored already.
            TaskChanged: The task moved on since it was read.
        """
        future: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self._pending.append((batch, future))
        if self._writer is None or self._writer.done():
            # It writes for every caller, so in a context of its own: the log ids this caller
            # bound (its request, envelope and task) are not the writer's.
            self._writer = asyncio.create_task(
                self._drain(), name="conversations-writer", context=contextvars.Context()
            )
        # A caller cancelled while it waits cancels only its own future: the batch is still
        # written with its group, and the writer answers nobody for it (`future.done()`).
        return await future

    async def _drain(self) -> None:
        while self._pending:
            group = self._pending[: self._max_group]
            del self._pending[: self._max_group]
            # Take head rows in one order in every group: fewer lock waits across replicas.
            group.sort(key=lambda item: _first_inbox(item[0]))
            try:
                results = await self._write([batch for batch, _ in group])
            except BaseException as exc:
                if len(group) == 1 or not isinstance(exc, Exception):
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        self._fail_pending(exc)
                        raise
                    continue
                # One batch's fault rolled the group back: each batch goes again alone.
                log.info(
                    "conversations.group_rolled_back", batches=len(group), error=type(exc).__name__
                )
                for batch, future in group:
                    try:
                        (result,) = await self._write([batch])
                    except Exception as single:
                        if not future.done():
                            future.set_exception(single)
                    else:
                        self._note_turns(batch)
                        if not future.done():
                            future.set_result(result)
                continue
            for (batch, future), result in zip(group, results, strict=True):
                self._note_turns(batch)
                if not future.done():
                    future.set_result(result)

    def _note_turns(self, batch: Batch) -> None:
        """Keep the remembered envelopes of the batch's tasks in step with its commit: a
        task written with its version guard gets the batch's envelopes appended (or is
        forgotten when what was remembered is not the version it was written over); any
        other write of envelopes to a task forgets the task."""
        written: dict[str, list[dict[str, Any]]] = {}
        for write in batch.envelopes:
            if write.task_id is not None:
                written.setdefault(write.task_id, []).append(write.body)
        task = batch.task
        if task is not None:
            task_id = task.record.id
            known = self._forget(task_id)
            bodies: list[dict[str, Any]] | None = None
            if task.expected_version is None:
                bodies = []
            elif known is not None and known[0] == task.expected_version:
                bodies = known[1]
            if bodies is not None:
                bodies = _window(bodies + written.pop(task_id, []))
                self._keep(task_id, (task.expected_version or 0) + 1, bodies)
            written.pop(task_id, None)
        for task_id in written:
            self._forget(task_id)

    def _forget(self, task_id: str) -> tuple[int, list[dict[str, Any]]] | None:
        known = self._turns.pop(task_id, None)
        if known is not None:
            self._turns_kept -= len(known[1])
        return known

    def _keep(self, task_id: str, version: int, bodies: list[dict[str, Any]]) -> None:
        self._forget(task_id)
        while self._turns and (
            len(self._turns) >= _TASKS_WITH_TURNS or self._turns_kept + len(bodies) > _TURNS_KEPT
        ):
            self._forget(next(iter(self._turns)))  # the least recently written
        self._turns[task_id] = (version, bodies)
        self._turns_kept += len(bodies)

    def _fail_pending(self, exc: BaseException) -> None:
        """The writer is stopping (the gateway shuts down): nobody waits for ever."""
        pending, self._pending = self._pending, []
        for _, future in pending:
            if not future.done():
                future.set_exception(exc)

    async def _write(self, group: list[Batch]) -> list[Committed]:
        try:
            if isinstance(self._engine, SqliteEngine) and all(
                _sqlite_prefix(batch) == len(batch.extra) for batch in group
            ):
                # Every row of the group writes itself in plain sqlite3 in this thread, in one
                # call with the transaction's BEGIN (`SqliteEngine.write_plain`); the COMMIT of
                # several acceptances, pages of many tables and indexes, goes to a thread of
                # its own while the event loop goes on (a single one's costs about what the
                # hand-over would).
                done: list[_InThread] = await self._engine.write_plain(
                    _write_group_sqlite,
                    group,
                    self._delivery_ids(group),
                    commit_aside=len(group) > 1,
                )
                return [Committed(tuple(item.seqs), tuple(item.rows)) for item in done]
            async with self._engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    return await self._apply_sqlite(conn, group)
                return await self._apply_group(conn, group)
        except IntegrityError as exc:
            broken = violated_constraint(exc)
            if broken == REPLAY_CONSTRAINT:
                raise ReplayCollision() from exc
            if broken == TASK_KEY_CONSTRAINT:
                raise TaskChanged() from exc
            raise
        except sqlite3.IntegrityError as exc:
            broken = _sqlite_constraint(str(exc))
            if broken == REPLAY_CONSTRAINT:
                raise ReplayCollision() from exc
            if broken == TASK_KEY_CONSTRAINT:
                raise TaskChanged() from exc
            raise

    async def _apply_sqlite(self, conn: AsyncConnection, group: list[Batch]) -> list[Committed]:
        """The group's rows in ONE call in aiosqlite's thread, on the plain sqlite3 connection
        inside the transaction `conn` began (BEGIN IMMEDIATE: the write lock is held).

        Each statement there costs a few µs, where through SQLAlchemy and aiosqlite each
        costs a thread round trip and result machinery. Inbox seqs stay gapless: each agent's
        head is bumped once by the group's count for it, under the write lock, and the seqs
        handed out in batch order. Extras that cannot write themselves in the thread
        (`SqliteWrite`) and the outbox rows they cause follow through `conn`, in the same
        transaction.
        """
        results: list[_InThread] = await run_in_sqlite_thread(
            conn, _write_group_sqlite, group, self._delivery_ids(group)
        )
        committed: list[Committed] = []
        for batch, done in zip(group, results, strict=True):
            if done.caused is not None:  # extras left for this side, in their order
                caused = [*batch.outbox, *done.caused]
                for extra in batch.extra[done.applied :]:
                    caused.extend(await extra.apply(conn, batch.now))
                for item in caused:
                    done.rows.append(await _insert_outbox(conn, item, batch.now))
            committed.append(Committed(tuple(done.seqs), tuple(done.rows)))
        return committed

    def _delivery_ids(self, group: list[Batch]) -> list[list[str]]:
        """The public ids of the group's delivery rows, made here (not in the SQLite call)."""
        return [
            [self._new_id("dlv") for write in batch.envelopes for _ in write.deliver_to]
            for batch in group
        ]

    async def _apply_group(self, conn: AsyncConnection, group: list[Batch]) -> list[Committed]:
        """The group through SQLAlchemy (PostgreSQL), one statement per table where it can.

        First the task rows and envelopes of the whole group: its guarded task updates in
        one UPDATE (each must find its version), its new tasks in one multi-row INSERT,
        their events in another, its envelopes in one more (RETURNING their pks in order).
        No extra reads or writes the tasks table, and an extra that reads its envelope
        still finds it written; writing these before the inbox heads keeps the head row
        locks (below) held for fewer round trips. Every group takes task rows, then
        envelope keys, then head rows, so two replicas' groups never wait for each other in
        opposite orders (a raced duplicate waits at its envelope's unique key, before the
        heads, and fails there once the first commits).

        Then every agent's inbox head is bumped by the group's count for it in ONE upsert
        whose rows go in sorted agent order: each head row stays locked until commit, so
        writers to one inbox serialise across replicas, and since the locks come before any
        delivery row is inserted, those rows' ids follow the order of the seqs (deliveries
        go out in commit order). (Envelope pks need no such order: only a task's history
        reads them in pk order, and its writers are serialised by its version guard.) Then
        the batches' outbox rows go in runs, one multi-row statement per run; a run ends at
        a batch with extras other than `GroupedWrite`s, whose extras then apply (after its
        own rows, before any later batch's) with the outbox rows they cause.
        Extras that go together (`GroupedWrite`: the timers nearly every acceptance arms or
        disarms) do not end a run: they are written after the run's rows, one statement
        per class. The inbox rows of the whole group go last in one multi-row INSERT."""
        await _write_tasks(conn, group)
        await _bump_unguarded(conn, group)
        envelope_rows = [
            _envelope_values(write, batch.now) for batch in group for write in batch.envelopes
        ]
        pks: list[int] = []
        if envelope_rows:
            result = await conn.execute(_INSERT_ENVELOPES, envelope_rows)
            pks = [int(pk) for pk in result.scalars().all()]
        next_pk = iter(pks)
        counts: dict[str, int] = {}
        for batch in group:
            for write in batch.envelopes:
                for agent in write.inbox_for:
                    counts[agent] = counts.get(agent, 0) + 1
        next_seq: dict[str, int] = {}
        if counts:
            heads = [{"agent": agent, "last_seq": counts[agent]} for agent in sorted(counts)]
            result = await conn.execute(_BUMP_INBOX_HEADS, heads)
            for agent, last in result.all():
                next_seq[agent] = int(last) - counts[agent] + 1
        inbox_rows: list[dict[str, Any]] = []
        results: list[tuple[list[tuple[str, int]], list[tuple[int, str, str]]]] = []
        run: list[Batch] = []
        for index, batch in enumerate(group):
            run.append(batch)
            grouped = _all_grouped(batch.extra)
            if not grouped or index == len(group) - 1:
                results.extend(await self._write_run(conn, run, next_pk, next_seq, inbox_rows))
                # The extras of the run's batches that go together, then (a run ends there)
                # those of its last batch in their order, with the outbox rows they cause.
                await _apply_grouped(conn, run if grouped else run[:-1])
                run = []
                if not grouped:
                    caused: list[OutboxWrite] = []
                    for extra in batch.extra:
                        caused.extend(await extra.apply(conn, batch.now))
                    results[-1][1].extend(await _insert_outboxes(conn, caused, batch.now))
        if inbox_rows:
            await conn.execute(_INSERT_INBOX, inbox_rows)
        return [Committed(tuple(seqs), tuple(rows)) for seqs, rows in results]

    async def _write_run(
        self,
        conn: AsyncConnection,
        run: list[Batch],
        next_pk: Iterator[int],
        next_seq: dict[str, int],
        inbox_rows: list[dict[str, Any]],
    ) -> list[tuple[list[tuple[str, int]], list[tuple[int, str, str]]]]:
        """The outbox rows of `run` (batches without extras but perhaps the last) in one
        multi-row statement, their envelopes' pks taken from `next_pk`; the inbox rows are
        appended to `inbox_rows` with their seqs handed out in batch order."""
        outbox_rows: list[dict[str, Any]] = []
        per_batch: list[tuple[list[tuple[str, int]], int]] = []  # seqs, outbox row count
        for batch in run:
            seqs: list[tuple[str, int]] = []
            brief = batch.task.record.brief() if batch.task else None
            start = len(outbox_rows)
            for write in batch.envelopes:
                pk = next(next_pk)
                for agent in write.inbox_for:
                    seq = next_seq[agent]
                    next_seq[agent] = seq + 1
                    inbox_rows.append(
                        {
                            "agent": agent,
                            "seq": seq,
                            "envelope_pk": pk,
                            "task_id": write.task_id,
                            "task_state": brief["state"] if brief else None,
                            "task_control": brief["control"] if brief else None,
                            "created_at": batch.now,
                        }
                    )
                    seqs.append((agent, seq))
                for agent in write.deliver_to:
                    delivery = OutboxWrite(
                        public_id=self._new_id("dlv"),
                        kind="delivery",
                        partition=agent,
                        payload={"envelope_pk": pk, "agent": agent, "task": brief},
                        task_id=write.task_id,
                    )
                    outbox_rows.append(_outbox_values(delivery, batch.now))
            for item in batch.outbox:
                outbox_rows.append(_outbox_values(item, batch.now))
            per_batch.append((seqs, len(outbox_rows) - start))
        written: list[tuple[int, str, str]] = []
        if outbox_rows:
            result = await conn.execute(_INSERT_OUTBOXES, outbox_rows)
            written = [
                (int(pk), row["kind"], row["partition"])
                for pk, row in zip(result.scalars().all(), outbox_rows, strict=True)
            ]
        done: list[tuple[list[tuple[str, int]], list[tuple[int, str, str]]]] = []
        position = 0
        for seqs, count in per_batch:
            done.append((seqs, written[position : position + count]))
            position += count
        return done

    async def by_replay_key(self, sender: str, envelope_id: str) -> StoredEnvelope | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(envelopes).where(
                        and_(envelopes.c.sender == sender, envelopes.c.envelope_id == envelope_id)
                    )
                )
            ).first()
        return _envelope(row) if row else None

    async def task(self, task_id: str) -> TaskRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).first()
        return _task(row) if row else None

    async def task_version(self, task_id: str) -> tuple[TaskRecord, int] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).first()
        return (_task(row), int(row.version)) if row else None

    async def history(self, task_id: str, version: int | None = None) -> list[dict[str, Any]]:
        """The bodies of the task's envelopes, oldest first: all of them without `version`.

        With the task `version` the caller planned on (the language layer's reading), the
        answer is a bounded window: the opening envelope and the newest ones, at most
        `_TURNS_PER_TASK` in all, so a very long conversation costs no more per message than
        a long one. The window remembered from this process's commits (or its last read)
        answers when it is of that version (no read), on either backend. It can differ from
        the stored one only when the caller's task is stale (another replica, a timer or an
        operator moved the task and its version on since), and then the caller's
        version-guarded commit fails and it plans again on a fresh read; the language layer
        only informs that plan (signals, escalation), it never refuses an envelope.
        """
        if version is None:
            async with self._engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(envelopes.c.body)
                        .where(envelopes.c.task_id == task_id)
                        .order_by(envelopes.c.pk)
                    )
                ).all()
            return [json.loads(row.body) for row in rows]
        known = self._turns.get(task_id)
        if known is not None and known[0] == version:
            return list(known[1])
        bodies = await self._window_from_store(task_id)
        self._keep(task_id, version, bodies)
        return list(bodies)

    async def _window_from_store(self, task_id: str) -> list[dict[str, Any]]:
        """The opening envelope and the newest ones, at most `_TURNS_PER_TASK`, oldest first."""
        async with self._engine.connect() as conn:
            newest = (
                await conn.execute(
                    select(envelopes.c.pk, envelopes.c.body)
                    .where(envelopes.c.task_id == task_id)
                    .order_by(envelopes.c.pk.desc())
                    .limit(_TURNS_PER_TASK)
                )
            ).all()
            first = None
            if len(newest) == _TURNS_PER_TASK:
                first = (
                    await conn.execute(
                        select(envelopes.c.pk, envelopes.c.body)
                        .where(envelopes.c.task_id == task_id)
                        .order_by(envelopes.c.pk)
                        .limit(1)
                    )
                ).first()
        rows = list(reversed(newest))
        if first is not None and first.pk != rows[0].pk:
            rows = [first, *rows[1:]]
        return [json.loads(row.body) for row in rows]

    async def events(self, task_id: str) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(task_events)
                    .where(task_events.c.task_id == task_id)
                    .order_by(task_events.c.pk)
                )
            ).all()
        return [{"at": iso(row.at), "kind": row.kind, **json.loads(row.data)} for row in rows]

    async def list_tasks(
        self,
        *,
        party: str | None = None,
        brand: str | None = None,
        state: str | None = None,
        control: str | None = None,
        limit: int = 100,
        before: tuple[datetime, str] | None = None,
    ) -> list[TaskRecord]:
        """The tasks that match, the most recently updated first (ties by id, descending);
        with `before`, only those after the task last updated at `before[0]` with id
        `before[1]` in that order (keyset paging)."""
        query = select(tasks)
        if before is not None:
            at, task_id = before
            query = query.where(
                or_(tasks.c.updated_at < at, and_(tasks.c.updated_at == at, tasks.c.id < task_id))
            )
        if party is not None:
            query = query.where(or_(tasks.c.initiator == party, tasks.c.responder == party))
        if brand is not None:
            query = query.where(tasks.c.brand == brand)
        if state is not None:
            query = query.where(tasks.c.state == state)
        if control is not None:
            query = query.where(tasks.c.control == control)
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    query.order_by(tasks.c.updated_at.desc(), tasks.c.id.desc()).limit(limit)
                )
            ).all()
        return [_task(row) for row in rows]

    async def inbox(self, agent: str, after: int, limit: int) -> list[InboxItem]:
        if isinstance(self._engine, SqliteEngine):
            # One statement, one snapshot: no transaction needed, one plain sqlite3 call.
            found: list[InboxItem] = await self._engine.read_plain(
                _inbox_sqlite, agent, after, limit
            )
            return found
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        inbox.c.seq,
                        inbox.c.task_id,
                        inbox.c.task_state,
                        inbox.c.task_control,
                        envelopes.c.body,
                    )
                    .join(envelopes, envelopes.c.pk == inbox.c.envelope_pk)
                    .where(and_(inbox.c.agent == agent, inbox.c.seq > after))
                    .order_by(inbox.c.seq)
                    .limit(limit)
                )
            ).all()
        return [
            InboxItem(
                seq=int(row.seq),
                envelope=json.loads(row.body),
                task=(
                    {"id": row.task_id, "state": row.task_state, "control": row.task_control}
                    if row.task_id
                    else None
                ),
            )
            for row in rows
        ]

    async def inbox_depth(self) -> int:
        """The inbox items stored, all agents together, read or not (items are kept: agents
        read them by seq). Summed from the agents' heads, one row per agent rather than per
        item: an agent's seqs run from 1 without gaps (its head moves by the count of items
        written with it, in their transaction, on either backend) and no item is deleted,
        so an agent's last seq is its number of items."""
        async with self._engine.connect() as conn:
            return int((await conn.execute(_INBOX_ITEMS)).scalar_one())

    async def envelope(self, pk: int) -> StoredEnvelope | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(envelopes).where(envelopes.c.pk == pk))).first()
        return _envelope(row) if row else None


# The hot path's statements, built once: the values come as execute() parameters, so no
# statement is constructed (nor its cache key walked over bound values) per envelope. With a
# list of parameter sets, the INSERTs with RETURNING go as multi-row INSERT ... VALUES
# (SQLAlchemy's insertmanyvalues), their pks returned in the order of the parameter sets.
_INSERT_ENVELOPES = envelopes.insert().returning(envelopes.c.pk, sort_by_parameter_order=True)
_INSERT_OUTBOXES = outbox.insert().returning(outbox.c.pk, sort_by_parameter_order=True)
_INSERT_INBOX = inbox.insert()
_INBOX_ITEMS = select(func.coalesce(func.sum(inbox_heads.c.last_seq), 0))
_INSERT_TASK = tasks.insert()
_INSERT_EVENT = task_events.insert()
_UPDATE_TASK = update(tasks).where(
    and_(tasks.c.id == bindparam("guard_id"), tasks.c.version == bindparam("guard_version"))
)


def _bump_inbox_heads() -> Any:
    """Upsert agents' heads, each by its `last_seq` (the number of seqs wanted); returns each
    agent's last. Given the rows in sorted agent order, the head rows lock in that order."""
    statement = postgresql.insert(inbox_heads)
    return statement.on_conflict_do_update(
        index_elements=[inbox_heads.c.agent],
        set_={"last_seq": inbox_heads.c.last_seq + statement.excluded.last_seq},
    ).returning(inbox_heads.c.agent, inbox_heads.c.last_seq)


_BUMP_INBOX_HEADS = _bump_inbox_heads()


def _task_values(write: TaskWrite) -> dict[str, Any]:
    record = write.record
    return {
        "id": record.id,
        "created_at": record.created_at,
        "version": 1,
        "initiator": record.initiator,
        "responder": record.responder,
        "brand": record.brand,
        "state": record.state,
        "control": record.control,
        "updated_at": record.updated_at,
        "completed_at": record.completed_at,
        "escalated": record.escalated,
        "confirmed": record.confirmed,
        "resolved_by": record.resolved_by,
        "turns_without_progress": record.turns_without_progress,
        "route_why": record.route_why,
    }


def _changed_task(write: TaskWrite) -> dict[str, Any]:
    assert write.expected_version is not None
    changed = _task_values(write)
    del changed["id"], changed["created_at"]
    changed["version"] = write.expected_version + 1
    changed["guard_id"] = write.record.id
    changed["guard_version"] = write.expected_version
    return changed


async def _write_tasks(conn: AsyncConnection, group: list[Batch]) -> None:
    """The group's guarded task updates, new tasks and their events, one statement each.

    The updates are given in task id order, but that does not fix the order their rows
    lock in: the join plan of `UPDATE ... FROM unnest(...)` decides it. Two replicas'
    groups can then deadlock on task rows; PostgreSQL detects it and fails one
    transaction, whose batches `Conversations.commit` writes again one by one."""
    new_tasks: list[dict[str, Any]] = []
    changed: list[TaskWrite] = []
    events: list[dict[str, Any]] = []
    for batch in group:
        task = batch.task
        if task is None:
            continue
        if task.expected_version is None:
            new_tasks.append(_task_values(task))
        else:
            changed.append(task)
        for kind, data in task.events:
            events.append(
                {"task_id": task.record.id, "at": batch.now, "kind": kind, "data": dumps(data)}
            )
    if changed:
        await _update_tasks(conn, sorted(changed, key=lambda write: write.record.id))
    if new_tasks:
        await conn.execute(_INSERT_TASK, new_tasks)
    if events:
        await conn.execute(_INSERT_EVENT, events)


def _unguarded(group: list[Batch]) -> list[str]:
    """The tasks, in id order, that the group gives an envelope in a batch that does not
    write the task itself (no caller does so today). Both backends move each one's version
    once per group, after the group's own task writes (`_bump_unguarded`, and
    `_write_group_sqlite`): a history remembered for the task (see `Conversations.history`)
    then no longer matches its version, and a plan made on it fails its guarded commit."""
    return sorted(
        {
            write.task_id
            for batch in group
            for write in batch.envelopes
            if write.task_id is not None
            and (batch.task is None or batch.task.record.id != write.task_id)
        }
    )


async def _bump_unguarded(conn: AsyncConnection, group: list[Batch]) -> None:
    """`_unguarded(group)`'s versions moved on, in one UPDATE (PostgreSQL)."""
    unguarded = _unguarded(group)
    if unguarded:
        await conn.execute(
            update(tasks).where(tasks.c.id.in_(unguarded)).values(version=tasks.c.version + 1)
        )


async def _update_tasks(conn: AsyncConnection, writes: list[TaskWrite]) -> None:
    """Guarded updates of existing tasks (their events are the caller's): one UPDATE, or for
    several one UPDATE ... FROM (VALUES ...) RETURNING the ids it changed. Each task must be
    found at the version it was read at; fewer rows changed than asked is a lost guard (two
    updates of one task from one version change it once)."""
    if len(writes) == 1:
        result = await conn.execute(_UPDATE_TASK, _changed_task(writes[0]))
        if result.rowcount != 1:
            raise TaskChanged()
        return
    rows = [_changed_task(write) for write in writes]
    parameters = {name: [row[name] for row in rows] for name in _UPDATE_TASKS_COLUMNS}
    if len((await conn.execute(_UPDATE_TASKS, parameters)).all()) != len(writes):
        raise TaskChanged()


def _update_tasks_statement() -> Any:
    """UPDATE tasks ... FROM unnest(<one array per column>): one statement text for any
    number of rows, so SQLAlchemy compiles it once and asyncpg prepares it once per
    connection. (A FROM (VALUES ...) made of the rows had no cache key: it was compiled
    again for every group, about a tenth of a replica's time in a conversation.)"""
    kinds = {"guard_id": tasks.c.id.type, "guard_version": tasks.c.version.type}
    kinds.update({name: tasks.c[name].type for name in (*_TASK_COLUMNS, "version")})
    names = ", ".join(kinds)
    arrays = ", ".join(f":{name}" for name in kinds)
    sets = ", ".join(f"{name} = given.{name}" for name in (*_TASK_COLUMNS, "version"))
    return (
        text(
            f"UPDATE tasks SET {sets} FROM unnest({arrays}) AS given({names})"
            " WHERE tasks.id = given.guard_id AND tasks.version = given.guard_version"
            " RETURNING tasks.id"
        )
        .bindparams(*(bindparam(name, type_=ARRAY(kind)) for name, kind in kinds.items()))
        .columns(tasks.c.id)
    )


def _envelope_values(write: EnvelopeWrite, now: datetime) -> dict[str, Any]:
    return {
        "sender": write.sender,
        "envelope_id": write.envelope_id,
        "recipient": write.recipient,
        "task_id": write.task_id,
        "act": write.act,
        "digest": write.digest,
        "body": write.text if write.text is not None else dumps(write.body),
        "answer": dumps(write.answer) if write.answer is not None else None,
        "accepted_at": now,
    }


def _outbox_values(item: OutboxWrite, now: datetime) -> dict[str, Any]:
    return {
        "public_id": item.public_id,
        "kind": item.kind,
        "partition": item.partition,
        "payload": dumps(item.payload),
        "task_id": item.task_id,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


async def _insert_outboxes(
    conn: AsyncConnection, items: list[OutboxWrite], now: datetime
) -> list[tuple[int, str, str]]:
    """`items` in one multi-row INSERT, their pks in the items' order."""
    if not items:
        return []
    result = await conn.execute(_INSERT_OUTBOXES, [_outbox_values(item, now) for item in items])
    return [
        (int(pk), item.kind, item.partition)
        for pk, item in zip(result.scalars().all(), items, strict=True)
    ]


async def _insert_outbox(
    conn: AsyncConnection, item: OutboxWrite, now: datetime
) -> tuple[int, str, str]:
    result = await conn.execute(
        outbox.insert()
        .values(
            public_id=item.public_id,
            kind=item.kind,
            partition=item.partition,
            payload=dumps(item.payload),
            task_id=item.task_id,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        .returning(outbox.c.pk)
    )
    return int(result.scalar_one()), item.kind, item.partition


class SqliteRows:
    """An INSERT of some of a table's columns as plain sqlite3 SQL, with SQLAlchemy's own
    bind processors for those columns (so stored values match what Core would write)."""

    def __init__(self, table: Any, columns: tuple[str, ...], suffix: str = "") -> None:
        dialect = sqlite.dialect()
        names = ", ".join(f'"{name}"' for name in columns)
        marks = ", ".join("?" for _ in columns)
        self.sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks}){suffix}"
        processors = [
            _utc_bind() if isinstance(table.c[name].type, UtcDateTime) else process
            for name, process in (
                (name, table.c[name].type._cached_bind_processor(dialect)) for name in columns
            )
        ]
        self.table, self.columns = table, columns
        self._width = len(columns)
        # Only the columns that have a processor are visited (a few of each row's values).
        self._processed = tuple(
            (index, process) for index, process in enumerate(processors) if process is not None
        )

    def params(self, *values: Any) -> tuple[Any, ...]:
        if len(values) != self._width:
            raise ValueError(f"{self.sql} takes {self._width} values, not {len(values)}")
        row = list(values)
        for index, process in self._processed:
            value = row[index]
            if value is not None:
                row[index] = process(value)
        return tuple(row)


@functools.cache
def _utc_bind() -> Any:
    """The timestamps' bind processor (`UtcDateTime` on SQLite, the same for every such
    column), remembering its recent answers: a group's rows carry the same few instants
    (each batch's `now`) many times over, in several columns of several tables. One memory
    for all the columns, so a batch's `now` is formatted once, not once per column."""
    process = UtcDateTime()._cached_bind_processor(sqlite.dialect())
    assert process is not None, "a timestamp always has a bind processor"
    return functools.lru_cache(maxsize=1024)(process)


_TASK_COLUMNS = (
    "initiator",
    "responder",
    "brand",
    "state",
    "control",
    "updated_at",
    "completed_at",
    "escalated",
    "confirmed",
    "resolved_by",
    "turns_without_progress",
    "route_why",
)
_UPDATE_TASKS_COLUMNS = ("guard_id", "guard_version", *_TASK_COLUMNS, "version")
_UPDATE_TASKS = _update_tasks_statement()
_RAW_TASK = SqliteRows(tasks, ("id", "created_at", "version", *_TASK_COLUMNS))
_RAW_TASK_UPDATE = (
    "UPDATE tasks SET "
    + ", ".join(f"{name} = ?" for name in _TASK_COLUMNS)
    + ", version = ? WHERE id = ? AND version = ?"
)
_RAW_BUMP_TASK = "UPDATE tasks SET version = version + 1 WHERE id = ?"
_RAW_EVENT = SqliteRows(task_events, ("task_id", "at", "kind", "data"))
_RAW_ENVELOPE = SqliteRows(
    envelopes,
    (
        "sender",
        "envelope_id",
        "recipient",
        "task_id",
        "act",
        "digest",
        "body",
        "answer",
        "accepted_at",
    ),
)
_RAW_INBOX = SqliteRows(
    inbox, ("agent", "seq", "envelope_pk", "task_id", "task_state", "task_control", "created_at")
)
_RAW_OUTBOX = SqliteRows(
    outbox,
    (
        "public_id",
        "kind",
        "partition",
        "payload",
        "task_id",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "updated_at",
    ),
)
_RAW_BUMP_HEAD = (
    "INSERT INTO inbox_heads (agent, last_seq) VALUES (?, ?) ON CONFLICT (agent)"
    " DO UPDATE SET last_seq = last_seq + excluded.last_seq RETURNING last_seq"
)


@dataclass(slots=True)
class _InThread:
    """What the plain sqlite3 call wrote of one batch: its inbox seqs and outbox rows; when
    it could not run all the batch's extras, how many it ran and the outbox rows they caused
    (not yet written)."""

    seqs: list[tuple[str, int]]
    rows: list[tuple[int, str, str]]
    applied: int = 0
    caused: list[OutboxWrite] | None = None


def _write_outbox_row(cursor: sqlite3.Cursor, item: OutboxWrite, now: datetime) -> int:
    cursor.execute(
        _RAW_OUTBOX.sql,
        _RAW_OUTBOX.params(
            item.public_id,
            item.kind,
            item.partition,
            dumps(item.payload),
            item.task_id,
            "pending",
            0,
            now,
            now,
            now,
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _write_group_sqlite(
    db: sqlite3.Connection, group: list[Batch], ids: list[list[str]]
) -> list[_InThread]:
    """One plain sqlite3 call (`SqliteEngine.write_plain`, or aiosqlite's thread under a
    SQLAlchemy transaction): every batch's task, events, envelopes, inbox items and
    delivery rows, and the extras that write themselves (`SqliteWrite`) with the outbox rows
    they cause. Once a batch has an extra that cannot, its remaining extras and those of
    every later batch are left to the caller, so extras still apply in batch order."""
    results: list[_InThread] = []
    deferred = False
    inbox_rows: list[list[Any]] = []  # seq filled in once the heads are bumped
    counts: dict[str, int] = {}
    cursor = db.cursor()
    for batch, public_ids in zip(group, ids, strict=True):
        now = batch.now
        seqs: list[tuple[str, int]] = []
        rows: list[tuple[int, str, str]] = []
        brief = None
        if batch.task is not None:
            write = batch.task
            record = write.record
            values = (
                record.initiator,
                record.responder,
                record.brand,
                record.state,
                record.control,
                record.updated_at,
                record.completed_at,
                record.escalated,
                record.confirmed,
                record.resolved_by,
                record.turns_without_progress,
                record.route_why,
            )
            if write.expected_version is None:
                cursor.execute(
                    _RAW_TASK.sql, _RAW_TASK.params(record.id, record.created_at, 1, *values)
                )
            else:
                processed = _RAW_TASK.params(record.id, record.created_at, 1, *values)[3:]
                cursor.execute(
                    _RAW_TASK_UPDATE,
                    (*processed, write.expected_version + 1, record.id, write.expected_version),
                )
                if cursor.rowcount != 1:
                    raise TaskChanged()
            for kind, data in write.events:
                cursor.execute(_RAW_EVENT.sql, _RAW_EVENT.params(record.id, now, kind, dumps(data)))
            brief = record.brief()
        next_id = iter(public_ids)
        for envelope in batch.envelopes:
            cursor.execute(
                _RAW_ENVELOPE.sql,
                _RAW_ENVELOPE.params(
                    envelope.sender,
                    envelope.envelope_id,
                    envelope.recipient,
                    envelope.task_id,
                    envelope.act,
                    envelope.digest,
                    envelope.text if envelope.text is not None else dumps(envelope.body),
                    dumps(envelope.answer) if envelope.answer is not None else None,
                    now,
                ),
            )
            pk = cursor.lastrowid
            assert pk is not None
            for agent in envelope.inbox_for:
                counts[agent] = counts.get(agent, 0) + 1
                row: list[Any] = [
                    agent,
                    0,
                    pk,
                    envelope.task_id,
                    brief["state"] if brief else None,
                    brief["control"] if brief else None,
                    now,
                ]
                inbox_rows.append(row)
                seqs.append((agent, 0))
            for agent in envelope.deliver_to:
                item = OutboxWrite(
                    public_id=next(next_id),
                    kind="delivery",
                    partition=agent,
                    payload={"envelope_pk": pk, "agent": agent, "task": brief},
                    task_id=envelope.task_id,
                )
                rows.append((_write_outbox_row(cursor, item, now), "delivery", agent))
        done = _InThread(seqs, rows)
        applied = 0 if deferred else _sqlite_prefix(batch)
        caused: list[OutboxWrite] = []
        for extra in batch.extra[:applied]:
            caused.extend(extra.apply_sqlite(db, now))  # type: ignore[attr-defined]
        if applied == len(batch.extra) and not deferred:
            for item in [*batch.outbox, *caused]:
                rows.append((_write_outbox_row(cursor, item, now), item.kind, item.partition))
        else:
            deferred = True
            done.applied, done.caused = applied, caused
        results.append(done)
    # Tasks given envelopes without their own guarded write: their versions move on, after
    # the group's task writes, as on PostgreSQL (`_unguarded`).
    unguarded = _unguarded(group)
    if unguarded:
        cursor.executemany(_RAW_BUMP_TASK, [(task_id,) for task_id in unguarded])
    # Each agent's head once, by the group's count for it; then the seqs in batch order.
    firsts: dict[str, int] = {}
    for agent, count in counts.items():
        cursor.execute(_RAW_BUMP_HEAD, (agent, count))
        (last,) = cursor.fetchone()
        firsts[agent] = int(last) - count + 1
    position = 0
    for done in results:
        seqs = done.seqs
        for index, (agent, _) in enumerate(seqs):
            seq = firsts[agent]
            firsts[agent] = seq + 1
            seqs[index] = (agent, seq)
            inbox_rows[position][1] = seq
            position += 1
    cursor.executemany(_RAW_INBOX.sql, [_RAW_INBOX.params(*row) for row in inbox_rows])
    cursor.close()
    return results


_RAW_INBOX_READ = (
    "SELECT inbox.seq, inbox.task_id, inbox.task_state, inbox.task_control, envelopes.body"
    " FROM inbox JOIN envelopes ON envelopes.pk = inbox.envelope_pk"
    " WHERE inbox.agent = ? AND inbox.seq > ? ORDER BY inbox.seq LIMIT ?"
)


def _inbox_sqlite(db: sqlite3.Connection, agent: str, after: int, limit: int) -> list[InboxItem]:
    """`Conversations.inbox` in one plain sqlite3 call: the same query, the same items."""
    return [
        InboxItem(
            seq=int(seq),
            envelope=json.loads(body),
            task=(
                {"id": task_id, "state": task_state, "control": task_control} if task_id else None
            ),
        )
        for seq, task_id, task_state, task_control, body in db.execute(
            _RAW_INBOX_READ, (agent, after, limit)
        )
    ]


def _sqlite_prefix(batch: Batch) -> int:
    """How many of the batch's first extras write themselves in plain sqlite3: only a leading
    run, so extras still apply in their order (a disarm must not overtake a fire's guard)."""
    count = 0
    for extra in batch.extra:
        if not hasattr(extra, "apply_sqlite"):
            break
        count += 1
    return count


def _all_grouped(extras: list[Write]) -> bool:
    """Whether every one of `extras` can be written together with others (`GroupedWrite`)."""
    return all(hasattr(extra, "apply_together") for extra in extras)


async def _apply_grouped(conn: AsyncConnection, run: list[Batch]) -> None:
    """The extras of `run`'s batches (all `GroupedWrite`s), one statement per class when no
    two name the same row (then their order cannot matter), else one by one in order."""
    writes: list[tuple[Any, datetime]] = [
        (extra, batch.now) for batch in run for extra in batch.extra
    ]
    if not writes:
        return
    if len({write.row for write, _ in writes}) < len(writes):
        for write, now in writes:
            await write.apply(conn, now)
        return
    by_class: dict[type[GroupedWrite], list[tuple[Any, datetime]]] = {}
    for write, now in writes:
        by_class.setdefault(type(write), []).append((write, now))
    for kind, together in by_class.items():
        await kind.apply_together(conn, together)


def _first_inbox(batch: Batch) -> str:
    for write in batch.envelopes:
        for agent in write.inbox_for:
            return agent
    return ""


def _task(row: Row[Any]) -> TaskRecord:
    return TaskRecord(
        id=row.id,
        initiator=row.initiator,
        responder=row.responder,
        brand=row.brand,
        state=row.state,
        control=row.control,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
        escalated=bool(row.escalated),
        confirmed=bool(row.confirmed),
        resolved_by=row.resolved_by,
        turns_without_progress=int(row.turns_without_progress),
        route_why=row.route_why,
    )


def _envelope(row: Row[Any]) -> StoredEnvelope:
    return StoredEnvelope(
        pk=int(row.pk),
        sender=row.sender,
        envelope_id=row.envelope_id,
        recipient=row.recipient,
        task_id=row.task_id,
        act=row.act,
        digest=row.digest,
        body=json.loads(row.body),
        answer=json.loads(row.answer) if row.answer else None,
        accepted_at=row.accepted_at,
    )


def _window(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The opening envelope and the newest ones, `_TURNS_PER_TASK` at most (see `history`)."""
    if len(bodies) <= _TURNS_PER_TASK:
        return bodies
    return [bodies[0], *bodies[len(bodies) - _TURNS_PER_TASK + 1 :]]
