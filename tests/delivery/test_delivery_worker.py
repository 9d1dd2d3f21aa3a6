"""Delivery end to end on a real gateway and real endpoints: order, retries, 410, redirects,
synchronous replies, signatures, the retry budget, and attempts on the task."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.client import AgentClient
from gateway.store.database import create_engine
from identity.envelope import KeyState, parse, verify
from identity.keys import PublicKey
from tests.conftest import Harness, make_settings, start_gateway
from tests.delivery.webhook_endpoints import (
    Endpoint,
    Received,
    fast_delivery,
    published_keys,
    wait_until,
)


async def brand_agents(gateway: Harness, **endpoints: Endpoint) -> dict[str, AgentClient]:
    """Create the brand acme.example with one agent per endpoint (keyed by local part)."""
    staff, _ = await gateway.brand("acme.example")
    clients = {}
    for local, endpoint in endpoints.items():
        client = gateway.agent(f"{local}@acme.example")
        await staff.register_brand_agent(
            client.address,
            client.key,
            description="Support for speakers",
            skills=["troubleshooting"],
            endpoint=endpoint.url,
        )
        clients[local] = client
    return clients


async def brand_agent(gateway: Harness, endpoint: Endpoint) -> AgentClient:
    """The brand acme.example with one agent, support@, delivering to `endpoint`."""
    return (await brand_agents(gateway, support=endpoint))["support"]


async def deliveries(gateway: Harness, client: AgentClient, task: str) -> list[dict[str, Any]]:
    return list((await client.task(task))["deliveries"])


async def settled(gateway: Harness, client: AgentClient, task: str, count: int = 1) -> None:
    async def done() -> bool:
        found = await deliveries(gateway, client, task)
        return len(found) >= count and all(d["status"] != "pending" for d in found)

    await wait_until(done, what="deliveries settle")


async def test_in_order_per_endpoint_and_a_slow_endpoint_delays_no_other(
    tmp_path: Path, endpoints: Any
) -> None:
    """Each endpoint gets its envelopes one at a time in acceptance order, while a slow
    endpoint's queue does not hold up a fast one."""
    settings = make_settings(tmp_path / "var", delivery=fast_delivery(timeout_s=60.0))
    async with start_gateway(settings) as gateway:
        await _in_order(gateway, endpoints)


async def _in_order(delivering: Harness, endpoints: Any) -> None:

    gate = asyncio.Event()

    async def slow(_endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        await gate.wait()  # held until the fast endpoint has everything
        await asyncio.sleep(0.002)
        return web.Response(status=200)

    slow_end = await endpoints(slow)
    fast_end = await endpoints()
    agents = await brand_agents(delivering, slow=slow_end, fast=fast_end)
    slow_agent, fast_agent = agents["slow"], agents["fast"]
    people = [await delivering.person(f"p{n}") for n in range(6)]

    async def converse(person: AgentClient, agent: AgentClient) -> None:
        opened = await person.send(agent.address, f"{person.address} 0")
        for turn in range(1, 4):
            await person.send(agent.address, f"{person.address} {turn}", task=opened["task"])

    await asyncio.gather(
        *(converse(p, slow_agent) for p in people), *(converse(p, fast_agent) for p in people)
    )
    await fast_end.wait_for(24)
    assert len(slow_end.received) == 1  # stuck on its first delivery, one in flight
    gate.set()
    await slow_end.wait_for(24)

    conversations = delivering.services.conversations
    for endpoint in (slow_end, fast_end):
        pks = []
        for received in endpoint.received:
            envelope = received.json["envelope"]
            stored = await conversations.by_replay_key(envelope["from"], envelope["id"])
            pks.append(stored.pk)
        assert pks == sorted(pks), "deliveries left out of acceptance order"
        assert len(set(pks)) == 24
        assert endpoint.max_in_flight == 1
        assert len({r.webhook_id for r in endpoint.received}) == 24


async def test_retries_500_503_timeout_then_success_with_one_webhook_id(
    delivering: Harness, endpoints: Any
) -> None:
    """500, then 503 with Retry-After, then a timeout, then 200: four attempts recorded on the
    task, the same webhook-id each time, and the Retry-After wait honoured."""
    script = [
        web.Response(status=500),
        web.Response(status=503, headers={"Retry-After": "1"}),
        None,  # hang past the timeout
        web.Response(status=200),
    ]

    async def scripted(endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        answer = script[len(endpoint.received) - 1]
        if answer is None:
            await asyncio.sleep(3.0)  # past the 2 s delivery timeout
            return web.Response(status=200)
        return answer

    endpoint = await endpoints(scripted)
    agent = await brand_agent(delivering, endpoint)
    alice = await delivering.person("alice")
    task = (await alice.send(agent.address, "Hello"))["task"]
    received = await endpoint.wait_for(4, within=15)
    await settled(delivering, agent, task)

    assert len({r.webhook_id for r in received}) == 1
    assert received[2].at - received[1].at >= 1.0  # Retry-After: 1 was honoured
    [delivery] = await deliveries(delivering, agent, task)
    assert delivery["status"] == "delivered"
    assert delivery["recipient"] == agent.address
    assert delivery["id"] == received[0].webhook_id
    attempts = delivery["attempts"]
    assert [(a["outcome"], a["status"]) for a in attempts] == [
        ("retry", 500),
        ("retry", 503),
        ("retry", None),
        ("ok", 200),
    ]
    assert "endpoint_timeout" in attempts[2]["error"]
    [seen_by_sender] = await deliveries(delivering, alice, task)
    assert [a["outcome"] for a in seen_by_sender["attempts"]] == ["retry"] * 3 + ["ok"]
    assert {a["error"] for a in seen_by_sender["attempts"]} == {None}  # the brand's business


async def test_refused_connections_retry_until_the_endpoint_comes_up(
    delivering: Harness, endpoints: Any
) -> None:
    """With nothing listening, attempts fail as unreachable and retry; once the endpoint
    starts, the envelope arrives."""
    endpoint = await endpoints(start=False)
    agent = await brand_agent(delivering, endpoint)
    alice = await delivering.person("alice")
    task = (await alice.send(agent.address, "Anyone there?"))["task"]

    async def failed_twice() -> bool:
        found = await deliveries(delivering, agent, task)
        return bool(found) and len(found[0]["attempts"]) >= 2

    await wait_until(failed_twice, what="two failed attempts")
    await endpoint.start()
    await endpoint.wait_for(1)
    await settled(delivering, agent, task)
    [delivery] = await deliveries(delivering, agent, task)
    assert delivery["status"] == "delivered"
    assert all("endpoint_unreachable" in a["error"] for a in delivery["attempts"][:-1])


async def test_410_disables_the_endpoint_and_says_why(delivering: Harness, endpoints: Any) -> None:
    """A 410 fails the delivery for good, disables the endpoint with a reason on the card,
    and later envelopes are not posted there."""

    async def gone(_endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        return web.Response(status=410)

    endpoint = await endpoints(gone)
    agent = await brand_agent(delivering, endpoint)
    alice = await delivering.person("alice")
    task = (await alice.send(agent.address, "Hello"))["task"]
    await settled(delivering, agent, task)
    [delivery] = await deliveries(delivering, agent, task)
    assert delivery["status"] == "failed"
    assert [a["outcome"] for a in delivery["attempts"]] == ["disable"]
    record = await delivering.services.directory.agent(agent.address)
    assert record.endpoint_status == "disabled"
    assert "410" in record.endpoint_note and delivery["id"] in record.endpoint_note

    await alice.send(agent.address, "Still there?", task=task)
    await asyncio.sleep(0.3)
    assert len(endpoint.received) == 1


async def test_redirects_are_never_followed(delivering: Harness, endpoints: Any) -> None:
    """A 307 to another server fails the delivery; the other server sees nothing."""
    elsewhere = await endpoints()

    async def redirect(_endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": elsewhere.url})

    endpoint = await endpoints(redirect)
    agent = await brand_agent(delivering, endpoint)
    alice = await delivering.person("alice")
    task = (await alice.send(agent.address, "Hello"))["task"]
    await settled(delivering, agent, task)
    [delivery] = await deliveries(delivering, agent, task)
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["status"] == 307
    assert "redirect" in delivery["last_error"]
    assert elsewhere.received == []
    assert len(endpoint.received) == 1


async def test_other_4xx_is_final_after_one_attempt(delivering: Harness, endpoints: Any) -> None:
    """A 400 is not retried."""

    async def bad(_endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        return web.Response(status=400)

    endpoint = await endpoints(bad)
    agent = await brand_agent(delivering, endpoint)
    alice = await delivering.person("alice")
    task = (await alice.send(agent.address, "Hello"))["task"]
    await settled(delivering, agent, task)
    await asyncio.sleep(0.2)
    [delivery] = await deliveries(delivering, agent, task)
    assert (delivery["status"], len(delivery["attempts"])) == ("failed", 1)
    assert len(endpoint.received) == 1


async def test_synchronous_reply_reaches_the_initiators_inbox(
    delivering: Harness, endpoints: Any
) -> None:
    """An endpoint answering 200 {"envelope": …} replies in the same round trip: the reply is
    accepted like a POST and lands in the initiator's inbox; a forged reply is refused and
    noted, while the delivery still counts."""
    agent_box: dict[str, AgentClient] = {}

    async def answer(_endpoint: Endpoint, received: Received) -> web.StreamResponse:
        incoming = received.json
        agent = agent_box["agent"]
        reply = agent.envelope(
            incoming["envelope"]["from"],
            "Is the light blinking fast or slow?",
            act="ask",
            task=incoming["task"]["id"],
            reply_to=incoming["envelope"]["id"],
        )
        if "forge" in incoming["envelope"]["body"]["text"]:
            reply["body"] = {"text": "changed after signing", "parts": []}
        return web.json_response({"envelope": reply})

    endpoint = await endpoints(answer)
    agent_box["agent"] = await brand_agent(delivering, endpoint)
    alice = await delivering.person("alice")
    sent = await alice.send(agent_box["agent"].address, "My light is flashing orange.")
    inbox = await alice.inbox(wait=5)
    [item] = inbox["items"]
    assert item["envelope"]["body"]["text"] == "Is the light blinking fast or slow?"
    assert item["envelope"]["reply_to"] == sent["id"]
    assert item["task"]["state"] == "input-required"

    await alice.send(agent_box["agent"].address, "forge this one", task=sent["task"])
    await settled(delivering, agent_box["agent"], sent["task"], count=2)
    found = await deliveries(delivering, agent_box["agent"], sent["task"])
    assert [d["status"] for d in found] == ["delivered", "delivered"]
    assert found[0]["attempts"][0]["note"].startswith("reply accepted")
    assert found[1]["attempts"][0]["note"].startswith("reply refused: signature_invalid")
    assert len((await alice.inbox(after=item["seq"]))["items"]) == 0


async def test_receiver_verifies_with_only_the_well_known_jwks(
    delivering: Harness, endpoints: Any
) -> None:
    """A receiver that knows only /.well-known/switchboard verifies the webhook signature,
    and the sender's signature with the sender's public card; the body is as specified."""
    endpoint = await endpoints()
    agent = await brand_agent(delivering, endpoint)
    alice = await delivering.person("alice")
    sent = await alice.send(agent.address, "Check my signature", meta={"n": 1.5, "ü": [True]})
    [received] = await endpoint.wait_for(1)

    keys = await published_keys(delivering.session, delivering.url)
    headers = received.headers
    assert headers["content-type"].startswith("application/json")
    assert headers["webhook-signature"].startswith("v1a,")
    assert received.signed_by(keys)
    assert not received.signed_by(keys, received.body + b" ")
    body = json.loads(received.body)
    assert set(body) == {"type", "envelope", "task"}
    assert body["type"] == "envelope"
    assert body["task"] == {"id": sent["task"], "state": "submitted", "control": "agent"}
    async with delivering.session.get(
        f"{delivering.url}/v1/agents/{body['envelope']['from']}"
    ) as response:
        card = await response.json()
    sender_keys = {k["kid"]: KeyState(PublicKey.from_jwk(k["jwk"])) for k in card["keys"]}
    verify(parse(body["envelope"]), sender_keys, datetime.now(UTC))
    assert headers["webhook-id"].startswith("dlv")


async def test_retry_budget_spent_records_agent_unreachable(tmp_path: Path, endpoints: Any) -> None:
    """When the budget runs out the delivery fails and the brand agent's task records
    agent_unreachable with the reason."""

    async def down(_endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        return web.Response(status=503)

    endpoint = await endpoints(down)
    settings = make_settings(tmp_path / "var", delivery=fast_delivery(retry_budget_s=0.4))
    async with start_gateway(settings) as gateway:
        agent = await brand_agent(gateway, endpoint)
        alice = await gateway.person("alice")
        task = (await alice.send(agent.address, "Hello?"))["task"]
        await settled(gateway, agent, task)
        view = await agent.task(task)
        delivery = view["deliveries"][0]  # then the status envelopes of the escalation
        assert delivery["status"] == "failed"
        assert delivery["last_error"].startswith("gave up after")
        assert len(delivery["attempts"]) >= 2
        event = next(e for e in view["events"] if e["kind"] == "agent_unreachable")
        assert event["agent"] == agent.address and event["delivery"] == delivery["id"]


async def test_pending_deliveries_show_in_metrics(delivering: Harness, endpoints: Any) -> None:
    """GET /metrics reports the outbox rows still pending while an endpoint is down."""
    endpoint = await endpoints(start=False)
    agent = await brand_agent(delivering, endpoint)
    alice = await delivering.person("alice")
    await alice.send(agent.address, "one")
    await alice.send(agent.address, "two")
    async with delivering.session.get(delivering.url + "/metrics") as response:
        text = await response.text()
    assert "switchboard_outbox_pending 2" in text


async def test_a_record_that_fails_redelivers_its_row_before_the_next_one_is_sent(
    delivering: Harness, endpoints: Any
) -> None:
    """A row whose attempt succeeded but could not be written down (here a trigger fails the
    INSERT of its attempt once, as a busy or full disk would) is delivered again before the
    row after it is sent: the endpoint sees its webhook-ids in acceptance order, with the
    repeat right after the first try, never the next row in between."""
    gate = asyncio.Event()
    dropped = asyncio.Event()
    engine = create_engine(delivering.settings.sqlalchemy_url)

    async def drop_trigger() -> None:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DROP TRIGGER IF EXISTS fail_second_attempt")
        dropped.set()

    async def respond(endpoint: Endpoint, received: Received) -> web.StreamResponse:
        if len(endpoint.received) == 1:
            await gate.wait()  # the first delivery is held until all rows are queued
        elif [r.webhook_id for r in endpoint.received].count(received.webhook_id) == 2:
            await drop_trigger()  # a repeat: the record of the second row has failed
        return web.Response(status=204)

    endpoint = await endpoints(respond)
    agent = await brand_agent(delivering, endpoint)
    person = await delivering.person("p")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "CREATE TRIGGER fail_second_attempt BEFORE INSERT ON outbox_attempts"
                " WHEN NEW.outbox_pk = (SELECT pk FROM outbox WHERE kind = 'delivery'"
                f" AND partition = '{agent.address}' ORDER BY pk LIMIT 1 OFFSET 1)"
                " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        opened = await person.send(agent.address, "first")
        for text in ("second", "third"):
            await person.send(agent.address, text, task=opened["task"])
        await endpoint.wait_for(1)
        gate.set()
        await settled(delivering, agent, opened["task"], count=3)
        assert dropped.is_set()
    finally:
        await drop_trigger()
        await engine.dispose()

    ids = [received.webhook_id for received in endpoint.received]
    rows = [d["id"] for d in await deliveries(delivering, agent, opened["task"])]
    assert ids[:4] == [rows[0], rows[1], rows[1], rows[2]]
    assert ids[4:] == []
