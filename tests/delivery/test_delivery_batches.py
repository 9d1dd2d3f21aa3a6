"""Ordered batches (docs/delivery-batches.md) on a real gateway and real endpoints: an endpoint
registered with `max_batch` gets the envelopes queued for it in one POST each, in acceptance
order, one batch in flight; retries resend the same rows under the same id; replies reach
each initiator; the setting is validated, shown on the card and reset by a PATCH."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.client import AgentClient, GatewayProblem
from identity.keys import PrivateKey
from tests.conftest import Harness, make_settings, provision_distributed, start_gateway
from tests.delivery.webhook_endpoints import (
    Endpoint,
    Received,
    fast_delivery,
    published_keys,
    wait_until,
)


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
    """The items of every batch received, in the order they came."""
    return [item for request in received for item in request.json["items"]]


def texts(received: Received) -> list[str]:
    """The texts of one batch's items, in order."""
    return [item["envelope"]["body"]["text"] for item in received.json["items"]]


async def held_until(gate: asyncio.Event) -> web.StreamResponse:
    """A 200, once `gate` is set."""
    await gate.wait()
    return web.Response(status=200)


async def settled_deliveries(agent: AgentClient, task: str) -> list[dict[str, Any]]:
    """The task's deliveries, once none is pending."""

    async def done() -> bool:
        found = (await agent.task(task))["deliveries"]
        return bool(found) and all(d["status"] != "pending" for d in found)

    await wait_until(done, what="deliveries settle")
    return list((await agent.task(task))["deliveries"])


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

    keys = await published_keys(batching.session, batching.url)
    for request in endpoint.received:
        body = request.json
        assert body["type"] == "batch"
        ids = ",".join(item["id"] for item in body["items"])
        assert request.webhook_id == f"batch_{hashlib.sha256(ids.encode()).hexdigest()[:32]}"
        assert request.signed_by(keys)
    task = opened[0]["task"]
    found = (await agent.task(task))["deliveries"]
    assert [d["status"] for d in found] == ["delivered"] * 4
    assert {d["id"] for d in found} <= {item["id"] for item in delivered}


async def test_a_failed_batch_is_sent_again_whole_under_the_same_id(
    batching: Harness, endpoints: Any
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
    agent = await batch_agent(batching, endpoint, max_batch=10)
    alice = await batching.person("alice")
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
    batching: Harness, endpoints: Any
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
    agent_box["agent"] = agent = await batch_agent(batching, endpoint, max_batch=8)
    alice, bob, carol, dave = [
        await batching.person(name) for name in ("alice", "bob", "carol", "dave")
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


async def test_a_batch_takes_what_is_due_when_it_leaves(batching: Harness, endpoints: Any) -> None:
    """With max_batch 2: m3 is queued while POST 2 is out, m4 and m5 after it; POST 3 takes
    what is due when it leaves, [m3, m4], not a batch made up while POST 2 was out."""
    gates = [asyncio.Event() for _ in range(10)]

    async def gated(endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        await gates[len(endpoint.received) - 1].wait()
        return web.Response(status=204)

    endpoint = await endpoints(gated)
    agent = await batch_agent(batching, endpoint, max_batch=2)
    alice = await batching.person("alice")
    task = (await alice.send(agent.address, "m0"))["task"]
    await endpoint.wait_for(1)
    for text in ("m1", "m2", "m3"):
        await alice.send(agent.address, text, task=task)
    gates[0].set()
    await endpoint.wait_for(2)
    assert texts(endpoint.received[1]) == ["m1", "m2"]
    await asyncio.sleep(0.3)  # time for anything that would claim m3 early
    for text in ("m4", "m5"):
        await alice.send(agent.address, text, task=task)
    gates[1].set()
    await endpoint.wait_for(3)
    for gate in gates:
        gate.set()
    assert texts(endpoint.received[2]) == ["m3", "m4"]
    await endpoint.wait_for(4)
    assert texts(endpoint.received[3]) == ["m5"]


async def test_reply_entries_that_name_no_item_or_one_again_change_nothing(
    batching: Harness, endpoints: Any
) -> None:
    """Entries naming no item of the batch, or an item already answered, or with neither
    an envelope nor a refusal, are ignored: no item fails or is answered by them, and the
    first item's attempt says how many were ignored."""

    async def stray(_endpoint: Endpoint, received: Received) -> web.StreamResponse:
        [item] = received.json["items"]
        return web.json_response(
            {
                "replies": [
                    {"id": "dlv_from_another_batch", "refused": "stale"},
                    {"id": item["id"], "note": "neither"},
                    {"refused": "no id"},
                    "not an object",
                ]
            }
        )

    endpoint = await endpoints(stray)
    agent = await batch_agent(batching, endpoint, max_batch=4)
    alice = await batching.person("alice")
    task = (await alice.send(agent.address, "hello"))["task"]
    [delivery] = await settled_deliveries(agent, task)
    assert delivery["status"] == "delivered"
    [attempt] = delivery["attempts"]
    assert attempt["note"].startswith("4 reply entries ignored"), attempt


async def test_a_second_entry_for_an_item_is_ignored(batching: Harness, endpoints: Any) -> None:
    """The first entry for an item counts: a refusal after an accepted reply does not fail
    the item, and the reply reaches the person."""
    agent_box: dict[str, AgentClient] = {}

    async def twice(_endpoint: Endpoint, received: Received) -> web.StreamResponse:
        [item] = received.json["items"]
        reply = agent_box["agent"].envelope(
            item["envelope"]["from"], "Answered", task=item["task"]["id"]
        )
        return web.json_response(
            {"replies": [{"id": item["id"], "envelope": reply}, {"id": item["id"], "refused": "x"}]}
        )

    endpoint = await endpoints(twice)
    agent_box["agent"] = agent = await batch_agent(batching, endpoint, max_batch=4)
    alice = await batching.person("alice")
    task = (await alice.send(agent.address, "hello"))["task"]
    [delivery] = await settled_deliveries(agent, task)
    assert delivery["status"] == "delivered"
    note = delivery["attempts"][0]["note"]
    assert note.startswith("reply accepted") and "1 reply entries ignored" in note
    [item] = (await alice.inbox(wait=5))["items"]
    assert item["envelope"]["body"]["text"] == "Answered"


async def test_replies_together_larger_than_one_reply_may_be_are_accepted(
    batching: Harness, endpoints: Any
) -> None:
    """Nine replies of ~30 KB in one answer (275 KB, more than the 256 KiB one reply may
    take): the answer may be 256 KiB per item, so every reply is accepted."""
    gate = asyncio.Event()
    agent_box: dict[str, AgentClient] = {}

    async def answer(endpoint: Endpoint, received: Received) -> web.StreamResponse:
        if len(endpoint.received) == 1:
            return await held_until(gate)
        replies = []
        for item in received.json["items"]:
            envelope = item["envelope"]
            reply = agent_box["agent"].envelope(
                envelope["from"], "x" * 30_000, act="ask", task=item["task"]["id"]
            )
            replies.append({"id": item["id"], "envelope": reply})
        return web.json_response({"replies": replies})

    endpoint = await endpoints(answer)
    agent_box["agent"] = agent = await batch_agent(batching, endpoint, max_batch=10)
    await (await batching.person("zed")).send(agent.address, "warm up")
    await endpoint.wait_for(1)
    people = [await batching.person(f"p{n}") for n in range(9)]
    for n, person in enumerate(people):
        await person.send(agent.address, f"question {n}")
    gate.set()
    await endpoint.wait_for(2)
    assert len(endpoint.received[1].json["items"]) == 9
    assert len(endpoint.received[1].body) < 1024 * 1024
    for person in people:
        [item] = (await person.inbox(wait=5))["items"]
        assert item["envelope"]["body"]["text"] == "x" * 30_000


async def test_a_batch_stays_under_1_mib(batching: Harness, endpoints: Any) -> None:
    """Six envelopes of ~180 KB queue behind a held one (max_batch 8): they leave in
    batches whose bodies stay under 1 MiB (what an endpoint taking batches must accept),
    in order, and all are delivered."""
    gate = asyncio.Event()

    async def first_held(endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        if len(endpoint.received) == 1:
            await gate.wait()
        return web.Response(status=204)

    endpoint = await endpoints(first_held)
    agent = await batch_agent(batching, endpoint, max_batch=8)
    alice = await batching.person("alice")
    task = (await alice.send(agent.address, "warm up"))["task"]
    await endpoint.wait_for(1)
    blob = base64.b64encode(os.urandom(135_000)).decode()
    part = {"kind": "raw", "media_type": "application/octet-stream", "name": "log", "base64": blob}
    for n in range(6):
        await alice.send(agent.address, f"log {n}", task=task, parts=[part])
    gate.set()
    found = await settled_deliveries(agent, task)
    assert [d["status"] for d in found] == ["delivered"] * 7
    assert [t for r in endpoint.received for t in texts(r)] == ["warm up"] + [
        f"log {n}" for n in range(6)
    ]
    sizes = [len(request.body) for request in endpoint.received[1:]]
    assert len(sizes) >= 2 and all(size < 1024 * 1024 for size in sizes), sizes
    assert max(len(request.json["items"]) for request in endpoint.received) == 5


@pytest.mark.parametrize("max_batch", [1, 2])
async def test_nothing_is_posted_after_a_410(
    batching: Harness, endpoints: Any, max_batch: int
) -> None:
    """After a 410 the endpoint gets nothing more, although rows were queued (and, one at
    a time, one was leased ahead) while the 410 was on its way: they fail as disabled, and
    the endpoint is disabled once, its note naming the delivery that got the 410."""
    gate = asyncio.Event()

    async def gone(endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        if len(endpoint.received) == 1:
            return await held_until(gate)
        return web.Response(status=410)

    endpoint = await endpoints(gone)
    agent = await batch_agent(batching, endpoint, max_batch=max_batch)
    alice = await batching.person("alice")
    task = (await alice.send(agent.address, "m0"))["task"]
    await endpoint.wait_for(1)
    for n in range(1, 2 * max_batch + 2):
        await alice.send(agent.address, f"m{n}", task=task)
    gate.set()
    found = await settled_deliveries(agent, task)
    assert len(endpoint.received) == 2
    assert [d["status"] for d in found] == ["delivered"] + ["failed"] * (2 * max_batch + 1)
    record = await batching.services.directory.agent(agent.address)
    assert endpoint.received[1].webhook_id in record.endpoint_note
    disabled = [d for d in found if d["attempts"][0]["outcome"] == "disable"]
    assert len(disabled) == (max_batch if max_batch > 1 else 1)


async def test_a_batch_that_keeps_failing_gives_up_row_by_row_in_order(
    tmp_path: Path, endpoints: Any
) -> None:
    """An endpoint answering 503 to everything, with a 0.5 s retry budget: the batch is sent
    again and again, each row gives up when its own budget is spent (oldest first), and no
    POST ever carries a row before an older one still pending."""

    async def down(_endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        return web.Response(status=503)

    endpoint = await endpoints(down)
    delivery = fast_delivery(retry_budget_s=0.5)
    async with start_gateway(make_settings(tmp_path / "var", delivery=delivery)) as gateway:
        agent = await batch_agent(gateway, endpoint, max_batch=4)
        alice = await gateway.person("alice")
        task = (await alice.send(agent.address, "m0"))["task"]
        for n in range(1, 4):
            await asyncio.sleep(0.1)
            await alice.send(agent.address, f"m{n}", task=task)
        found = await settled_deliveries(agent, task)
    mine = [d for d in found if d["recipient"] == agent.address][:4]
    assert [d["status"] for d in mine] == ["failed"] * 4
    assert all(d["last_error"].startswith("gave up after") for d in mine)
    # Each POST is a run of consecutive rows; the first row of each never goes backwards, the
    # oldest gives up before the newest (a later POST starts past m0), and the last row is
    # sent until it gives up. (Several rows may give up between two POSTs on a loaded
    # machine.) Then come the status envelopes of the escalation giving up opened.
    order = {f"m{n}": n for n in range(4)}
    posts = [[order[t] for t in texts(r) if t in order] for r in endpoint.received]
    posts = [post for post in posts if post]
    assert all(post == list(range(post[0], post[0] + len(post))) for post in posts)
    firsts = [post[0] for post in posts]
    assert firsts == sorted(firsts) and firsts[-1] > 0 and posts[-1][-1] == 3


async def test_a_reply_in_a_batch_answer_is_held_to_256_kib(
    batching: Harness, endpoints: Any
) -> None:
    """A reply in a batch's answer is accepted as if POSTed to /v1/messages, so one over
    256 KiB (here ~600 KB, in the answer to a six-item batch) is refused as
    payload_too_large, noted on its item, and reaches no inbox."""
    gate = asyncio.Event()
    agent_box: dict[str, AgentClient] = {}
    blob = base64.b64encode(os.urandom(450_000)).decode()
    part = {"kind": "raw", "media_type": "application/octet-stream", "name": "b", "base64": blob}

    async def answer(endpoint: Endpoint, received: Received) -> web.StreamResponse:
        if len(endpoint.received) == 1:
            return await held_until(gate)
        item = received.json["items"][0]
        reply = agent_box["agent"].envelope(
            item["envelope"]["from"], "big", act="ask", task=item["task"]["id"], parts=[part]
        )
        return web.json_response({"replies": [{"id": item["id"], "envelope": reply}]})

    endpoint = await endpoints(answer)
    agent_box["agent"] = agent = await batch_agent(batching, endpoint, max_batch=8)
    alice = await batching.person("alice")
    task = (await alice.send(agent.address, "m0"))["task"]
    await endpoint.wait_for(1)
    for n in range(1, 7):
        await alice.send(agent.address, f"m{n}", task=task)
    gate.set()
    await endpoint.wait_for(2)
    assert len(endpoint.received[1].json["items"]) == 6
    found = await settled_deliveries(agent, task)
    assert found[1]["attempts"][0]["note"].startswith("reply refused: payload_too_large")
    assert all(d["status"] == "delivered" for d in found)
    assert (await alice.inbox())["items"] == []


async def test_an_endpoint_that_takes_batches_from_now_on_gets_them_at_once(
    delivering: Harness, endpoints: Any
) -> None:
    """PATCHed from one envelope per POST to max_batch 4 while its queue is busy (one row
    leased ahead): what was claimed before goes as it was, and from the next claim on each
    POST takes what is due when it leaves, not a batch made up while the previous was out."""
    gates = [asyncio.Event() for _ in range(20)]

    async def gated(endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        await gates[len(endpoint.received) - 1].wait()
        return web.Response(status=204)

    endpoint = await endpoints(gated)
    staff, _ = await delivering.brand("acme.example")
    agent = delivering.agent("support@acme.example")
    await staff.register_brand_agent(
        agent.address, agent.key, description="d", skills=["s"], endpoint=endpoint.url
    )
    alice = await delivering.person("alice")
    task = (await alice.send(agent.address, "m0"))["task"]
    await endpoint.wait_for(1)
    await alice.send(agent.address, "m1", task=task)
    await alice.send(agent.address, "m2", task=task)
    gates[0].set()
    await endpoint.wait_for(2)  # m1 is out, m2 leased ahead
    await asyncio.sleep(0.3)
    await staff.call(
        "PATCH",
        f"/v1/agents/{agent.address}",
        token=staff.token,
        body={"endpoint": {"url": endpoint.url, "max_batch": 4}},
    )
    for n in (3, 4):
        await alice.send(agent.address, f"m{n}", task=task)
    gates[1].set()
    await endpoint.wait_for(3)
    assert endpoint.received[2].json["envelope"]["body"]["text"] == "m2"  # claimed before
    await asyncio.sleep(0.3)
    for n in (5, 6):
        await alice.send(agent.address, f"m{n}", task=task)
    gates[2].set()
    await endpoint.wait_for(4)
    assert texts(endpoint.received[3]) == ["m3", "m4", "m5", "m6"]
    await asyncio.sleep(0.3)
    for n in (7, 8):
        await alice.send(agent.address, f"m{n}", task=task)
    gates[3].set()
    await endpoint.wait_for(5)
    for gate in gates:
        gate.set()
    assert texts(endpoint.received[4]) == ["m7", "m8"]


@pytest.mark.parametrize("max_batch", [1, 4])
async def test_a_reply_the_gateway_cannot_take_now_is_delivered_again(
    delivering: Harness, endpoints: Any, max_batch: int
) -> None:
    """A reply the gateway fails to accept for a reason of its own (here its task cannot be
    updated: a trigger in the real database ignores every task update, so acceptance gives
    up with `unavailable`) is not a refusal: the delivery is retried, the endpoint answers
    the same reply again, and once the database takes updates the reply reaches the person."""
    gate = asyncio.Event()
    agent_box: dict[str, AgentClient] = {}
    answered: dict[str, dict[str, Any]] = {}  # the endpoint's answers, by delivery id

    async def answer(_endpoint: Endpoint, received: Received) -> web.StreamResponse:
        await gate.wait()
        body = received.json
        incoming = body["items"][0] if body["type"] == "batch" else body
        delivery_id = incoming.get("id", received.webhook_id)
        if delivery_id not in answered:
            answered[delivery_id] = agent_box["agent"].envelope(
                incoming["envelope"]["from"], "Is it blinking?", task=incoming["task"]["id"]
            )
        reply = answered[delivery_id]
        if body["type"] == "batch":
            return web.json_response({"replies": [{"id": delivery_id, "envelope": reply}]})
        return web.json_response({"envelope": reply})

    endpoint = await endpoints(answer)
    agent_box["agent"] = agent = await batch_agent(delivering, endpoint, max_batch=max_batch)
    alice = await delivering.person("alice")
    task = (await alice.send(agent.address, "My light is orange."))["task"]
    await endpoint.wait_for(1)
    database = delivering.settings.data_dir / "switchboard.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TRIGGER stuck BEFORE UPDATE ON tasks BEGIN SELECT RAISE(IGNORE); END")
    gate.set()

    async def retried() -> bool:
        found = (await agent.task(task))["deliveries"]
        return bool(found) and any(a["outcome"] == "retry" for a in found[0]["attempts"])

    await wait_until(retried, what="the delivery retried")
    [delivery] = (await agent.task(task))["deliveries"]
    assert "could not be processed (Unavailable: task" in delivery["attempts"][0]["error"]
    with sqlite3.connect(database) as db:
        db.execute("DROP TRIGGER stuck")
    [item] = (await alice.inbox(wait=10))["items"]
    assert item["envelope"]["body"]["text"] == "Is it blinking?"
    [delivery] = await settled_deliveries(agent, task)
    assert delivery["status"] == "delivered"
    assert delivery["attempts"][-1]["note"].startswith("reply accepted")
    assert len(answered) == 1 and len(endpoint.received) >= 2


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("max_batch", [1, 4])
@pytest.mark.parametrize(
    ("garbled", "words"),
    [
        ("deep", "more than 128 levels deep"),
        ("huge integer", "5000 digits"),
        ("deep envelope", "more than 128 levels deep"),
    ],
)
async def test_an_answer_python_cannot_parse_is_a_delivery_with_its_reply_ignored(
    batching: Harness, endpoints: Any, max_batch: int, garbled: str, words: str
) -> None:
    """An endpoint's 200 whose reply nests deeper than the gateway reads (as deep as
    Python's parser cannot recurse, or signed and just deep) or holds an integer of more
    digits than Python converts is the endpoint's bad answer: the delivery counts, after one
    attempt, with a note saying why its reply was ignored, and no reply reaches an inbox.
    (The deepest failed the delivery worker's attempt over and over; the signed deep reply
    was accepted, to be parsed again by every reader of the inbox.)"""
    agent_box: dict[str, AgentClient] = {}

    async def answer(_endpoint: Endpoint, received: Received) -> web.StreamResponse:
        body = received.json
        incoming = body["items"][0] if body["type"] == "batch" else body
        if garbled == "deep":
            reply = "[" * 5000 + "]" * 5000
        elif garbled == "huge integer":
            reply = '{"meta": {"n": ' + "9" * 5000 + "}}"
        else:
            envelope = agent_box["agent"].envelope(
                incoming["envelope"]["from"],
                "Is it blinking?",
                task=incoming["task"]["id"],
                meta={"deep": _nested(200)},
            )
            reply = json.dumps(envelope)
        if body["type"] == "batch":
            text = '{"replies": [{"id": "' + incoming["id"] + '", "envelope": ' + reply + "}]}"
        else:
            text = '{"envelope": ' + reply + "}"
        return web.Response(status=200, text=text, content_type="application/json")

    endpoint = await endpoints(answer)
    agent_box["agent"] = agent = await batch_agent(batching, endpoint, max_batch=max_batch)
    alice = await batching.person("alice")
    task = (await alice.send(agent.address, "My light is orange."))["task"]
    [delivery] = await settled_deliveries(agent, task)
    assert delivery["status"] == "delivered"
    [attempt] = delivery["attempts"]
    assert "ignored: the answer" in attempt["note"], attempt
    assert words in attempt["note"], attempt
    assert len(endpoint.received) == 1
    assert (await alice.inbox())["items"] == []
