"""The store's guarantees hold on SQLite and on PostgreSQL: constraints, not hope."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.store.conversations import (
    Batch,
    Conversations,
    EnvelopeWrite,
    OutboxWrite,
    ReplayCollision,
    TaskChanged,
    TaskWrite,
)
from gateway.store.database import create_engine, migrate
from gateway.store.records import TaskRecord
from gateway.store.tables import envelopes, outbox
from identity.ids import new_id
from tests.conftest import provision_database

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.distributed)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on each backend (a private database on PostgreSQL)."""
    if request.param == "sqlite":
        made = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        await migrate(made)
        yield made
        await made.dispose()
        return
    async with provision_database() as url:
        made = create_engine(url)
        await migrate(made)
        yield made
        await made.dispose()


def _task(task_id: str) -> TaskRecord:
    return TaskRecord(
        id=task_id,
        initiator="alice@people.example",
        responder="support@acme.example",
        brand="acme.example",
        state="submitted",
        control="agent",
        created_at=NOW,
        updated_at=NOW,
        completed_at=None,
        escalated=False,
        confirmed=False,
        resolved_by=None,
        turns_without_progress=1,
        route_why=None,
    )


def _envelope(envelope_id: str, task_id: str, inbox_for: str = "support@acme.example"):
    return EnvelopeWrite(
        sender="alice@people.example",
        envelope_id=envelope_id,
        recipient=inbox_for,
        task_id=task_id,
        act="say",
        digest="d" * 64,
        body={"id": envelope_id},
        answer={"id": envelope_id},
        inbox_for=(inbox_for,),
        deliver_to=(inbox_for,),
    )


def _new_task_batch(task_id: str, envelope_id: str) -> Batch:
    return Batch(
        now=NOW,
        task=TaskWrite(_task(task_id), None),
        envelopes=[_envelope(envelope_id, task_id)],
    )


async def test_replay_key_collision_is_recognised_by_constraint_name(engine):
    """A second commit of the same (sender, envelope id) raises ReplayCollision, not a raw
    IntegrityError, and leaves nothing of itself behind."""
    store = Conversations(engine, new_id)
    await store.commit(_new_task_batch("tsk_1", "env-1"))
    with pytest.raises(ReplayCollision):
        await store.commit(_new_task_batch("tsk_2", "env-1"))
    assert await store.task("tsk_2") is None
    assert [item.seq for item in await store.inbox("support@acme.example", 0, 10)] == [1]


async def test_new_task_with_a_taken_id_is_a_task_change(engine):
    """Inserting a task whose id exists already asks the caller to plan again."""
    store = Conversations(engine, new_id)
    await store.commit(_new_task_batch("tsk_1", "env-1"))
    with pytest.raises(TaskChanged):
        await store.commit(_new_task_batch("tsk_1", "env-2"))


async def test_only_one_of_two_updates_from_one_version_wins(engine):
    """Two concurrent updates planned from version 1: exactly one commits, the other is told
    the task changed."""
    store = Conversations(engine, new_id)
    await store.commit(_new_task_batch("tsk_1", "env-1"))
    record = replace(_task("tsk_1"), state="working")

    async def update(envelope_id: str) -> str:
        batch = Batch(
            now=NOW,
            task=TaskWrite(record, 1, (("state", {"to": "working"}),)),
            envelopes=[_envelope(envelope_id, "tsk_1")],
        )
        try:
            await store.commit(batch)
        except TaskChanged:
            return "changed"
        return "committed"

    outcomes = await asyncio.gather(update("env-2"), update("env-3"))
    assert sorted(outcomes) == ["changed", "committed"]
    found = await store.task_version("tsk_1")
    assert found is not None and found[1] == 2


async def test_concurrent_commits_to_one_inbox_get_gapless_seqs(engine):
    """Sixty commits at once into one inbox: seqs are exactly 1..60, one per envelope."""
    store = Conversations(engine, new_id)
    ids = [f"env-{number}" for number in range(60)]
    await asyncio.gather(
        *(
            store.commit(_new_task_batch(f"tsk_{n}", envelope_id))
            for n, envelope_id in enumerate(ids)
        )
    )
    items = await store.inbox("support@acme.example", 0, 100)
    assert [item.seq for item in items] == list(range(1, 61))
    assert sorted(item.envelope["id"] for item in items) == sorted(ids)


async def test_concurrent_commits_share_a_transaction_and_a_bad_one_fails_alone(engine):
    """Thirty batches committed at once, one of them a replay of a stored envelope: the replay
    alone gets ReplayCollision, the other 29 commit, the inbox seqs are exactly 2..30 after the
    first, and the replay's task was not written."""
    store = Conversations(engine, new_id)
    await store.commit(_new_task_batch("tsk_0", "env-0"))
    batches = [_new_task_batch(f"tsk_{n}", f"env-{n}") for n in range(1, 30)]
    batches.insert(13, _new_task_batch("tsk_replay", "env-0"))
    outcomes = await asyncio.gather(
        *(store.commit(batch) for batch in batches), return_exceptions=True
    )
    refused = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, Exception)]
    assert refused == [13] and isinstance(outcomes[13], ReplayCollision)
    seqs = sorted(seq for o in outcomes if not isinstance(o, BaseException) for _, seq in o.inbox)
    assert seqs == list(range(2, 31))
    items = await store.inbox("support@acme.example", 0, 100)
    assert [item.seq for item in items] == list(range(1, 31))
    assert await store.task("tsk_replay") is None


async def test_a_group_spread_over_several_inboxes_gets_gapless_seqs_per_inbox(engine):
    """Forty batches at once, each to one of three agents and some to two: every inbox's seqs
    are exactly 1..n, and each seq a commit returns names that commit's own envelope."""
    store = Conversations(engine, new_id)
    agents = ["a@acme.example", "b@acme.example", "c@acme.example"]

    def batch(n: int) -> Batch:
        first, second = agents[n % 3], agents[(n + 1) % 3]
        write = replace(
            _envelope(f"env-{n}", f"tsk_{n}", first),
            inbox_for=(first, second) if n % 4 == 0 else (first,),
        )
        return Batch(now=NOW, task=TaskWrite(_task(f"tsk_{n}"), None), envelopes=[write])

    outcomes = await asyncio.gather(*(store.commit(batch(n)) for n in range(40)))
    for agent in agents:
        items = await store.inbox(agent, 0, 100)
        assert [item.seq for item in items] == list(range(1, len(items) + 1))
        by_seq = {item.seq: item.envelope["id"] for item in items}
        for n, outcome in enumerate(outcomes):
            for owner, seq in outcome.inbox:
                if owner == agent:
                    assert by_seq[seq] == f"env-{n}"


async def test_history_from_memory_matches_the_database_and_is_forgotten_when_unsure(engine):
    """The history asked for with the task's version equals the stored one after updates; an
    envelope written to the task without its version guard makes the next answer a read."""
    store = Conversations(engine, new_id)
    await store.commit(_new_task_batch("tsk_1", "env-1"))
    for version in (1, 2):
        await store.commit(
            Batch(
                now=NOW,
                task=TaskWrite(_task("tsk_1"), version),
                envelopes=[_envelope(f"env-{version + 1}", "tsk_1")],
            )
        )
    stored = await store.history("tsk_1")
    assert [body["id"] for body in stored] == ["env-1", "env-2", "env-3"]
    assert await store.history("tsk_1", 3) == stored
    await store.commit(Batch(now=NOW, envelopes=[_envelope("env-4", "tsk_1")]))
    assert [body["id"] for body in await store.history("tsk_1", 3)] == [
        "env-1",
        "env-2",
        "env-3",
        "env-4",
    ]


@dataclass(frozen=True)
class _Announce:
    """An extra write that needs its own batch's envelope stored already and causes one
    outbox row (as an escalation's notification does)."""

    envelope_id: str

    async def apply(self, conn: AsyncConnection, now: datetime) -> list[OutboxWrite]:
        stored = (
            await conn.execute(
                select(envelopes.c.pk).where(envelopes.c.envelope_id == self.envelope_id)
            )
        ).first()
        payload = {"envelope": self.envelope_id, "seen": stored is not None}
        return [OutboxWrite(new_id("ntf"), "notify", "staff", payload)]


async def test_a_group_with_extras_and_updates_keeps_row_order_per_batch(engine):
    """Twenty batches at once, every third with an extra and every fourth updating a stored
    task: all commit; each extra sees its own envelope; each commit's delivery row comes
    before the row its extra caused; and outbox rows follow the order of the inbox seqs."""
    store = Conversations(engine, new_id)
    for n in range(0, 20, 4):
        await store.commit(_new_task_batch(f"tsk_{n}", f"env-old-{n}"))

    def batch(n: int) -> Batch:
        record = replace(_task(f"tsk_{n}"), state="working")
        task = TaskWrite(record, 1) if n % 4 == 0 else TaskWrite(record, None)
        extra = [_Announce(f"env-{n}")] if n % 3 == 0 else []
        return Batch(now=NOW, task=task, envelopes=[_envelope(f"env-{n}", f"tsk_{n}")], extra=extra)

    outcomes = await asyncio.gather(*(store.commit(batch(n)) for n in range(20)))
    for n, outcome in enumerate(outcomes):
        kinds = [kind for _, kind, _ in outcome.outbox]
        assert kinds == (["delivery", "notify"] if n % 3 == 0 else ["delivery"])
        pks = [pk for pk, _, _ in outcome.outbox]
        assert pks == sorted(pks)
        record = await store.task(f"tsk_{n}")
        assert record is not None and record.state == "working"
    by_seq = sorted(outcomes, key=lambda outcome: outcome.inbox[0][1])
    firsts = [outcome.outbox[0][0] for outcome in by_seq]
    assert firsts == sorted(firsts)
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
        notes = (
            await conn.execute(select(outbox.c.payload).where(outbox.c.kind == "notify"))
        ).all()
    assert count == 5 + 20 + 7
    assert sorted(
        json.loads(payload)["envelope"] for (payload,) in notes if json.loads(payload)["seen"]
    ) == sorted(f"env-{n}" for n in range(0, 20, 3))


async def test_a_group_of_updates_commits_together_and_a_stale_one_fails_alone(engine):
    """Ten stored tasks updated at once from version 1 all commit; then updated at once from
    version 2 with a second update of one of them from version 2 too: exactly one of that
    pair gets TaskChanged, every task ends at version 3 in its new state."""
    store = Conversations(engine, new_id)
    for n in range(10):
        await store.commit(_new_task_batch(f"tsk_{n}", f"env-old-{n}"))

    def update(n: int, envelope_id: str, version: int) -> Batch:
        record = replace(_task(f"tsk_{n}"), state="working", turns_without_progress=version + n)
        return Batch(
            now=NOW,
            task=TaskWrite(record, version),
            envelopes=[_envelope(envelope_id, f"tsk_{n}")],
        )

    await asyncio.gather(*(store.commit(update(n, f"env-a-{n}", 1)) for n in range(10)))
    batches = [update(n, f"env-b-{n}", 2) for n in range(10)]
    batches.insert(5, update(3, "env-stale", 2))
    outcomes = await asyncio.gather(
        *(store.commit(batch) for batch in batches), return_exceptions=True
    )
    refused = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, Exception)]
    assert len(refused) == 1 and refused[0] in (3, 5)
    assert isinstance(outcomes[refused[0]], TaskChanged)
    for n in range(10):
        found = await store.task_version(f"tsk_{n}")
        assert found is not None
        record, version = found
        assert (record.state, record.turns_without_progress, version) == ("working", 2 + n, 3)
    for n in range(10):
        assert await store.by_replay_key("alice@people.example", f"env-a-{n}") is not None
