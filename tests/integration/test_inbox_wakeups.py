"""Inbox wake-ups of envelopes accepted together go out as one message per agent, carrying
the highest seq: a reader woken by them misses nothing, on either backend and across
replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import DistributedServices, make_settings, start_gateway

SENDERS = 16
PER_SENDER = 6


async def _heard(bus, agent: str) -> tuple[list[int], object]:
    heard: list[int] = []

    async def note(_subject: str, data: bytes) -> None:
        heard.append(int(data))

    return heard, await bus.subscribe(f"inbox.{agent}", note)


async def _send_all(replicas, people, address: str) -> None:
    async def send(index: int) -> None:
        for number in range(PER_SENDER):
            replica = replicas[(index + number) % len(replicas)]
            client = replica.agent(people[index].address, people[index].key)
            await client.send(address, f"message {number} from {index}")

    await asyncio.gather(*(send(index) for index in range(SENDERS)))


async def _until(heard: list[int], last: int) -> None:
    for _ in range(200):  # the wake-ups cross NATS: give them a moment
        if heard and heard[-1] == last:
            return
        await asyncio.sleep(0.05)


async def test_concurrent_envelopes_wake_their_inbox_with_every_last_seq(gateway):
    """96 envelopes from 16 senders at once into one inbox: every wake-up heard carries a seq
    higher than the one before and the last carries the last seq. (How many wake-ups that
    takes depends on how the requests fall into group commits; that envelopes committed
    together share one is asserted in tests/gateway/test_gateway_inbox_wakeups.py.)"""
    _, agents = await gateway.brand("acme.example", [("support", "Support", ["help"])])
    support = agents["support"]
    people = [await gateway.person(f"person{n}") for n in range(SENDERS)]
    heard, subscription = await _heard(gateway.services.bus, support.address)
    try:
        await _send_all([gateway], people, support.address)
        total = SENDERS * PER_SENDER
        await _until(heard, total)
    finally:
        await subscription.stop()
    assert heard == sorted(set(heard)) and heard[-1] == total


@pytest.mark.distributed
async def test_a_reader_on_one_replica_hears_the_last_seq_of_envelopes_sent_through_both(
    distributed: DistributedServices, tmp_path: Path
):
    """Envelopes sent through two replicas at once: replica B's bus hears, for the shared
    inbox, a wake-up with the last seq, and a long poll on B that follows the wake-ups
    reads every envelope in order."""
    shared = {**distributed.settings_changes(), "gateway_key_file": tmp_path / "gateway_key.jwk"}
    async with (
        start_gateway(make_settings(tmp_path / "a", **shared)) as first,
        start_gateway(make_settings(tmp_path / "b", **shared)) as second,
    ):
        _, agents = await first.brand("acme.example", [("support", "Support", ["help"])])
        support = agents["support"]
        people = [await first.person(f"person{n}") for n in range(SENDERS)]
        heard, subscription = await _heard(second.services.bus, support.address)
        total = SENDERS * PER_SENDER
        reader = second.agent(support.address, support.key)
        seen: list[int] = []

        async def follow() -> None:
            while len(seen) < total:
                page = await reader.inbox(after=seen[-1] if seen else 0, limit=100, wait=30)
                seen.extend(item["seq"] for item in page["items"])

        try:
            follower = asyncio.create_task(follow())
            await _send_all([first, second], people, support.address)
            await asyncio.wait_for(follower, 60)
            await _until(heard, total)
        finally:
            await subscription.stop()
        assert seen == list(range(1, total + 1))
        assert max(heard) == total
