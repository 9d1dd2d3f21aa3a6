"""Followers: the rows leased behind a claimed head, to go with it in one ordered batch.

An endpoint registered with `max_batch` > 1 (docs/delivery-batches.md) gets, in each POST,
the rows of its partition that are due when the POST leaves. The claim of the head (in
`gateway.store.outbox`) calls `with_followers` in the same transaction. The followers are the
pending rows right after the head, in order, up to `max_batch` rows in all and
`MAX_BATCH_BYTES` of envelopes. Only a run without gaps is taken: each row due and not
leased. So a batch is always the next rows in line.

The head's lease keeps every other claimer out of the rows behind it: a claim takes only a
partition's head, or the row after rows its claimer holds. So the followers are free for the
taking. A follower leased by someone else anyway (a lease that ran out meanwhile, on
PostgreSQL) ends the run there. The rows after it are given back in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store.outbox_rows import (
    PENDING,
    RAW_RETURNED,
    RETURNED,
    DeliveryTarget,
    OutboxRow,
    as_datetime,
    envelope_pk_of,
    row_of,
    time_in,
    time_out,
)
from gateway.store.tables import envelopes, outbox

# The outbox kinds whose rows go in batches: deliveries (`gateway.delivery.deliverer.KIND`),
# whose handler takes them.
KINDS = frozenset({"delivery"})

# What one batch's envelopes may add up to: with each item's id and task the body stays
# under 1 MiB, which endpoints taking batches must accept (aiohttp's default limit). One
# envelope is at most 256 KiB, so a head always fits.
MAX_BATCH_BYTES = 1_000_000
_ITEM_BYTES = 200  # an item's id, task and punctuation, generously

_FOLLOWING = (
    select(
        outbox.c.pk,
        and_(
            outbox.c.next_attempt_at <= bindparam("claim_now"),
            or_(outbox.c.leased_until.is_(None), outbox.c.leased_until < bindparam("claim_now")),
        ).label("free"),
    )
    .where(
        and_(
            outbox.c.kind == bindparam("claim_kind"),
            outbox.c.partition == bindparam("claim_partition"),
            outbox.c.status == PENDING,
            outbox.c.pk > bindparam("claim_after"),
        )
    )
    .order_by(outbox.c.pk)
    .limit(bindparam("claim_limit"))
)
_LEASE = (
    update(outbox)
    .where(
        and_(
            outbox.c.pk.in_(bindparam("claim_pks", expanding=True)),
            outbox.c.status == PENDING,
            or_(outbox.c.leased_until.is_(None), outbox.c.leased_until < bindparam("claim_now")),
        )
    )
    .values(
        lease_owner=bindparam("claim_owner"),
        leased_until=bindparam("claim_until", type_=outbox.c.leased_until.type),
    )
    .returning(*RETURNED)
)
_BODIES = select(envelopes.c.pk, envelopes.c.body).where(
    envelopes.c.pk.in_(bindparam("envelope_pks", expanding=True))
)
_UNLEASE = (
    update(outbox)
    .where(
        and_(
            outbox.c.pk.in_(bindparam("claim_pks", expanding=True)),
            outbox.c.lease_owner == bindparam("claim_owner"),
        )
    )
    .values(lease_owner=None, leased_until=None)
)

# The same in plain sqlite3 (`{marks}`: one "?" per pk).
_RAW_FOLLOWING = (
    "SELECT pk, next_attempt_at <= ? AND (leased_until IS NULL OR leased_until < ?)"
    f" FROM outbox WHERE kind = ? AND partition = ? AND status = '{PENDING}' AND pk > ?"
    " ORDER BY pk LIMIT ?"
)
_RAW_LEASE = (
    "UPDATE outbox SET lease_owner = ?, leased_until = ? WHERE pk IN ({marks})"
    f" AND status = '{PENDING}' AND (leased_until IS NULL OR leased_until < ?)" + RAW_RETURNED
)
_RAW_UNLEASE = (
    "UPDATE outbox SET lease_owner = NULL, leased_until = NULL WHERE pk IN ({marks})"
    " AND lease_owner = ?"
)
_RAW_BODIES = "SELECT pk, body FROM envelopes WHERE pk IN ({marks})"


async def with_followers(
    conn: AsyncConnection,
    head: OutboxRow,
    target: DeliveryTarget,
    *,
    owner: str,
    now: datetime,
    until: datetime,
) -> OutboxRow:
    """`head` (just leased, with its target) and its followers, leased by `owner` until
    `until`, inside the caller's transaction."""
    found = await conn.execute(
        _FOLLOWING,
        {
            "claim_kind": head.kind,
            "claim_partition": head.partition,
            "claim_after": head.pk,
            "claim_now": now,
            "claim_limit": target.max_batch - 1,
        },
    )
    wanted = _free_run([(int(pk), bool(free)) for pk, free in found.all()])
    if not wanted:
        return head
    lease = {"claim_now": now, "claim_owner": owner, "claim_until": until, "claim_pks": wanted}
    leased = [tuple(row) for row in (await conn.execute(_LEASE, lease)).all()]
    rows, surplus = _in_line(wanted, leased)
    pks = [pk for pk in (envelope_pk_of(row) for row in rows) if pk is not None]
    bodies = {
        int(pk): body for pk, body in (await conn.execute(_BODIES, {"envelope_pks": pks})).all()
    }
    rows, surplus = _within_bytes(head, rows, surplus, bodies)
    if surplus:
        await conn.execute(_UNLEASE, {"claim_pks": surplus, "claim_owner": owner})
    return replace(head, followers=_followers(rows, target, bodies, as_datetime))


def with_followers_raw(
    db: sqlite3.Connection,
    head: OutboxRow,
    target: DeliveryTarget,
    *,
    owner: str,
    now: datetime,
    until: datetime,
) -> OutboxRow:
    """`with_followers` in plain sqlite3, inside the caller's write transaction."""
    moment = time_in(now)
    found = db.execute(
        _RAW_FOLLOWING,
        (moment, moment, head.kind, head.partition, head.pk, target.max_batch - 1),
    ).fetchall()
    wanted = _free_run([(int(pk), bool(free)) for pk, free in found])
    if not wanted:
        return head
    leased = db.execute(
        _RAW_LEASE.format(marks=_marks(wanted)), (owner, time_in(until), *wanted, moment)
    ).fetchall()
    rows, surplus = _in_line(wanted, leased)
    pks = [pk for pk in (envelope_pk_of(row) for row in rows) if pk is not None]
    bodies = {int(pk): body for pk, body in db.execute(_RAW_BODIES.format(marks=_marks(pks)), pks)}
    rows, surplus = _within_bytes(head, rows, surplus, bodies)
    if surplus:
        db.execute(_RAW_UNLEASE.format(marks=_marks(surplus)), (*surplus, owner))
    return replace(head, followers=_followers(rows, target, bodies, time_out))


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _free_run(candidates: Sequence[tuple[int, bool]]) -> list[int]:
    """The pks of the candidates (in order) up to the first one that is not free."""
    run: list[int] = []
    for pk, free in candidates:
        if not free:
            break
        run.append(pk)
    return run


def _in_line(
    wanted: Sequence[int], leased: Sequence[tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], list[int]]:
    """The leased rows that continue the line without a gap, and the pks leased past a gap
    (a row taken by someone else in between), to be given back."""
    by_pk = {int(row[0]): row for row in leased}
    rows: list[tuple[Any, ...]] = []
    for pk in wanted:
        if pk not in by_pk:
            break
        rows.append(by_pk.pop(pk))
    return rows, sorted(by_pk)


def _within_bytes(
    head: OutboxRow,
    rows: Sequence[tuple[Any, ...]],
    surplus: Sequence[int],
    bodies: dict[int, str],
) -> tuple[list[tuple[Any, ...]], list[int]]:
    """The rows that fit in `MAX_BATCH_BYTES` with the head, and the surplus grown by the
    rest."""
    used = _ITEM_BYTES + (len(head.target.envelope_json.encode()) if head.target else 0)
    for count, row in enumerate(rows):
        envelope_pk = envelope_pk_of(row)
        body = bodies.get(envelope_pk) if envelope_pk is not None else None
        used += _ITEM_BYTES + (len(body.encode()) if body is not None else 0)
        if used > MAX_BATCH_BYTES:
            return list(rows[:count]), [*surplus, *(int(one[0]) for one in rows[count:])]
    return list(rows), list(surplus)


def _followers(
    rows: Sequence[tuple[Any, ...]],
    target: DeliveryTarget,
    bodies: dict[int, str],
    times: Callable[[Any], datetime],
) -> tuple[OutboxRow, ...]:
    """Rows leased behind a head, each with the head's endpoint and its own envelope."""
    followers = []
    for row in rows:
        envelope_pk = envelope_pk_of(row)
        body = None if envelope_pk is None else bodies.get(envelope_pk)
        read = None if body is None else replace(target, envelope_json=body)
        followers.append(row_of(row, read, times))
    return tuple(followers)
