"""The reference brand agent against a real gateway: a whole conversation over HTTP both ways,
synchronously and asynchronously; it refuses forged webhooks and envelopes and answers a
repeated webhook-id with the answer it gave."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.cli.example_agent import register
from gateway.client import AgentClient
from gateway.examples.brand_agent import BrandAgent, answer
from identity.keys import PrivateKey
from identity.webhook import sign_webhook
from tests.conftest import Harness


@pytest.fixture
async def running_agent(delivering: Harness, request: Any) -> AsyncIterator[tuple[BrandAgent, str]]:
    """The example agent as support@acme.example, registered with its real URL (its endpoint
    taking batches of up to 8 with the parameter "batch", which answers synchronously)."""
    param = getattr(request, "param", "sync")
    mode, max_batch = ("sync", 8) if param == "batch" else (param, 1)
    key = PrivateKey.generate()
    agent = BrandAgent(
        gateway_url=delivering.url, address="support@acme.example", key=key, mode=mode
    )
    server = TestServer(agent.app(), host="127.0.0.1")
    await server.start_server()
    staff, _ = await delivering.brand("acme.example")
    await staff.register_brand_agent(
        agent.address,
        key,
        description="Speaker support",
        skills=["status lights"],
        endpoint=str(server.make_url("/webhook")),
        max_batch=max_batch,
    )
    yield agent, str(server.make_url("/webhook"))
    await server.close()


async def next_items(person: AgentClient, after: int) -> list[dict[str, Any]]:
    return list((await person.inbox(after=after, wait=5))["items"])


@pytest.mark.parametrize("running_agent", ["sync", "async", "batch"], indirect=True)
async def test_a_whole_conversation_with_the_example_agent(
    delivering: Harness, running_agent: tuple[BrandAgent, str]
) -> None:
    """Ask, answer, answer, resolve: each reply of the agent reaches the person's inbox, by
    the webhook's answer (sync, and batch: replies in a batch's answer) or by POST
    /v1/messages (async)."""
    alice = await delivering.person("alice")
    opened = await alice.send("acme.example", "My speaker's light is flashing orange.")
    [first] = await next_items(alice, 0)
    assert first["envelope"]["from"] == "support@acme.example"
    assert first["envelope"]["body"]["text"] == "Is the light blinking fast or slow?"
    assert first["envelope"]["reply_to"] == opened["id"]

    await alice.send("acme.example", "Fast.", task=opened["task"])
    [second] = await next_items(alice, first["seq"])
    assert "lost its Wi-Fi" in second["envelope"]["body"]["text"]

    await alice.send("acme.example", "Thanks, that worked!", task=opened["task"])
    [third] = await next_items(alice, second["seq"])
    assert third["envelope"]["act"] == "resolve"
    assert third["task"]["state"] == "completed"
    view = await alice.task(opened["task"])
    assert [d["status"] for d in view["deliveries"]] == ["delivered"] * 3


async def test_the_agent_checks_signatures_and_deduplicates(
    delivering: Harness, running_agent: tuple[BrandAgent, str]
) -> None:
    """A forged webhook signature is 401, a tampered envelope is 400, and a repeated
    webhook-id gets the very same answer without a second reply being made."""
    alice = await delivering.person("alice")
    envelope = alice.envelope("support@acme.example", "hello there")
    body = json.dumps(
        {
            "type": "envelope",
            "envelope": envelope,
            "task": {"id": "tsk_x", "state": "submitted", "control": "agent"},
        }
    ).encode()
    gateway_key = delivering.services.gateway_key
    url = running_agent[1]

    async def post(data: bytes, webhook_id: str, key: PrivateKey) -> tuple[int, bytes]:
        stamp = int(time.time())
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_webhook(key, webhook_id, stamp, data),
            "content-type": "application/json",
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=data, headers=headers) as response,
        ):
            return response.status, await response.read()

    status, first = await post(body, "dlv_once", gateway_key)
    assert status == 200
    reply = json.loads(first)["envelope"]
    assert reply["body"]["text"] == "Hello! How can I help you today?"
    assert await post(body, "dlv_once", gateway_key) == (200, first)

    assert (await post(body, "dlv_forged", PrivateKey.generate()))[0] == 401
    tampered = json.loads(body)
    tampered["envelope"]["body"]["text"] = "changed"
    status, _ = await post(json.dumps(tampered).encode(), "dlv_tampered", gateway_key)
    assert status == 400

    # A batch: each item deduplicated by its own id, even inside another batch; a tampered
    # item is refused alone.
    item = {"id": "dlv_once", "envelope": envelope, "task": json.loads(body)["task"]}
    other = alice.envelope("support@acme.example", "I want a refund")
    fresh = {"id": "dlv_fresh", "envelope": other, "task": item["task"]}
    bad = {"id": "dlv_bad", "envelope": tampered["envelope"], "task": item["task"]}
    batch = json.dumps({"type": "batch", "items": [item, fresh, bad]}).encode()
    status, answered = await post(batch, "batch_3_dlv_once", gateway_key)
    assert status == 200
    replies = json.loads(answered)["replies"]
    assert [one["id"] for one in replies] == ["dlv_once", "dlv_fresh", "dlv_bad"]
    assert replies[0]["envelope"] == reply  # the answer given to dlv_once before
    assert replies[1]["envelope"]["body"]["text"].startswith("You can return it")
    assert replies[2]["refused"].startswith("envelope refused")
    no_id = json.dumps({"type": "batch", "items": [{"envelope": other}]}).encode()
    assert (await post(no_id, "batch_no_id", gateway_key))[0] == 400


@pytest.mark.parametrize(
    ("text", "act", "start"),
    [
        ("My speaker's light is flashing orange", "ask", "Is the light blinking"),
        ("It's blinking fast", "ask", "A fast blink"),
        ("slow", "ask", "A slow blink"),
        ("I want a refund", "ask", "You can return it"),
        ("Where is my order?", "ask", "Could you tell me your order number"),
        ("It's 123456", "say", "Thanks. That order"),
        ("Thanks, that fixed it", "resolve", "Glad that sorted it"),
        ("Hi", "ask", "Hello!"),
        ("Something odd happened", "ask", "Thanks for your message"),
    ],
)
def test_answer_rules(text: str, act: str, start: str) -> None:
    """The example's rules give the expected act and reply for typical messages."""
    got_act, got_text = answer(text)
    assert got_act == act and got_text.startswith(start)


def test_cli_command_parses() -> None:
    """`switchboard example-agent` takes port, gateway, key, address and mode."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "example-agent",
            "--port",
            "9000",
            "--gateway",
            "http://127.0.0.1:8420",
            "--key",
            "support.jwk",
            "--address",
            "support@acme.example",
            "--mode",
            "async",
        ]
    )
    assert (args.port, args.mode, args.address) == (9000, "async", "support@acme.example")
    assert callable(args.run)
