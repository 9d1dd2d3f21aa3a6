"""Ordered batches (docs/delivery-batches.md) on a real gateway and real endpoints: an endpoint
registered with `max_batch` gets the envelopes queued for it in one POST each, in acceptance
order, one batch in flight; retries resend the same rows under the same id; replies reach
each initiator; the setting is validated, shown on the card and reset by a PATCH."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.client import AgentClient, GatewayProblem
from identity.keys import PrivateKey, PublicKey
from identity.webhook import verify_webhook
from tests.conftest import Harness, make_settings, provision_distributed, start_gateway
from tests.delivery.webhook_endpoints import Endpoint, Received, fast_delivery, wait_until


@pytest.fixture
async def batching(backend: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """A delivering gateway (loopback endpoints allowed) on each backend."""
    delivery = fast_delivery(timeout_s=30.0)
    if backend == "embedded":
        async with start_gateway(make_settings(tmp_path / "var", delivery=delivery)) as harness:
            yield harness
        return
    async with provision_distributed() as services:
        settings = make_settings(tmp_path / "var", delivery=delivery, **services.settings_changes())
        async with start_gateway(settings) as harness:
            yield harness


async def batch_agent(gateway: Harness, endpoint: Endpoint, max_batch: int) -> AgentClient:
    """The brand acme.example with support@, whose endpoint takes batches of `max_batch`."""
    staff, _ = await gateway.brand("acme.example")
    client = gateway.agent("support@acme.example")
    await staff.register_brand_agent(
        client.address,
        client.key,
        description="Support for speakers",
        skills=["troubleshooting"],
        endpoint=endpoint.url,
        max_batch=max_batch,
    )
    return client


def items(received: list[Received]) -> list[dict[str, Any]]:
    return [item for request in received for item in request.json["items"]]


async def held_until(gate: asyncio.Event) -> web.StreamResponse:
    await gate.wait()
    return web.Response(status=200)


async def test_a_queue_leaves_in_ordered_batches_one_in_flight(
    batching: Harness, endpoints: Any
) -> None:
    """While the endpoint holds its first POST, 18 envelopes queue; they then arrive in
    acceptance order, at most 5 to a POST, one POST at a time, each POST signed with the
    gateway's key and named after its size and first item."""
    gate = asyncio.Event()

    async def slow(_endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        return await held_until(gate)

    endpoint = await endpoints(slow)
    agent = await batch_agent(batching, endpoint, max_batch=5)
    people = [await batching.person(f"p{n}") for n in range(6)]
    opened = [await person.send(agent.address, f"{person.address} 0") for person in people]
    await endpoint.wait_for(1)  # the first envelope is held there

    async def converse(person: AgentClient, task: str) -> None:
        for turn in range(1, 4):
            await person.send(agent.address, f"{person.address} {turn}", task=task)

    await asyncio.gather(*(converse(p, o["task"]) for p, o in zip(people, opened, strict=True)))
    gate.set()

    async def all_arrived() -> bool:
        return len(items(endpoint.received)) >= 24

    await wait_until(all_arrived, within=15, what="24 items")
    delivered = items(endpoint.received)
    conversations = batching.services.conversations
    pks = []
    for item in delivered:
        envelope = item["envelope"]
        pks.append((await conversations.by_replay_key(envelope["from"], envelope["id"])).pk)
    assert pks == sorted(pks) and len(set(pks)) == 24, "items left out of acceptance order"
    assert len({item["id"] for item in delivered}) == 24
    sizes = [len(request.json["items"]) for request in endpoint.received]
    assert max(sizes) == 5 and sizes[0] == 1  # the held one went alone; the queue in fives
    assert endpoint.max_in_flight == 1

    async with batching.session.get(batching.url + "/.well-known/switchboard") as response:
        keys = [PublicKey.from_jwk(jwk) for jwk in (await response.json())["jwks"]["keys"]]
    for request in endpoint.received:
        headers, body = request.headers, request.json
        assert body["type"] == "batch"
        assert headers["webhook-id"] == f"batch_{len(body['items'])}_{body['items'][0]['id']}"
        assert verify_webhook(
            keys,
            headers["webhook-id"],
            int(headers["webhook-timestamp"]),
            request.body,
            headers["webhook-signature"],
            now=datetime.now(UTC),
        )
    task = opened[0]["task"]
    found = (await agent.task(task))["deliveries"]
    assert [d["status"] for d in found] == ["delivered"] * 4
    assert {d["id"] for d in found} <= {item["id"] for item in delivered}


async def test_a_failed_batch_is_sent_again_whole_under_the_same_id(
    delivering: Harness, endpoints: Any
) -> None:
    """A 500 to a batch retries every row in it: the same items under the same webhook-id,
    then the 200 settles them all; each row records both attempts."""
    gate = asyncio.Event()

    async def scripted(endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        if len(endpoint.received) == 1:
            return await held_until(gate)
        if len(endpoint.received) == 2:
            return web.Response(status=500)
        return web.Response(status=204)

    endpoint = await endpoints(scripted)
    agent = await batch_agent(delivering, endpoint, max_batch=10)
    alice = await delivering.person("alice")
    task = (await alice.send(agent.address, "one"))["task"]
    await endpoint.wait_for(1)
    for text in ("two", "three", "four"):
        await alice.send(agent.address, text, task=task)
    gate.set()
    first, failed, retried = await endpoint.wait_for(3)
    assert [i["envelope"]["body"]["text"] for i in failed.json["items"]] == [
        "two",
        "three",
        "four",
    ]
    assert retried.body == failed.body
    assert retried.webhook_id == failed.webhook_id != first.webhook_id

    async def settled() -> bool:
        found = (await agent.task(task))["deliveries"]
        return len(found) == 4 and all(d["status"] == "delivered" for d in found)

    await wait_until(settled, what="four deliveries delivered")
    found = (await agent.task(task))["deliveries"]
    assert [(a["outcome"], a["status"]) for a in found[0]["attempts"]] == [("ok", 200)]
    for delivery in found[1:]:
        assert [(a["outcome"], a["status"]) for a in delivery["attempts"]] == [
            ("retry", 500),
            ("ok", 204),
        ]
    await asyncio.sleep(0.2)
    assert len(endpoint.received) == 3


async def test_replies_in_a_batch_reach_each_initiator_and_refusals_are_recorded(
    delivering: Harness, endpoints: Any
) -> None:
    """A 200 with `replies` answers several people in one round trip: each reply is accepted
    as if POSTed and lands in its initiator's inbox; a forged reply is refused and noted; an
    item the endpoint refuses fails for good with its reason; the others are delivered."""
    gate = asyncio.Event()
    agent_box: dict[str, AgentClient] = {}

    async def answer(endpoint: Endpoint, received: Received) -> web.StreamResponse:
        if len(endpoint.received) == 1:
            await gate.wait()
        replies: list[dict[str, Any]] = []
        for item in received.json["items"]:
            envelope, text = item["envelope"], item["envelope"]["body"]["text"]
            if "refuse" in text:
                replies.append({"id": item["id"], "refused": "we do not serve this region"})
                continue
            reply = agent_box["agent"].envelope(
                envelope["from"],
                f"About '{text}': is the light blinking fast or slow?",
                act="ask",
                task=item["task"]["id"],
                reply_to=envelope["id"],
            )
            if "forge" in text:
                reply["body"] = {"text": "changed after signing", "parts": []}
            replies.append({"id": item["id"], "envelope": reply})
        return web.json_response({"replies": replies})

    endpoint = await endpoints(answer)
    agent_box["agent"] = agent = await batch_agent(delivering, endpoint, max_batch=8)
    alice, bob, carol, dave = [
        await delivering.person(name) for name in ("alice", "bob", "carol", "dave")
    ]
    first = await alice.send(agent.address, "warm up")
    await endpoint.wait_for(1)
    sent = {
        "bob": await bob.send(agent.address, "bob's light flashes"),
        "carol": await carol.send(agent.address, "please forge this"),
        "dave": await dave.send(agent.address, "refuse me"),
        "alice": await alice.send(agent.address, "alice again", task=first["task"]),
    }
    gate.set()
    await endpoint.wait_for(2)
    assert len(endpoint.received[1].json["items"]) == 4

    for person, text in ((bob, "bob's light flashes"), (alice, "alice again")):

        async def answered(person: AgentClient = person, text: str = text) -> bool:
            found = (await person.inbox())["items"]
            return any(text in item["envelope"]["body"]["text"] for item in found)

        await wait_until(answered, what=f"the reply to {text!r}")
    bob_item = next(
        i for i in (await bob.inbox())["items"] if i["envelope"]["reply_to"] == sent["bob"]["id"]
    )
    assert bob_item["task"]["id"] == sent["bob"]["task"]
    assert (await carol.inbox())["items"] == []
    assert (await dave.inbox())["items"] == []

    async def settled(task: str) -> list[dict[str, Any]]:
        async def done() -> bool:
            found = (await agent.task(task))["deliveries"]
            return bool(found) and all(d["status"] != "pending" for d in found)

        await wait_until(done, what="deliveries settle")
        return list((await agent.task(task))["deliveries"])

    [bob_delivery] = await settled(sent["bob"]["task"])
    assert bob_delivery["attempts"][0]["note"].startswith("reply accepted")
    [carol_delivery] = await settled(sent["carol"]["task"])
    assert carol_delivery["status"] == "delivered"
    assert carol_delivery["attempts"][0]["note"].startswith("reply refused: signature_invalid")
    [dave_delivery] = await settled(sent["dave"]["task"])
    assert dave_delivery["status"] == "failed"
    assert dave_delivery["attempts"][0]["error"] == (
        "refused by the endpoint: we do not serve this region"
    )


async def test_max_batch_is_validated_shown_on_the_card_and_reset_by_a_patch(
    delivering: Harness, endpoints: Any
) -> None:
    """`max_batch` outside 1..100 or not an integer is a schema_invalid problem naming it,
    and creates nothing; a valid one shows on the card; a PATCH of the endpoint without it
    goes back to one envelope per POST (the card's endpoint then has no `max_batch`)."""
    endpoint = await endpoints()
    staff, _ = await delivering.brand("acme.example")
    key = PrivateKey.generate()
    for bad in (0, 101, "5", 2.5, None):
        body = {
            "address": "support@acme.example",
            "kind": "brand",
            "keys": [key.public.jwk],
            "endpoint": {"url": endpoint.url, "max_batch": bad},
        }
        with pytest.raises(GatewayProblem) as refused:
            await staff.call("POST", "/v1/agents", token=staff.token, body=body)
        assert (refused.value.status, refused.value.code) == (400, "schema_invalid"), bad
        assert "max_batch" in refused.value.detail, refused.value.detail
        with pytest.raises(GatewayProblem) as missing:
            await staff.call("GET", "/v1/agents/support@acme.example", token=staff.token)
        assert missing.value.status == 404

    card = await staff.register_brand_agent(
        "support@acme.example",
        key,
        description="d",
        skills=["s"],
        endpoint=endpoint.url,
        max_batch=100,
    )
    assert card["endpoint"] == {"url": endpoint.url, "status": "active", "max_batch": 100}
    patched = await staff.call(
        "PATCH",
        "/v1/agents/support@acme.example",
        token=staff.token,
        body={"endpoint": {"url": endpoint.url}},
    )
    assert patched["endpoint"] == {"url": endpoint.url, "status": "active"}
    agent = delivering.agent("support@acme.example", key)
    alice = await delivering.person("alice")
    await alice.send(agent.address, "Hello")
    [received] = await endpoint.wait_for(1)
    assert received.json["type"] == "envelope"  # one envelope per POST again
