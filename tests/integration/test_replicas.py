"""Two equal replicas on one PostgreSQL and one NATS: any replica accepts, any replica reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.client import GatewayProblem
from identity.keys import PrivateKey
from tests.conftest import DistributedServices, Harness, make_settings, start_gateway

pytestmark = pytest.mark.distributed

SENDERS = 20
PER_SENDER = 10


@pytest.fixture
async def replicas(
    distributed: DistributedServices, tmp_path: Path
) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two gateways sharing the database, the bus prefix and the gateway key; each has a data
    folder of its own (its replica id)."""
    shared = {**distributed.settings_changes(), "gateway_key_file": tmp_path / "gateway_key.jwk"}
    async with (
        start_gateway(make_settings(tmp_path / "a", **shared)) as first,
        start_gateway(make_settings(tmp_path / "b", **shared)) as second,
    ):
        assert first.services.gateway_key.public.jwk == second.services.gateway_key.public.jwk
        yield first, second


async def test_concurrent_senders_across_replicas_fill_one_inbox_without_gaps(replicas):
    """200 envelopes from 20 senders at once, alternating replicas, into one inbox: seqs are
    exactly 1..200, every envelope appears once, and a reader following the inbox on the
    other replica only ever sees the next seq (no gap that fills in later)."""
    first, second = replicas
    _, agents = await first.brand("acme.example", [("support", "Support", ["help"])])
    support = agents["support"]
    people = [await first.person(f"person{n}") for n in range(SENDERS)]
    reader = second.agent(support.address, support.key)
    observed: list[int] = []
    done = asyncio.Event()

    async def follow() -> None:
        after = 0
        while not (done.is_set() and after >= SENDERS * PER_SENDER):
            page = await reader.inbox(after=after, limit=50, wait=1)
            for item in page["items"]:
                assert item["seq"] == after + 1, f"seq {item['seq']} came after {after}"
                observed.append(item["seq"])
                after = item["seq"]

    async def send_all(index: int) -> list[str]:
        sent = []
        for number in range(PER_SENDER):
            replica = (first, second)[(index + number) % 2]
            client = replica.agent(people[index].address, people[index].key)
            answer = await client.send(support.address, f"message {number} from {index}")
            assert answer["duplicate"] is False
            sent.append(answer["id"])
        return sent

    follower = asyncio.create_task(follow())
    batches = await asyncio.gather(*(send_all(index) for index in range(SENDERS)))
    done.set()
    await asyncio.wait_for(follower, 30)
    sent = [envelope_id for batch in batches for envelope_id in batch]

    items = []
    after = 0
    while True:
        page = (await support.inbox(after=after, limit=100))["items"]
        if not page:
            break
        items.extend(page)
        after = page[-1]["seq"]
    total = SENDERS * PER_SENDER
    assert [item["seq"] for item in items] == list(range(1, total + 1))
    assert sorted(item["envelope"]["id"] for item in items) == sorted(sent)
    assert observed == list(range(1, total + 1))


async def test_one_envelope_posted_to_both_replicas_at_once_is_accepted_once(replicas):
    """The same signed envelope raced to both replicas, ten times: each time one answer is new
    and the other is the duplicate of it, and the inbox holds each envelope once."""
    first, second = replicas
    _, agents = await first.brand("acme.example", [("support", "Support", ["help"])])
    support = agents["support"]
    alice = await first.person("alice")
    for number in range(10):
        envelope = alice.envelope(support.address, f"race {number}")
        answers = await asyncio.gather(
            first.agent(alice.address, alice.key).post_envelope(envelope),
            second.agent(alice.address, alice.key).post_envelope(envelope),
        )
        assert sorted(answer["duplicate"] for answer in answers) == [False, True]
        assert answers[0]["task"] == answers[1]["task"]
    items = (await support.inbox(limit=100))["items"]
    assert [item["seq"] for item in items] == list(range(1, 11))
    assert [item["envelope"]["body"]["text"] for item in items] == [
        f"race {number}" for number in range(10)
    ]


async def test_a_long_poll_on_one_replica_wakes_for_an_envelope_accepted_on_the_other(replicas):
    """A reader waiting on replica B is woken through NATS when replica A accepts, well before
    its 30 s wait would have run out."""
    first, second = replicas
    _, agents = await first.brand("acme.example", [("support", "Support", ["help"])])
    support = agents["support"]
    alice = await first.person("alice")
    waiting = asyncio.create_task(second.agent(support.address, support.key).inbox(wait=30))
    await asyncio.sleep(0.3)  # the long poll is parked on replica B
    started = time.monotonic()
    await alice.send(support.address, "Are you there?")
    page = await asyncio.wait_for(waiting, 35)
    assert [item["envelope"]["body"]["text"] for item in page["items"]] == ["Are you there?"]
    assert time.monotonic() - started < 10, "the wake-up did not cross replicas"


@pytest.fixture
async def replicas_long_ttl(
    distributed: DistributedServices, tmp_path: Path
) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two replicas whose directory caches would keep an entry for ten minutes: only the
    `directory.changed` broadcast can make one forget another's change in time."""
    shared = {
        **distributed.settings_changes(),
        "gateway_key_file": tmp_path / "gateway_key.jwk",
        "directory_cache_ttl_s": 600.0,
    }
    async with (
        start_gateway(make_settings(tmp_path / "a", **shared)) as first,
        start_gateway(make_settings(tmp_path / "b", **shared)) as second,
    ):
        yield first, second


async def test_a_key_revoked_on_one_replica_is_refused_on_the_other_within_the_bound(
    replicas_long_ttl,
):
    """Replica B has alice's old key cached (it accepted an envelope signed with it); once
    replica A revokes the key, A refuses it at once and B refuses it as soon as the broadcast
    arrives, within 5 s (the bound documented in gateway/directory_cache.py), far inside B's
    ten-minute TTL."""
    first, second = replicas_long_ttl
    _, agents = await first.brand("acme.example", [("support", "Support", ["help"])])
    support = agents["support"]
    alice = await first.person("alice")
    old = alice.key
    on_b = second.agent(alice.address, old)
    assert (await on_b.send(support.address, "warm B's cache"))["duplicate"] is False
    new = PrivateKey.generate()
    keys_path = f"/v1/agents/{alice.address}/keys"
    await alice.call("POST", keys_path, token=alice.token(), body={"jwk": new.public.jwk})
    await alice.call("DELETE", f"{keys_path}/{old.kid}", token=alice.token())

    with pytest.raises(GatewayProblem) as on_a:
        await first.agent(alice.address, old).send(support.address, "old key on A")
    assert on_a.value.status == 401 and on_a.value.code == "key_revoked"

    deadline = time.monotonic() + 5.0
    accepted_on_b = 0
    while True:
        try:
            await on_b.send(support.address, "old key on B")
        except GatewayProblem as problem:
            assert problem.status == 401 and problem.code == "key_revoked"
            break
        accepted_on_b += 1
        assert time.monotonic() < deadline, "replica B still accepts the revoked key after 5 s"
        await asyncio.sleep(0.05)
    print(f"replica B accepted {accepted_on_b} envelope(s) with the revoked key before refusing")


async def test_a_task_moved_on_by_the_other_replica_is_read_again_before_a_refusal(replicas):
    """Replica A remembers a task as `working`; replica B completes it. A `confirm` (valid only
    on a completed task) sent through A is accepted, because A reads the task again rather than
    refusing on what it remembers; a later `say` through A moves the task on from there."""
    first, second = replicas
    _, agents = await first.brand("acme.example", [("support", "Support", ["help"])])
    support = agents["support"]
    alice = await first.person("alice")
    opened = await alice.send(support.address, "My speaker blinks.")
    task = opened["task"]
    on_a = first.agent(support.address, support.key)
    assert (await on_a.send(alice.address, "Which colour?", task=task))["task_state"] == "working"
    on_b = second.agent(support.address, support.key)
    resolved = await on_b.send(alice.address, "Fixed.", act="resolve", task=task)
    assert resolved["task_state"] == "completed"
    confirmed = await alice.send(support.address, "", act="confirm", task=task)
    assert confirmed["task_state"] == "completed" and confirmed["duplicate"] is False
    reopened = await alice.send(support.address, "It blinks again.", task=task)
    assert reopened["task_state"] != "completed"
