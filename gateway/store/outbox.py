"""The outbox as the worker sees it: heads of partitions, leases, attempts.

Rows are written by `Conversations.commit` (and by other writers with their own kinds); this
module only moves them along. Order is per (kind, partition): a row is workable only when no
older row of its partition is still pending, so a partition's head blocks the rest until it is
delivered or fails for good.

A worker claims a row with ONE guarded UPDATE (pending, due, lease free or expired, still the
head): on PostgreSQL two replicas racing for a row serialise on its row lock and the loser
sees zero rows updated; on SQLite the write lock does the same. Only portable SQL is used.
A lease is never taken again by its own holder while it runs, so two claimers inside one
process are kept apart the same way; a restarted replica first releases what its previous
life held (`release`), and takes those rows back at once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.clock import iso
from gateway.store.batches import KINDS as BATCH_KINDS
from gateway.store.batches import with_followers, with_followers_raw
from gateway.store.database import SqliteEngine
from gateway.store.outbox_rows import (
    PENDING,
    RAW_RETURNED,
    RETURNED,
    AttemptWrite,
    DeliveryTarget,
    OutboxRow,
    as_datetime,
    row_of,
    time_in,
    time_out,
)
from gateway.store.records import dumps
from gateway.store.tables import agents, envelopes, outbox, outbox_attempts, task_events

# The statements of the hot path, built once: building a SQLAlchemy statement costs more CPU
# than executing it (~150 us of ~350 us on SQLite); bound parameters carry the values.

_PARTITION_OF = select(outbox.c.kind, outbox.c.partition).where(
    and_(outbox.c.pk == bindparam("row_pk"), outbox.c.status == PENDING)
)

_TARGET = (
    select(
        envelopes.c.body,
        agents.c.kind,
        agents.c.endpoint_url,
        agents.c.endpoint_status,
        agents.c.endpoint_note,
        agents.c.endpoint_max_batch,
    )
    .select_from(envelopes.join(agents, agents.c.address == bindparam("address")))
    .where(envelopes.c.pk == bindparam("envelope_pk"))
)


# A claim leases a partition's head, the partition's oldest pending row (a scalar subquery),
# while it is pending, due and not leased. `_CLAIM` names the partition; `_CLAIM_WOKEN` names
# one of its rows (the one a wake-up is about) and finds the partition from it. (Parameters of
# an UPDATE may not be named like its columns, hence the prefixes.)
def _claim_statement(kind: Any, partition: Any) -> Any:
    mates = outbox.alias("mates")
    head = (
        select(func.min(mates.c.pk))
        .where(
            and_(mates.c.kind == kind, mates.c.partition == partition, mates.c.status == PENDING)
        )
        .scalar_subquery()
    )
    return (
        update(outbox)
        .where(
            and_(
                outbox.c.pk == head,
                outbox.c.status == PENDING,
                outbox.c.next_attempt_at <= bindparam("claim_now"),
                or_(
                    outbox.c.leased_until.is_(None),
                    outbox.c.leased_until < bindparam("claim_now"),
                ),
            )
        )
        .values(
            lease_owner=bindparam("claim_owner"),
            leased_until=bindparam("claim_until", type_=outbox.c.leased_until.type),
        )
        .returning(*RETURNED)
    )


_CLAIM = _claim_statement(bindparam("claim_kind"), bindparam("claim_partition"))

_woken = outbox.alias("woken")
_CLAIM_WOKEN = _claim_statement(
    bindparam("claim_kind"),
    select(_woken.c.partition)
    .where(and_(_woken.c.pk == bindparam("claim_row"), _woken.c.kind == bindparam("claim_kind")))
    .scalar_subquery(),
)


def _claim_after_statement() -> Any:
    """Lease the partition's first pending row after row `claim_after`, when every pending row
    of the partition up to `claim_after` is leased by `claim_owner` (it holds them, in
    flight): the next row in line, taken while the ones before it are still being settled."""
    mates = outbox.alias("mates")
    earlier = outbox.alias("earlier")
    kind: Any = bindparam("claim_kind")
    partition: Any = bindparam("claim_partition")
    after: Any = bindparam("claim_after")
    owner: Any = bindparam("claim_owner")
    now: Any = bindparam("claim_now")
    following = (
        select(func.min(mates.c.pk))
        .where(
            and_(
                mates.c.kind == kind,
                mates.c.partition == partition,
                mates.c.status == PENDING,
                mates.c.pk > after,
            )
        )
        .scalar_subquery()
    )
    not_held = (
        select(earlier.c.pk)
        .where(
            and_(
                earlier.c.kind == kind,
                earlier.c.partition == partition,
                earlier.c.status == PENDING,
                earlier.c.pk <= after,
                or_(
                    earlier.c.lease_owner.is_(None),
                    earlier.c.lease_owner != owner,
                    earlier.c.leased_until < now,
                ),
            )
        )
        .exists()
    )
    return (
        update(outbox)
        .where(
            and_(
                outbox.c.pk == following,
                outbox.c.status == PENDING,
                outbox.c.next_attempt_at <= now,
                or_(outbox.c.leased_until.is_(None), outbox.c.leased_until < now),
                ~not_held,
            )
        )
        .values(
            lease_owner=owner,
            leased_until=bindparam("claim_until", type_=outbox.c.leased_until.type),
        )
        .returning(*RETURNED)
    )


_CLAIM_AFTER = _claim_after_statement()

_ADD_ATTEMPT = outbox_attempts.insert()

_SETTLE = (
    update(outbox)
    .where(and_(outbox.c.pk == bindparam("row_pk"), outbox.c.lease_owner == bindparam("owner")))
    .values(
        status=bindparam("new_status"),
        attempts=outbox.c.attempts + 1,
        next_attempt_at=bindparam("new_next_attempt_at", type_=outbox.c.next_attempt_at.type),
        last_error=bindparam("new_last_error"),
        updated_at=bindparam("new_updated_at", type_=outbox.c.updated_at.type),
        lease_owner=None,
        leased_until=None,
    )
)


class OutboxStore:
    """Reads and moves outbox rows. Every method is one short transaction.

    On SQLite the worker's hot path (claim, record + claim the next, the partition of a row)
    runs each as ONE call with plain sqlite3 (`_Raw` below, `SqliteEngine.write_plain`):
    through SQLAlchemy and aiosqlite every statement costs several thread round trips, each an
    event loop wake-up. The statements are the same as the SQLAlchemy ones, the values go through
    the columns' own bind and result processors.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine if isinstance(engine, SqliteEngine) else None

    async def due_heads(
        self, kinds: Sequence[str], now: datetime, limit: int, owner: str
    ) -> list[tuple[int, str, str]]:
        """(pk, kind, partition) of partition heads that are due and not leased, oldest first
        (`owner` is kept for the callers; a replica's own leases are in flight, not free)."""
        heads = (
            select(func.min(outbox.c.pk).label("pk"))
            .where(and_(outbox.c.status == PENDING, outbox.c.kind.in_(list(kinds))))
            .group_by(outbox.c.kind, outbox.c.partition)
            .subquery()
        )
        query = (
            select(outbox.c.pk, outbox.c.kind, outbox.c.partition)
            .join(heads, heads.c.pk == outbox.c.pk)
            .where(
                and_(
                    outbox.c.next_attempt_at <= now,
                    or_(outbox.c.leased_until.is_(None), outbox.c.leased_until < now),
                )
            )
            .order_by(outbox.c.pk)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(int(row.pk), row.kind, row.partition) for row in rows]

    async def claim_head(
        self, kind: str, partition: str, owner: str, now: datetime, lease_s: float
    ) -> OutboxRow | None:
        """Lease the partition's head if it is due; None when there is nothing to do now."""
        if self._sqlite is not None:
            claim = _Claim(kind, partition, None, owner, now, now + timedelta(seconds=lease_s))
            result: OutboxRow | None = await self._sqlite.write_plain(_claim_raw, claim)
            return result
        async with self._engine.begin() as conn:
            return await _claim(conn, kind, partition, owner, now, lease_s)

    async def claim_woken(
        self, kind: str, pk: int, owner: str, now: datetime, lease_s: float
    ) -> OutboxRow | None:
        """Lease the head of the partition that row `pk` (of `kind`) belongs to, finding the
        partition in the same statement: a wake-up's row starts its delivery with one
        transaction. None when that head is not due, leased, or there is none."""
        if self._sqlite is not None:
            claim = _Claim(kind, "", pk, owner, now, now + timedelta(seconds=lease_s))
            result: OutboxRow | None = await self._sqlite.write_plain(_claim_raw, claim)
            return result
        async with self._engine.begin() as conn:
            return await _claim(conn, kind, "", owner, now, lease_s, woken=pk)

    async def claim_after(
        self, row: OutboxRow, owner: str, now: datetime, lease_s: float
    ) -> OutboxRow | None:
        """Lease the row after `row` (after its last follower) in its partition, while `owner`
        holds `row` (and every pending row before it): the next delivery, ready before `row` is
        settled. None when there is none, or it is not due or leased, or `row` is no longer
        held."""
        after = row.last_pk
        if self._sqlite is not None:
            claim = _Claim(
                row.kind, row.partition, None, owner, now, now + timedelta(seconds=lease_s), after
            )
            result: OutboxRow | None = await self._sqlite.write_plain(_claim_raw, claim)
            return result
        async with self._engine.begin() as conn:
            return await _claim(conn, row.kind, row.partition, owner, now, lease_s, after=after)

    async def partition_of(self, pk: int) -> tuple[str, str] | None:
        """(kind, partition) of a row that is still pending, None otherwise: what a wake-up
        naming the row needs to find its partition, without scanning for heads."""
        if self._sqlite is not None:
            found: tuple[str, str] | None = await self._sqlite.read_plain(_partition_of_raw, pk)
            return found
        async with self._engine.connect() as conn:
            row = (await conn.execute(_PARTITION_OF, {"row_pk": pk})).first()
        return None if row is None else (row.kind, row.partition)

    async def delivery_target(self, envelope_pk: int, address: str) -> DeliveryTarget | None:
        """What one delivery needs in one read: the stored envelope and the recipient's
        endpoint as it is now. None when either is gone. (A claimed row normally carries its
        target already, read in the claiming transaction.)"""
        async with self._engine.connect() as conn:
            return await _target(conn, envelope_pk, address)

    async def record(
        self,
        row: OutboxRow,
        owner: str,
        attempt: AttemptWrite,
        claim_next_s: float | None = None,
        after: int | None = None,
        followers: Sequence[tuple[OutboxRow, AttemptWrite]] = (),
        claim_at: datetime | None = None,
    ) -> tuple[bool, OutboxRow | None]:
        """Write the attempt and the row's new state, and (with `claim_next_s`) lease the
        partition's next due head in the same transaction, saving a commit per row; with
        `after` (a row of the partition that `owner` holds), the row after that one instead
        (`claim_after`). `followers` are the rows that went in the same batch as `row`, with
        their own attempts: written in the same transaction. `claim_at` is the time the
        next claim judges rows due by (the attempt's time when not given).

        Returns whether the lease was still ours (if not, the attempt is kept and the row is
        left to its new holder; for a batch, whether every lease was) and the next row, if one
        was claimed.
        """
        writes = [(row.pk, attempt), *((one.pk, write) for one, write in followers)]
        if self._sqlite is not None:
            following_claim = None
            if claim_next_s is not None:
                following_claim = _Claim(
                    row.kind,
                    row.partition,
                    None,
                    owner,
                    claim_at or attempt.at,
                    (claim_at or attempt.at) + timedelta(seconds=claim_next_s),
                    after,
                )
            recorded: tuple[bool, OutboxRow | None] = await self._sqlite.write_plain(
                _record_raw, writes, owner, following_claim
            )
            return recorded
        kept = True
        async with self._engine.begin() as conn:
            for pk, write in writes:
                await conn.execute(
                    _ADD_ATTEMPT,
                    {
                        "outbox_pk": pk,
                        "at": write.at,
                        "outcome": write.outcome,
                        "status_code": write.status_code,
                        "error": write.error,
                        "note": write.note,
                        "duration_ms": write.duration_ms,
                    },
                )
                result = await conn.execute(
                    _SETTLE,
                    {
                        "row_pk": pk,
                        "owner": owner,
                        "new_status": write.row_status,
                        "new_next_attempt_at": write.next_attempt_at,
                        "new_last_error": write.last_error,
                        "new_updated_at": write.at,
                    },
                )
                kept = kept and result.rowcount == 1
            following = None
            if claim_next_s is not None:
                moment = claim_at or attempt.at
                following = await _claim(
                    conn, row.kind, row.partition, owner, moment, claim_next_s, after=after
                )
        return kept, following

    async def release(self, owner: str) -> None:
        """Give up every lease `owner` holds (a clean stop), so any replica may go on at once."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(outbox)
                .where(and_(outbox.c.lease_owner == owner, outbox.c.status == PENDING))
                .values(lease_owner=None, leased_until=None)
            )

    async def release_row(self, pk: int, owner: str) -> None:
        """Give up `owner`'s lease on one row (its attempt could not be recorded), so the
        sweep may take it again at once rather than when the lease runs out."""
        await self.release_rows([pk], owner)

    async def release_rows(self, pks: Sequence[int], owner: str) -> None:
        """`release_row` for several rows (a batch), in one transaction."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(outbox)
                .where(
                    and_(
                        outbox.c.pk.in_(list(pks)),
                        outbox.c.lease_owner == owner,
                        outbox.c.status == PENDING,
                    )
                )
                .values(lease_owner=None, leased_until=None)
            )

    async def pending_count(self, kinds: Iterable[str] | None = None) -> int:
        query = select(func.count()).select_from(outbox).where(outbox.c.status == PENDING)
        if kinds is not None:
            query = query.where(outbox.c.kind.in_(list(kinds)))
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def for_task(self, task_id: str, kind: str) -> list[dict[str, Any]]:
        """The task's rows of one kind with every attempt, oldest first (the task view)."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(outbox)
                    .where(and_(outbox.c.task_id == task_id, outbox.c.kind == kind))
                    .order_by(outbox.c.pk)
                )
            ).all()
            if not rows:
                return []
            attempt_rows = (
                await conn.execute(
                    select(outbox_attempts)
                    .where(outbox_attempts.c.outbox_pk.in_([row.pk for row in rows]))
                    .order_by(outbox_attempts.c.pk)
                )
            ).all()
            payloads = {row.pk: json.loads(row.payload) for row in rows}
            envelope_pks = [
                p["envelope_pk"] for p in payloads.values() if isinstance(p.get("envelope_pk"), int)
            ]
            ids = {
                int(found.pk): found.envelope_id
                for found in (
                    await conn.execute(
                        select(envelopes.c.pk, envelopes.c.envelope_id).where(
                            envelopes.c.pk.in_(envelope_pks)
                        )
                    )
                ).all()
            }
        by_row: dict[int, list[dict[str, Any]]] = {}
        for attempt in attempt_rows:
            by_row.setdefault(int(attempt.outbox_pk), []).append(
                {
                    "at": iso(attempt.at),
                    "outcome": attempt.outcome,
                    "status": attempt.status_code,
                    "error": attempt.error,
                    "note": attempt.note,
                    "duration_ms": attempt.duration_ms,
                }
            )
        return [
            {
                "id": row.public_id,
                "recipient": row.partition,
                "envelope": ids.get(payloads[row.pk].get("envelope_pk")),
                "status": row.status,
                "created_at": iso(row.created_at),
                "next_attempt_at": iso(row.next_attempt_at) if row.status == PENDING else None,
                "last_error": row.last_error,
                "attempts": by_row.get(int(row.pk), []),
            }
            for row in rows
        ]

    async def add_task_event(
        self, task_id: str, kind: str, data: dict[str, Any], now: datetime
    ) -> None:
        """Note something that happened to a task outside an envelope (a delivery gave up)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                task_events.insert().values(task_id=task_id, at=now, kind=kind, data=dumps(data))
            )


async def _claim(
    conn: AsyncConnection,
    kind: str,
    partition: str,
    owner: str,
    now: datetime,
    lease_s: float,
    woken: int | None = None,
    after: int | None = None,
) -> OutboxRow | None:
    """Lease the partition's head (the partition of row `woken`, when given; the row after
    row `after`, when given, see `_CLAIM_AFTER`) if it is due; None when there is nothing to
    do now. The delivery target is read with it.

    One statement: the head is the partition's oldest pending row (a scalar subquery), and
    the update only happens while it is pending, due and not leased. On PostgreSQL a
    concurrent claimer blocks on the row lock, then re-checks the lease condition on the new
    row version and updates nothing.
    """
    parameters: dict[str, Any] = {
        "claim_kind": kind,
        "claim_owner": owner,
        "claim_now": now,
        "claim_until": now + timedelta(seconds=lease_s),
    }
    if after is not None:
        parameters["claim_partition"] = partition
        parameters["claim_after"] = after
        row = (await conn.execute(_CLAIM_AFTER, parameters)).first()
    elif woken is None:
        parameters["claim_partition"] = partition
        row = (await conn.execute(_CLAIM, parameters)).first()
    else:
        parameters["claim_row"] = woken
        row = (await conn.execute(_CLAIM_WOKEN, parameters)).first()
    if row is None:
        return None
    payload = json.loads(row.payload)
    target = None
    if isinstance(payload.get("envelope_pk"), int) and isinstance(payload.get("agent"), str):
        target = await _target(conn, payload["envelope_pk"], payload["agent"])
    head = row_of(tuple(row), target, as_datetime)
    if target is None or target.max_batch <= 1 or head.kind not in BATCH_KINDS:
        return head
    until = parameters["claim_until"]
    return await with_followers(conn, head, target, owner=owner, now=now, until=until)


async def _target(conn: AsyncConnection, envelope_pk: int, address: str) -> DeliveryTarget | None:
    """The stored envelope and the recipient's endpoint, in one query."""
    row = (await conn.execute(_TARGET, {"envelope_pk": envelope_pk, "address": address})).first()
    if row is None:
        return None
    return DeliveryTarget(
        envelope_json=row.body,
        agent_kind=row.kind,
        endpoint_url=row.endpoint_url,
        endpoint_status=row.endpoint_status,
        endpoint_note=row.endpoint_note,
        max_batch=int(row.endpoint_max_batch),
    )


# The SQLite hot path: the statements above as plain SQL, in one plain sqlite3 call. -------

_RAW_CLAIM_WHERE = (
    f" AND status = '{PENDING}' AND next_attempt_at <= ?"
    " AND (leased_until IS NULL OR leased_until < ?)"
)
_RAW_CLAIM = (
    "UPDATE outbox SET lease_owner = ?, leased_until = ? WHERE pk = (SELECT min(mates.pk)"
    " FROM outbox AS mates WHERE mates.kind = ? AND mates.partition = ?"
    f" AND mates.status = '{PENDING}')" + _RAW_CLAIM_WHERE + RAW_RETURNED
)
_RAW_CLAIM_WOKEN = (
    "UPDATE outbox SET lease_owner = ?, leased_until = ? WHERE pk = (SELECT min(mates.pk)"
    " FROM outbox AS mates WHERE mates.kind = ? AND mates.partition = (SELECT woken.partition"
    " FROM outbox AS woken WHERE woken.pk = ? AND woken.kind = ?)"
    f" AND mates.status = '{PENDING}')" + _RAW_CLAIM_WHERE + RAW_RETURNED
)
_RAW_CLAIM_AFTER = (
    "UPDATE outbox SET lease_owner = ?, leased_until = ? WHERE pk = (SELECT min(mates.pk)"
    " FROM outbox AS mates WHERE mates.kind = ? AND mates.partition = ?"
    f" AND mates.status = '{PENDING}' AND mates.pk > ?)"
    + _RAW_CLAIM_WHERE
    + " AND NOT EXISTS (SELECT 1 FROM outbox AS earlier WHERE earlier.kind = ?"
    f" AND earlier.partition = ? AND earlier.status = '{PENDING}' AND earlier.pk <= ?"
    " AND (earlier.lease_owner IS NULL OR earlier.lease_owner != ? OR earlier.leased_until < ?))"
    + RAW_RETURNED
)
_RAW_TARGET = (
    "SELECT envelopes.body, agents.kind, agents.endpoint_url, agents.endpoint_status,"
    " agents.endpoint_note, agents.endpoint_max_batch FROM envelopes"
    " JOIN agents ON agents.address = ?"
    " WHERE envelopes.pk = ?"
)
_RAW_PARTITION_OF = f"SELECT kind, partition FROM outbox WHERE pk = ? AND status = '{PENDING}'"
_RAW_ADD_ATTEMPT = (
    "INSERT INTO outbox_attempts (outbox_pk, at, outcome, status_code, error, note,"
    " duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_RAW_SETTLE = (
    "UPDATE outbox SET status = ?, attempts = attempts + 1, next_attempt_at = ?,"
    " last_error = ?, updated_at = ?, lease_owner = NULL, leased_until = NULL"
    " WHERE pk = ? AND lease_owner = ?"
)


@dataclass(frozen=True, slots=True)
class _Claim:
    """What a plain sqlite3 claim needs: the partition, or the row (`woken`) whose
    partition it is."""

    kind: str
    partition: str
    woken: int | None
    owner: str
    now: datetime
    until: datetime
    after: int | None = None  # the row after this one (`_CLAIM_AFTER`), instead of the head


def _claim_raw(db: sqlite3.Connection, claim: _Claim) -> OutboxRow | None:
    """`_claim` in plain sqlite3, inside the caller's write transaction."""
    now = time_in(claim.now)
    head: tuple[Any, ...] = (claim.owner, time_in(claim.until), claim.kind)
    if claim.after is not None:
        parameters = (
            *head,
            claim.partition,
            claim.after,
            now,
            now,
            claim.kind,
            claim.partition,
            claim.after,
            claim.owner,
            now,
        )
        found = db.execute(_RAW_CLAIM_AFTER, parameters).fetchone()
    elif claim.woken is None:
        parameters = (*head, claim.partition, now, now)
        found = db.execute(_RAW_CLAIM, parameters).fetchone()
    else:
        parameters = (*head, claim.woken, claim.kind, now, now)
        found = db.execute(_RAW_CLAIM_WOKEN, parameters).fetchone()
    if found is None:
        return None
    payload = json.loads(found[4])
    target = None
    if isinstance(payload.get("envelope_pk"), int) and isinstance(payload.get("agent"), str):
        read = db.execute(_RAW_TARGET, (payload["agent"], payload["envelope_pk"])).fetchone()
        if read is not None:
            target = DeliveryTarget(
                envelope_json=read[0],
                agent_kind=read[1],
                endpoint_url=read[2],
                endpoint_status=read[3],
                endpoint_note=read[4],
                max_batch=int(read[5]),
            )
    claimed = row_of(found, target, time_out)
    if target is None or target.max_batch <= 1 or claimed.kind not in BATCH_KINDS:
        return claimed
    return with_followers_raw(
        db, claimed, target, owner=claim.owner, now=claim.now, until=claim.until
    )


def _record_raw(
    db: sqlite3.Connection,
    writes: Sequence[tuple[int, AttemptWrite]],
    owner: str,
    following: _Claim | None,
) -> tuple[bool, OutboxRow | None]:
    """`OutboxStore.record` in plain sqlite3, inside the caller's write transaction."""
    kept = True
    for pk, attempt in writes:
        at = time_in(attempt.at)
        db.execute(
            _RAW_ADD_ATTEMPT,
            (
                pk,
                at,
                attempt.outcome,
                attempt.status_code,
                attempt.error,
                attempt.note,
                attempt.duration_ms,
            ),
        )
        settled = db.execute(
            _RAW_SETTLE,
            (
                attempt.row_status,
                time_in(attempt.next_attempt_at),
                attempt.last_error,
                at,
                pk,
                owner,
            ),
        )
        kept = kept and settled.rowcount == 1
    return kept, None if following is None else _claim_raw(db, following)


def _partition_of_raw(db: sqlite3.Connection, pk: int) -> tuple[str, str] | None:
    found = db.execute(_RAW_PARTITION_OF, (pk,)).fetchone()
    return None if found is None else (found[0], found[1])
