"""The generic outbox worker and its store on a real database: leases between replicas, order
per partition for any kind, retries by verdict, the gave-up hook, and the migration."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.bus.memory import MemoryBus
from gateway.clock import SystemClock
from gateway.delivery.schedule import Backoff
from gateway.delivery.wakeup import wake_up
from gateway.delivery.worker import Attempt, GaveUp, Handler, OutboxWorker
from gateway.store.conversations import Batch, Conversations, OutboxWrite
from gateway.store.outbox import OutboxStore
from gateway.store.outbox_rows import AttemptWrite, OutboxRow
from gateway.store.tables import metadata
from identity.ids import new_id
from tests.delivery.webhook_endpoints import wait_until


async def add_rows(engine: AsyncEngine, kind: str, partitions: list[str]) -> None:
    """Commit one outbox row per entry of `partitions`, in that order."""
    batch = Batch(
        now=datetime.now(UTC),
        outbox=[
            OutboxWrite(new_id("ntf"), kind, partition, {"n": n, "partition": partition})
            for n, partition in enumerate(partitions)
        ],
    )
    await Conversations(engine, new_id).commit(batch)


async def test_migrated_schema_matches_the_tables(engine: AsyncEngine) -> None:
    """Migrations 0001 and 0002 build exactly what tables.py declares."""

    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection)  # type: ignore[arg-type]
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_one_replica_wins_a_lease_and_a_lost_lease_is_not_overwritten(
    engine: AsyncEngine,
) -> None:
    """Two owners race for a head: one wins; after the lease expires the other takes it, and
    the first one's late result no longer moves the row."""
    await add_rows(engine, "notification", ["brand-a", "brand-a"])
    store = OutboxStore(engine)
    now = datetime.now(UTC)
    first = await store.claim_head("notification", "brand-a", "replica-1", now, 30)
    assert first is not None and first.payload["n"] == 0
    assert await store.claim_head("notification", "brand-a", "replica-2", now, 30) is None
    assert await _leased(engine) == [first.pk]  # the head only, never the rows behind it
    assert await store.due_heads(["notification"], now, 10, "replica-2") == []
    assert await store.due_heads(["notification"], now, 10, "replica-1") == []  # in flight
    assert await store.claim_head("notification", "brand-a", "replica-1", now, 30) is None

    later = now + timedelta(seconds=31)
    second = await store.claim_head("notification", "brand-a", "replica-2", later, 30)
    assert second is not None and second.pk == first.pk
    write = AttemptWrite(later, "ok", 200, None, None, 5, "delivered", later, None)
    assert await store.record(first, "replica-1", write) == (False, None)
    kept, third = await store.record(second, "replica-2", write, claim_next_s=30)
    assert kept is True
    assert third is not None and third.payload["n"] == 1
    assert await store.claim_head("notification", "brand-a", "replica-1", later, 30) is None


async def test_the_row_after_a_held_one_is_claimed_only_by_its_holder(engine: AsyncEngine) -> None:
    """While a replica holds a partition's head it may lease the next row (and, recording the
    head, the row after that one); nobody else may, nor may it once the head is not held."""
    await add_rows(engine, "notification", ["brand-a", "brand-b", "brand-a", "brand-a"])
    store = OutboxStore(engine)
    now = datetime.now(UTC)
    pks = await _pks(engine)
    head = await store.claim_head("notification", "brand-a", "replica-1", now, 30)
    assert head is not None and head.pk == pks[0]
    assert await store.claim_after(head, "replica-2", now, 30) is None  # not replica-2's head
    second = await store.claim_after(head, "replica-1", now, 30)
    assert second is not None and (second.pk, second.payload["n"]) == (pks[2], 2)
    assert await store.claim_after(head, "replica-1", now, 30) is None  # leased now
    assert await _leased(engine) == [pks[0], pks[2]]
    # Recording the head claims the row after the one held ahead, not the head of the rest.
    write = AttemptWrite(now, "ok", 200, None, None, 5, "delivered", now, None)
    kept, third = await store.record(head, "replica-1", write, claim_next_s=30, after=second.pk)
    assert kept is True and third is not None and third.pk == pks[3]
    assert await store.claim_after(third, "replica-1", now, 30) is None  # nothing after it
    # A lease that ran out is not held: the row after it is nobody's to take ahead.
    later = now + timedelta(seconds=31)
    assert await store.claim_after(second, "replica-1", later, 30) is None
    other = await store.claim_head("notification", "brand-b", "replica-2", now, 30)
    assert other is not None and await store.claim_after(other, "replica-2", now, 30) is None


async def test_a_wake_up_claims_its_partition_head_and_a_restart_releases_leases(
    engine: AsyncEngine,
) -> None:
    """Claiming by a woken row leases its partition's head (not the row itself, not another
    partition's), once; leases of a replica's previous life are released when it starts."""
    await add_rows(engine, "notification", ["brand-a", "brand-b", "brand-a"])
    store = OutboxStore(engine)
    now = datetime.now(UTC)
    pks = await _pks(engine)
    head_a = await store.claim_woken("notification", pks[2], "replica-1", now, 30)
    assert head_a is not None and (head_a.pk, head_a.partition) == (pks[0], "brand-a")
    assert await store.claim_woken("notification", pks[2], "replica-1", now, 30) is None
    assert await store.claim_woken("delivery", pks[1], "replica-1", now, 30) is None
    head_b = await store.claim_woken("notification", pks[1], "replica-1", now, 30)
    assert head_b is not None and head_b.pk == pks[1]
    assert await store.partition_of(pks[2]) == ("notification", "brand-a")

    worker = OutboxWorker(
        store=store,
        bus=MemoryBus(),
        clock=SystemClock(),
        backoff=Backoff(),
        owner="replica-1",
        handlers={},
    )
    await worker.start()  # a restart: nothing of replica-1's is in flight any more
    try:
        assert await _leased(engine) == []
        assert len(await store.due_heads(["notification"], now, 10, "replica-1")) == 2
    finally:
        await worker.stop()


async def test_generic_worker_orders_partitions_and_follows_verdicts(engine: AsyncEngine) -> None:
    """A handler for another kind gets each partition's rows in order, one at a time; retry,
    final and ok verdicts move rows as they say; the gave-up hook fires when the budget ends."""
    seen: list[tuple[str, int]] = []
    busy: set[str] = set()
    overlaps: list[str] = []
    failures: dict[int, int] = {}
    gave_up: list[tuple[str, str]] = []

    class Notifier:
        async def handle(self, row: OutboxRow) -> Attempt:
            partition = row.payload["partition"]
            if partition in busy:
                overlaps.append(partition)
            busy.add(partition)
            try:
                await asyncio.sleep(0.005)
                seen.append((partition, row.payload["n"]))
                if partition == "never":
                    return Attempt.retry("still down", 503)
                if partition == "b" and failures.get(row.pk, 0) < 2:
                    failures[row.pk] = failures.get(row.pk, 0) + 1
                    return Attempt.retry("flaky", 500, retry_after=0.01)
                if row.payload["n"] == 3:
                    return Attempt.final("refused", 400)
                return Attempt.ok(200)
            finally:
                busy.discard(partition)

    async def hook(row: OutboxRow, reason: str) -> None:
        gave_up.append((row.public_id, reason))

    backoff = Backoff(base_s=0.01, max_s=0.02, budget_s=1.0)
    async with _working(engine, Notifier(), backoff, sweep_s=0.05, on_gave_up=hook) as (
        store,
        bus,
    ):
        await add_rows(engine, "notification", ["a", "b", "a", "b", "a", "never", "a"])
        await bus.publish("work.notification", b"1")
        await _drained(store, "the outbox drains")

    assert overlaps == []
    a_order = [n for partition, n in seen if partition == "a"]
    assert a_order == [0, 2, 4, 6]
    b_order = [n for partition, n in seen if partition == "b"]
    assert b_order == [1, 1, 1, 3, 3, 3]
    assert len(gave_up) == 1 and gave_up[0][1].startswith("gave up after")
    rows = {row: status for row, status in await _statuses(engine)}
    assert sorted(rows.values()) == ["delivered"] * 5 + ["failed"] * 2


async def test_a_retry_holds_back_the_row_leased_behind_it(engine: AsyncEngine) -> None:
    """Rows queued in one partition are pipelined (the next leased ahead, each record written
    while the next attempt runs); when one is retried, the row leased behind it is given back
    and waits: the partition's rows are attempted strictly in order, one at a time."""
    seen: list[int] = []
    busy: list[int] = []
    overlaps: list[int] = []
    retried: set[int] = set()

    class Notifier:
        async def handle(self, row: OutboxRow) -> Attempt:
            n = row.payload["n"]
            if busy:
                overlaps.append(n)
            busy.append(n)
            try:
                await asyncio.sleep(0.002)
                seen.append(n)
                if n in (2, 5) and n not in retried:
                    retried.add(n)
                    return Attempt.retry("busy", 503, retry_after=0.01)
                return Attempt.ok(200)
            finally:
                busy.remove(n)

    await add_rows(engine, "notification", ["p"] * 8)
    backoff = Backoff(base_s=0.01, max_s=0.02)
    async with _working(engine, Notifier(), backoff, sweep_s=0.05) as (store, _):
        await _drained(store, "the partition drains")
    assert overlaps == []
    assert seen == [0, 1, 2, 2, 3, 4, 5, 5, 6, 7]
    assert await _leased(engine) == []
    assert sorted(status for _, status in await _statuses(engine)) == ["delivered"] * 8


@pytest.mark.parametrize("message", ["named", "pk only"])
async def test_wake_ups_while_partitions_drain_lose_and_repeat_nothing(
    engine: AsyncEngine, message: str
) -> None:
    """Rows committed one by one, each followed by its wake-up, while their partitions are
    being drained (slow and fast handlers): every row is worked exactly once, in commit order
    per partition, never two of a partition at once, with no sweep to fall back on. Wake-ups
    naming the partition (what writers send) and naming only the row (older writers) alike."""
    seen: dict[str, list[int]] = {}
    busy: set[str] = set()
    overlaps: list[str] = []

    class Notifier:
        async def handle(self, row: OutboxRow) -> Attempt:
            partition = row.partition
            if partition in busy:
                overlaps.append(partition)
            busy.add(partition)
            try:
                await asyncio.sleep(0.004 if partition == "slow" else 0)
                seen.setdefault(partition, []).append(row.payload["n"])
                return Attempt.ok(200)
            finally:
                busy.discard(partition)

    partitions = ["slow", "fast", "other"]
    # A sweep only every 600 s: the rows are found by their wake-ups, a lost one would show.
    async with _working(engine, Notifier(), Backoff(), sweep_s=600.0) as (store, bus):
        for n in range(90):
            partition = partitions[n % 3] if n % 7 else "slow"
            batch = Batch(
                now=datetime.now(UTC),
                outbox=[OutboxWrite(new_id("ntf"), "notification", partition, {"n": n})],
            )
            committed = await Conversations(engine, new_id).commit(batch)
            for pk, kind, named in committed.outbox:
                data = wake_up(pk, named) if message == "named" else str(pk).encode()
                await bus.publish(f"work.{kind}", data)
            if n % 5 == 0:
                await asyncio.sleep(0.003)
        await _drained(store, "the outbox drains on wake-ups alone")

    assert overlaps == []
    for partition, numbers in seen.items():
        assert numbers == sorted(numbers), partition
        assert len(numbers) == len(set(numbers)), partition
    assert sorted(n for numbers in seen.values() for n in numbers) == list(range(90))


@contextlib.asynccontextmanager
async def _working(
    engine: AsyncEngine,
    handler: Handler,
    backoff: Backoff,
    *,
    sweep_s: float,
    on_gave_up: GaveUp | None = None,
) -> AsyncIterator[tuple[OutboxStore, MemoryBus]]:
    """A worker of replica-1 with `handler` for "notification" rows, running inside."""
    bus = MemoryBus()
    store = OutboxStore(engine)
    worker = OutboxWorker(
        store=store,
        bus=bus,
        clock=SystemClock(),
        backoff=backoff,
        owner="replica-1",
        handlers={"notification": handler},
        sweep_s=sweep_s,
        on_gave_up=on_gave_up,
    )
    await worker.start()
    try:
        yield store, bus
    finally:
        await worker.stop()
        await bus.close()


async def _drained(store: OutboxStore, what: str) -> None:
    async def drained() -> bool:
        return await store.pending_count(["notification"]) == 0

    await wait_until(drained, what=what)


async def _statuses(engine: AsyncEngine) -> list[tuple[int, str]]:
    from sqlalchemy import select

    from gateway.store.tables import outbox

    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.pk, outbox.c.status))).all()
    return [(int(row.pk), row.status) for row in rows]


async def _leased(engine: AsyncEngine) -> list[int]:
    from sqlalchemy import select

    from gateway.store.tables import outbox

    async with engine.connect() as conn:
        rows = await conn.execute(select(outbox.c.pk).where(outbox.c.lease_owner.is_not(None)))
    return [int(row.pk) for row in rows.all()]


async def _pks(engine: AsyncEngine) -> list[int]:
    from sqlalchemy import select

    from gateway.store.tables import outbox

    async with engine.connect() as conn:
        rows = await conn.execute(select(outbox.c.pk).order_by(outbox.c.pk))
    return [int(row.pk) for row in rows.all()]
