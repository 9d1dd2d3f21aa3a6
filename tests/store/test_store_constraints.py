"""The store's guarantees hold on SQLite and on PostgreSQL: constraints, not hope."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from structlog.testing import capture_logs

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
from gateway.store.tables import envelopes, inbox, outbox, timers
from gateway.store.timers import ArmTimer, DisarmTimer, Timers
from identity.ids import new_id
from tests.conftest import provision_database

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


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


@contextlib.asynccontextmanager
async def _two_replicas() -> AsyncIterator[tuple[AsyncEngine, Conversations, Conversations]]:
    """Two replicas' stores on one private, migrated PostgreSQL database: the first's engine
    (for reading what they wrote) and each one's `Conversations`."""
    async with provision_database() as url:
        engines = [create_engine(url), create_engine(url)]
        try:
            await migrate(engines[0])
            first, second = (Conversations(made, new_id) for made in engines)
            yield engines[0], first, second
        finally:
            for made in engines:
                await made.dispose()


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


async def test_the_group_writer_logs_under_no_requests_ids(engine):
    """The writer a group's first commit starts writes for every caller: a line it logs (its
    group rolled back by a replay) carries none of the ids the callers bound to their own
    log contexts, the first's included."""
    store = Conversations(engine, new_id)
    await store.commit(_new_task_batch("tsk_0", "env-0"))
    batches = [_new_task_batch(f"tsk_{n}", f"env-{n}") for n in range(1, 8)]
    batches.insert(3, _new_task_batch("tsk_replay", "env-0"))

    async def commit_for_a_request(n: int, batch: Batch) -> object:
        # As a request's handler has them bound when it commits (each task its own context).
        structlog.contextvars.bind_contextvars(
            request_id=f"req-{n}", envelope_id=batch.envelopes[0].envelope_id, task_id=f"t-{n}"
        )
        return await store.commit(batch)

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        outcomes = await asyncio.gather(
            *(commit_for_a_request(n, batch) for n, batch in enumerate(batches)),
            return_exceptions=True,
        )
    assert isinstance(outcomes[3], ReplayCollision)
    [line] = [entry for entry in logs if entry["event"] == "conversations.group_rolled_back"]
    assert line["batches"] == len(batches) and line["error"] == "ReplayCollision"
    for key in ("request_id", "envelope_id", "task_id"):
        assert key not in line, f"{key}={line[key]} on the writer's line"


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


@pytest.mark.parametrize("extra", [False, True], ids=["thread", "extras-after-thread"])
async def test_an_envelope_given_to_a_task_without_its_guarded_write_moves_its_version(
    engine, extra: bool
):
    """On either backend (and on SQLite whether the whole group is written in the thread or
    an extra follows through SQLAlchemy), a batch that gives a task an envelope without
    writing the task moves the task's version on: a plan made on the old version fails with
    TaskChanged. In one group with a guarded update of that task, both commit and the
    version moves twice."""
    store = Conversations(engine, new_id)
    await store.commit(_new_task_batch("tsk_1", "env-1"))

    def unguarded(envelope_id: str) -> Batch:
        return Batch(
            now=NOW,
            envelopes=[_envelope(envelope_id, "tsk_1")],
            extra=[_Announce(envelope_id)] if extra else [],
        )

    def guarded(envelope_id: str, version: int) -> Batch:
        record = replace(_task("tsk_1"), state="working")
        return Batch(
            now=NOW, task=TaskWrite(record, version), envelopes=[_envelope(envelope_id, "tsk_1")]
        )

    await store.commit(unguarded("env-2"))
    found = await store.task_version("tsk_1")
    assert found is not None and found[1] == 2
    with pytest.raises(TaskChanged):
        await store.commit(guarded("env-stale", 1))
    await asyncio.gather(store.commit(guarded("env-3", 2)), store.commit(unguarded("env-4")))
    found = await store.task_version("tsk_1")
    assert found is not None and found[1] == 4 and found[0].state == "working"
    window = await store.history("tsk_1", 4)
    assert [body["id"] for body in window] == ["env-1", "env-2", "env-3", "env-4"]


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


def _timer_batch(n: int, *extras: Any) -> Batch:
    return Batch(
        now=NOW.replace(microsecond=n),
        task=TaskWrite(_task(f"tsk_{n}"), None),
        envelopes=[_envelope(f"env-{n}", f"tsk_{n}")],
        extra=list(extras),
    )


async def _timers(engine: AsyncEngine) -> dict[tuple[str, str], Any]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(timers))).all()
    return {(row.kind, row.key): row for row in rows}


async def test_timers_armed_and_disarmed_by_a_group_land_as_if_written_one_by_one(engine):
    """A group of acceptances whose timer writes go together (one statement per kind on
    PostgreSQL): each arm lands with its own batch's values, a re-arm clears the fired mark
    and the lease, a disarm deletes only an unfired timer, and a run that names one timer
    twice keeps batch order (disarm k1, arm k1 leaves k1 armed), also when an extra
    that does not go together splits the group into runs."""
    store = Conversations(engine, new_id)
    timer_store = Timers(engine)
    # Set-up: an unfired and a fired timer to disarm, a fired one to re-arm.
    await store.commit(
        _timer_batch(
            90,
            ArmTimer("reply", "old-unfired", NOW),
            ArmTimer("reply", "old-fired", NOW),
            ArmTimer("reply", "rearm", NOW, {"v": 0}),
        )
    )
    async with engine.begin() as conn:
        await conn.execute(
            update(timers)
            .where(timers.c.key.in_(["old-fired", "rearm"]))
            .values(fired_at=NOW, lease="held", lease_until=NOW)
        )
    later = NOW + timedelta(minutes=5)
    batches = [_timer_batch(n, ArmTimer("reply", f"tsk_{n}", later, {"n": n})) for n in range(10)]
    batches += [
        _timer_batch(10, DisarmTimer("reply", "old-unfired"), DisarmTimer("reply", "old-fired")),
        _timer_batch(11, ArmTimer("reply", "rearm", later, {"v": 1})),
        _timer_batch(12, ArmTimer("reply", "other", later)),
        _timer_batch(13, DisarmTimer("reply", "twice")),
        _timer_batch(14, ArmTimer("abandon", "twice", later)),  # another row: same key, kind
        _timer_batch(15, ArmTimer("reply", "twice", later, {"v": 2})),
        _timer_batch(16, _Announce("env-16"), ArmTimer("reply", "split", later)),
        _timer_batch(17, DisarmTimer("reply", "split"), ArmTimer("reply", "after", later)),
    ]
    outcomes = await asyncio.gather(*(store.commit(batch) for batch in batches))
    assert [len(outcome.inbox) for outcome in outcomes] == [1] * len(batches)
    found = await _timers(engine)
    for n in range(10):
        row = found[("reply", f"tsk_{n}")]
        assert (row.due_at, json.loads(row.data), row.fired_at) == (later, {"n": n}, None)
        assert row.created_at == NOW.replace(microsecond=n)
    assert ("reply", "old-unfired") not in found
    assert found[("reply", "old-fired")].fired_at == NOW  # a fired timer is history
    rearmed = found[("reply", "rearm")]
    assert (rearmed.fired_at, rearmed.lease, rearmed.lease_until) == (None, None, None)
    assert (rearmed.due_at, json.loads(rearmed.data)) == (later, {"v": 1})
    assert rearmed.created_at == NOW.replace(microsecond=90)  # an update, not a new row
    assert json.loads(found[("reply", "twice")].data) == {"v": 2}
    assert ("abandon", "twice") in found
    assert ("reply", "split") not in found and ("reply", "after") in found
    assert await timer_store.get("reply", "tsk_3") is not None


@pytest.mark.distributed
async def test_a_group_of_timer_arming_acceptances_costs_the_same_statements_at_any_size():
    """On PostgreSQL a run of acceptances that each arm a timer is written with a fixed number
    of statements (one per table), however many acceptances the group holds: the timers do
    not end the run. (SQLite writes the group in one call in its thread either way.)"""
    async with provision_database() as url:
        engine = create_engine(url)
        try:
            await migrate(engine)
            store = Conversations(engine, new_id)
            later = NOW + timedelta(minutes=5)
            counts = []
            statements: list[str] = []

            def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                statements.append(statement)

            for size, first in ((4, 0), (16, 100)):
                statements.clear()
                event.listen(engine.sync_engine, "before_cursor_execute", count)
                try:
                    await asyncio.gather(
                        *(
                            store.commit(_timer_batch(n, ArmTimer("reply", f"tsk_{n}", later)))
                            for n in range(first, first + size)
                        )
                    )
                finally:
                    event.remove(engine.sync_engine, "before_cursor_execute", count)
                counts.append(len(statements))
            assert counts[0] == counts[1], counts
            assert len(await _timers(engine)) == 20
        finally:
            await engine.dispose()


@pytest.mark.distributed
async def test_two_replicas_updating_the_same_tasks_in_opposite_orders_each_win_once():
    """Two writers on one PostgreSQL database (two replicas' stores), each committing groups
    that update the same ten tasks from the same version, in opposite orders, with an
    envelope into a shared inbox and a timer each: every task moves exactly once per round
    (the other writer gets TaskChanged for it), the shared inbox's seqs stay gapless, and
    its delivery rows are numbered in the order of its seqs (the head locks come before any
    envelope or delivery row, whatever the group wrote first)."""
    async with _two_replicas() as (engine, first, second):
        for n in range(10):
            await first.commit(_new_task_batch(f"tsk_{n}", f"env-old-{n}"))
        later = NOW + timedelta(minutes=5)

        def update(n: int, version: int, who: str) -> Batch:
            record = replace(_task(f"tsk_{n}"), state="working", resolved_by=who)
            return Batch(
                now=NOW,
                task=TaskWrite(record, version, (("state", {"by": who}),)),
                envelopes=[_envelope(f"env-{who}-{version}-{n}", f"tsk_{n}")],
                extra=[ArmTimer("reply", f"tsk_{n}", later, {"by": who})],
            )

        won = {"a": 0, "b": 0}
        for version in range(1, 6):
            outcomes = await asyncio.gather(
                *(first.commit(update(n, version, "a")) for n in range(10)),
                *(second.commit(update(n, version, "b")) for n in reversed(range(10))),
                return_exceptions=True,
            )
            for who, part in (("a", outcomes[:10]), ("b", outcomes[10:])):
                for outcome in part:
                    if isinstance(outcome, BaseException):
                        assert isinstance(outcome, TaskChanged), outcome
                    else:
                        won[who] += 1
            for n in range(10):
                found = await first.task_version(f"tsk_{n}")
                assert found is not None and found[1] == version + 1
        assert won["a"] + won["b"] == 50
        items = await first.inbox("support@acme.example", 0, 1000)
        assert [item.seq for item in items] == list(range(1, 61))
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(outbox.c.pk, outbox.c.payload)
                    .where(outbox.c.kind == "delivery")
                    .order_by(outbox.c.pk)
                )
            ).all()
            by_pk = {
                pk: seq
                for pk, seq in (
                    await conn.execute(select(envelopes.c.pk, inbox.c.seq).join(inbox))
                ).all()
            }
        seqs = [by_pk[json.loads(payload)["envelope_pk"]] for _, payload in rows]
        assert seqs == sorted(seqs) and len(seqs) == 60
        for n in range(10):
            timer = (await _timers(engine))[("reply", f"tsk_{n}")]
            record = await first.task(f"tsk_{n}")
            assert record is not None
            assert json.loads(timer.data) == {"by": record.resolved_by}


@pytest.mark.distributed
async def test_the_same_envelopes_raced_through_two_replicas_are_stored_once():
    """Two writers on one PostgreSQL database each commit a group of the same ten envelopes
    (new tasks of their own), in opposite orders, three rounds: each envelope is stored once,
    the other writer's copy is a ReplayCollision, and the inbox holds each once, gapless."""
    async with _two_replicas() as (_, first, second):
        for round_ in range(3):
            ids = [f"env-{round_}-{n}" for n in range(10)]
            outcomes = await asyncio.gather(
                *(first.commit(_new_task_batch(f"tsk_a{i}", i)) for i in ids),
                *(second.commit(_new_task_batch(f"tsk_b{i}", i)) for i in reversed(ids)),
                return_exceptions=True,
            )
            stored = [o for o in outcomes if not isinstance(o, BaseException)]
            refused = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(stored) == 10 and len(refused) == 10
            assert all(isinstance(o, ReplayCollision) for o in refused), refused
        items = await first.inbox("support@acme.example", 0, 1000)
        assert [item.seq for item in items] == list(range(1, 31))
        assert len({item.envelope["id"] for item in items}) == 30


@pytest.mark.distributed
async def test_a_history_remembered_on_one_replica_never_passes_for_a_newer_version():
    """Two stores on one PostgreSQL database, each remembering task windows: when replica B
    moves the task on (with its guard, or by giving it an envelope without one), replica A's
    remembered window stays tied to the old version, a commit planned on it fails with
    TaskChanged, and the window for the new version holds B's envelopes."""
    async with _two_replicas() as (_, first, second):
        await first.commit(_new_task_batch("tsk_1", "env-1"))
        assert [body["id"] for body in await first.history("tsk_1", 1)] == ["env-1"]

        def say(envelope_id: str, version: int) -> Batch:
            record = replace(_task("tsk_1"), state="working")
            return Batch(
                now=NOW,
                task=TaskWrite(record, version),
                envelopes=[_envelope(envelope_id, "tsk_1")],
            )

        assert [body["id"] for body in await second.history("tsk_1", 1)] == ["env-1"]
        await second.commit(say("env-2", 1))
        assert [body["id"] for body in await first.history("tsk_1", 1)] == ["env-1"]
        with pytest.raises(TaskChanged):
            await first.commit(say("env-a", 1))
        assert [body["id"] for body in await first.history("tsk_1", 2)] == ["env-1", "env-2"]

        # An envelope given to the task without its guarded write moves its version too.
        await second.commit(Batch(now=NOW, envelopes=[_envelope("env-3", "tsk_1")]))
        found = await first.task_version("tsk_1")
        assert found is not None and found[1] == 3
        with pytest.raises(TaskChanged):
            await first.commit(say("env-b", 2))
        window = await first.history("tsk_1", 3)
        assert [body["id"] for body in window] == ["env-1", "env-2", "env-3"]
        await first.commit(say("env-4", 3))
        assert [body["id"] for body in await first.history("tsk_1", 4)] == [
            "env-1",
            "env-2",
            "env-3",
            "env-4",
        ]


@pytest.mark.distributed
async def test_a_group_of_task_updates_reuses_one_compiled_statement():
    """The guarded UPDATE of a group's tasks is one statement text whatever the row count:
    after its first use SQLAlchemy finds it compiled (a statement made of the rows' values
    was compiled again for every group)."""
    async with provision_database() as url:
        engine = create_engine(url)
        try:
            await migrate(engine)
            store = Conversations(engine, new_id)
            for n in range(5):
                await store.commit(_new_task_batch(f"tsk_{n}", f"env-old-{n}"))
            hits: list[str] = []

            def note(_conn: Any, _cursor: Any, statement: str, _p: Any, context: Any, *_: Any):
                if statement.startswith("UPDATE tasks"):
                    hits.append(str(context.cache_hit))

            event.listen(engine.sync_engine, "before_cursor_execute", note)
            for version, size in ((1, 3), (2, 5), (3, 2)):
                await asyncio.gather(
                    *(
                        store.commit(
                            Batch(
                                now=NOW,
                                task=TaskWrite(
                                    replace(_task(f"tsk_{n}"), state="working"), version
                                ),
                                envelopes=[_envelope(f"env-{version}-{n}", f"tsk_{n}")],
                            )
                        )
                        for n in range(size)
                    )
                )
                if version == 1:
                    for n in range(3, 5):  # keep every task at the same version
                        await store.commit(
                            Batch(
                                now=NOW,
                                task=TaskWrite(_task(f"tsk_{n}"), 1),
                                envelopes=[_envelope(f"env-fill-{n}", f"tsk_{n}")],
                            )
                        )
            event.remove(engine.sync_engine, "before_cursor_execute", note)
            multi = [hit for hit in hits if hit != "CacheStats.NO_CACHE_KEY"]
            assert len(multi) == len(hits) and hits[-1] == "CacheStats.CACHE_HIT", hits
        finally:
            await engine.dispose()
