"""Which rate bucket an envelope draws from, and that the buckets do not pile up.

The gateway here allows 2 envelopes a minute unless a brand's policy says otherwise, so the
third envelope in a bucket is refused at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Overrides
from gateway.clock import ManualClock
from tests.conftest import Harness, make_settings, start_gateway
from tests.integration.wire import assert_problem, request

SUPPORT = ("support", "Technical support for speakers", ["troubleshooting"])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
async def slow_gateway(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Harness]:
    settings = make_settings(tmp_path / "var", rate_per_minute=2)
    overrides = Overrides(clock=clock, announce=lambda _text: None)
    async with start_gateway(settings, overrides) as harness:
        yield harness


async def _refused_for_rate(gateway: Harness, envelope: dict[str, Any]) -> None:
    answer = await request(gateway.session, "POST", gateway.url + "/v1/messages", body=envelope)
    assert_problem(answer, 429, "rate_limited")


async def test_a_brand_agent_is_limited_per_person_it_writes_to(slow_gateway: Harness) -> None:
    """A support agent answering three customers is not held to one person's rate in all:
    each customer is a bucket of its own, and a third envelope to one of them is refused."""
    staff, agents = await slow_gateway.brand("acme.example", [SUPPORT])
    await staff.set_policy("acme.example", {"contact": {"rate_per_minute": 100}})
    support = agents["support"]
    tasks = {}
    for name in ("alice", "bob", "carol"):
        person = await slow_gateway.person(name)
        tasks[person.address] = (await person.send("acme.example", "my speaker is silent"))["task"]
    for address, task in tasks.items():
        answer = await support.send(address, "Is the status light on?", task=task)
        assert answer["duplicate"] is False
    alice = next(iter(tasks))
    await support.send(alice, "Try holding play for five seconds.", task=tasks[alice])
    await _refused_for_rate(
        slow_gateway, support.envelope(alice, "One more thing", task=tasks[alice])
    )


async def test_a_person_is_limited_per_brand(slow_gateway: Harness) -> None:
    """A person's envelopes to a brand count against that brand's rate only."""
    for domain in ("acme.example", "globex.example"):
        await slow_gateway.brand(domain, [SUPPORT])
    alice = await slow_gateway.person("alice")
    for domain in ("acme.example", "globex.example"):
        await alice.send(domain, "hello")
        await alice.send(domain, "hello again")
    await _refused_for_rate(slow_gateway, alice.envelope("acme.example", "a third time"))
    await _refused_for_rate(slow_gateway, alice.envelope("globex.example", "a third time"))


async def test_buckets_full_again_are_forgotten(slow_gateway: Harness, clock: ManualClock) -> None:
    """Past the sweep mark, the buckets nobody took from for a minute (full again, so the
    same as none) are dropped, and the ones in use are kept with their tokens."""
    await slow_gateway.brand("acme.example", [SUPPORT])
    acceptance = slow_gateway.services.acceptance
    people = [await slow_gateway.person(f"p{index}") for index in range(4)]
    for person in people[:3]:
        await person.send("acme.example", "hello")
    clock.advance(62)
    busy = people[3]
    await busy.send("acme.example", "hello")
    await busy.send("acme.example", "hello again")
    assert len(acceptance._buckets) == 4
    acceptance._buckets_swept_at = 4  # as if 10,000 senders had come by
    newcomer = await slow_gateway.person("newcomer")
    await newcomer.send("acme.example", "hello")
    assert sorted(sender for sender, _ in acceptance._buckets) == sorted(
        [busy.address, newcomer.address]
    )
    await _refused_for_rate(slow_gateway, busy.envelope("acme.example", "a third time"))
    for person in people[:3]:
        await person.send("acme.example", "back after a minute")
