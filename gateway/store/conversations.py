"""Tasks, the envelopes in them, inboxes and the outbox: the conversation side of the store.

`commit` writes everything one accepted envelope causes in ONE transaction: the envelope
(whose unique (sender, id) is the replay memory), the task's insert or guarded update, its
events, an inbox item per recipient, and the outbox rows for work that must happen after the
commit. Accepted means durable: the gateway answers 202 only after `commit` returns.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    PrimaryKeyConstraint,
    Row,
    UniqueConstraint,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.clock import iso
from gateway.store.records import InboxItem, StoredEnvelope, TaskRecord, dumps
from gateway.store.tables import (
    envelopes,
    inbox,
    inbox_heads,
    metadata,
    outbox,
    task_events,
    tasks,
)

_MAX_GROUP = 64  # batches in one shared transaction at most

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
    message = str(exc.orig)
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


class Write(Protocol):
    """More rows for the same transaction (escalations, timers, ledger entries...).

    `apply` runs after the task and the envelopes are written; it returns the outbox rows its
    writes cause, and raises to roll the whole batch back (a lost guard, for example).
    """

    async def apply(self, conn: AsyncConnection, now: datetime) -> list[OutboxWrite]: ...


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
            self._writer = asyncio.create_task(self._drain(), name="conversations-writer")
        return await asyncio.shield(future)

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
                for batch, future in group:
                    try:
                        (result,) = await self._write([batch])
                    except Exception as single:
                        if not future.done():
                            future.set_exception(single)
                    else:
                        if not future.done():
                            future.set_result(result)
                continue
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _fail_pending(self, exc: BaseException) -> None:
        """The writer is stopping (the gateway shuts down): nobody waits for ever."""
        pending, self._pending = self._pending, []
        for _, future in pending:
            if not future.done():
                future.set_exception(exc)

    async def _write(self, group: list[Batch]) -> list[Committed]:
        try:
            async with self._engine.begin() as conn:
                return [await self._apply(conn, batch) for batch in group]
        except IntegrityError as exc:
            broken = violated_constraint(exc)
            if broken == REPLAY_CONSTRAINT:
                raise ReplayCollision() from exc
            if broken == TASK_KEY_CONSTRAINT:
                raise TaskChanged() from exc
            raise

    async def _apply(self, conn: AsyncConnection, batch: Batch) -> Committed:
        seqs: list[tuple[str, int]] = []
        rows: list[tuple[int, str, str]] = []
        if batch.task is not None:
            await _write_task(conn, batch.task, batch.now)
        brief = batch.task.record.brief() if batch.task else None
        for write in batch.envelopes:
            pk = await _insert_envelope(conn, write, batch.now)
            for agent in write.inbox_for:
                seq = await _next_seq(conn, agent)
                await conn.execute(
                    _INSERT_INBOX,
                    {
                        "agent": agent,
                        "seq": seq,
                        "envelope_pk": pk,
                        "task_id": write.task_id,
                        "task_state": brief["state"] if brief else None,
                        "task_control": brief["control"] if brief else None,
                        "created_at": batch.now,
                    },
                )
                seqs.append((agent, seq))
            for agent in write.deliver_to:
                rows.append(
                    await _insert_outbox(
                        conn,
                        OutboxWrite(
                            public_id=self._new_id("dlv"),
                            kind="delivery",
                            partition=agent,
                            payload={"envelope_pk": pk, "agent": agent, "task": brief},
                            task_id=write.task_id,
                        ),
                        batch.now,
                    )
                )
        caused = list(batch.outbox)
        for extra in batch.extra:
            caused.extend(await extra.apply(conn, batch.now))
        for item in caused:
            rows.append(await _insert_outbox(conn, item, batch.now))
        return Committed(tuple(seqs), tuple(rows))

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

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(envelopes.c.body)
                    .where(envelopes.c.task_id == task_id)
                    .order_by(envelopes.c.pk)
                )
            ).all()
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
    ) -> list[TaskRecord]:
        query = select(tasks)
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
                await conn.execute(query.order_by(tasks.c.updated_at.desc()).limit(limit))
            ).all()
        return [_task(row) for row in rows]

    async def inbox(self, agent: str, after: int, limit: int) -> list[InboxItem]:
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
        async with self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(inbox))).scalar_one())

    async def envelope(self, pk: int) -> StoredEnvelope | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(envelopes).where(envelopes.c.pk == pk))).first()
        return _envelope(row) if row else None


# The hot path's statements, built once: the values come as execute() parameters, so no
# statement is constructed (nor its cache key walked over bound values) per envelope.
_INSERT_ENVELOPE = envelopes.insert().returning(envelopes.c.pk)
_INSERT_INBOX = inbox.insert()
_INSERT_TASK = tasks.insert()
_INSERT_EVENT = task_events.insert()
_UPDATE_TASK = update(tasks).where(
    and_(tasks.c.id == bindparam("guard_id"), tasks.c.version == bindparam("guard_version"))
)
_BUMP_INBOX_HEAD = {
    is_postgresql: dialect.insert(inbox_heads)
    .on_conflict_do_update(
        index_elements=[inbox_heads.c.agent], set_={"last_seq": inbox_heads.c.last_seq + 1}
    )
    .returning(inbox_heads.c.last_seq)
    for is_postgresql, dialect in ((True, postgresql), (False, sqlite))
}


async def _write_task(conn: AsyncConnection, write: TaskWrite, now: datetime) -> None:
    record = write.record
    values = {
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
    if write.expected_version is None:
        await conn.execute(
            _INSERT_TASK, {"id": record.id, "created_at": record.created_at, "version": 1, **values}
        )
    else:
        result = await conn.execute(
            _UPDATE_TASK,
            {
                "guard_id": record.id,
                "guard_version": write.expected_version,
                "version": write.expected_version + 1,
                **values,
            },
        )
        if result.rowcount != 1:
            raise TaskChanged()
    for kind, data in write.events:
        await conn.execute(
            _INSERT_EVENT, {"task_id": record.id, "at": now, "kind": kind, "data": dumps(data)}
        )


async def _insert_envelope(conn: AsyncConnection, write: EnvelopeWrite, now: datetime) -> int:
    result = await conn.execute(
        _INSERT_ENVELOPE,
        {
            "sender": write.sender,
            "envelope_id": write.envelope_id,
            "recipient": write.recipient,
            "task_id": write.task_id,
            "act": write.act,
            "digest": write.digest,
            "body": dumps(write.body),
            "answer": dumps(write.answer) if write.answer is not None else None,
            "accepted_at": now,
        },
    )
    return int(result.scalar_one())


async def _next_seq(conn: AsyncConnection, agent: str) -> int:
    """The agent's next inbox seq. The upsert takes the head row's lock until commit, so
    writers to one inbox serialise and seqs become visible in order."""
    statement = _BUMP_INBOX_HEAD[conn.dialect.name == "postgresql"]
    return int((await conn.execute(statement, {"agent": agent, "last_seq": 1})).scalar_one())


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
