"""What delivery trouble causes on the escalation side, through the real gateway and worker:
a spent retry budget escalates the brand agent's task (`agent_unreachable`), and a 410 tells
the brand's admins through their channels (`endpoint.disabled`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from identity.keys import PublicKey
from identity.webhook import verify_webhook
from tests.delivery.webhook_endpoints import (
    Endpoint,
    Received,
    Responder,
    accept_all,
    wait_until,
)
from tests.escalation.conftest import BRAND, Scene, live_gateway


@pytest.fixture
async def endpoints() -> AsyncIterator[Callable[..., Awaitable[Endpoint]]]:
    """Real endpoints on 127.0.0.1, started on demand and stopped with the test."""
    made: list[Endpoint] = []

    async def make(respond: Responder = accept_all, *, start: bool = True) -> Endpoint:
        endpoint = Endpoint(respond=respond)
        made.append(endpoint)
        return await endpoint.start() if start else endpoint

    yield make
    for endpoint in made:
        await endpoint.stop()


@pytest.fixture
async def short_budget(backend: str, settings_dir: Path) -> AsyncIterator[Scene]:
    """The scene with a retry budget of half a second."""
    async with live_gateway(backend, settings_dir, retry_budget_s=0.5) as scene:
        yield scene


async def _point_agent_at(scene: Scene, url: str) -> None:
    await scene.admin.call(
        "PATCH",
        f"/v1/agents/{scene.agent.address}",
        token=scene.admin.token,
        body={"endpoint": {"url": url}},
    )


async def _settled(scene: Scene, task: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def done() -> bool:
        nonlocal found
        found = list((await scene.alice.task(task))["deliveries"])
        return len(found) >= count and all(d["status"] != "pending" for d in found)

    await wait_until(done, what=f"{count} deliveries settle")
    return found


async def test_spent_retry_budget_opens_one_agent_unreachable_escalation(
    short_budget: Scene, endpoints: Callable[..., Awaitable[Endpoint]]
):
    """The brand agent's endpoint is down: after the budget the task records
    agent_unreachable and opens exactly one escalation with that reason (the status envelope
    to the same dead endpoint gives up too, and opens nothing more); both parties get the
    status envelope in their inboxes."""
    scene = short_budget
    down = await endpoints(start=False)  # nothing listens: connection refused
    await _point_agent_at(scene, down.url)
    task = await scene.open_task()

    async def escalated() -> bool:
        return bool(await scene.escalations())

    await wait_until(escalated, what="the escalation opens")
    # The message, then the status envelope to the agent: both give up at the dead endpoint.
    deliveries = await _settled(scene, task, 2)
    assert [d["status"] for d in deliveries] == ["failed", "failed"]
    (escalation,) = await scene.escalations()
    assert escalation["reason"] == "agent_unreachable" and escalation["priority"] == "urgent"
    assert escalation["task"] == task
    view = await scene.alice.task(task)
    assert view["control"] == "human"
    unreachable = [e for e in view["events"] if e["kind"] == "agent_unreachable"]
    assert len(unreachable) == 2 and unreachable[0]["delivery"] == deliveries[0]["id"]
    for party in (scene.alice, scene.agent):
        items = (await party.inbox(after=0))["items"]
        statuses = [i["envelope"] for i in items if i["envelope"]["act"] == "status"]
        assert len(statuses) == 1, party.address
        (data,) = [p["data"] for p in statuses[0]["body"]["parts"] if p["kind"] == "data"]
        assert data["escalation"] == escalation["id"] and data["control"] == "human"


async def test_a_410_disables_the_endpoint_and_tells_the_brand_admins(
    live_scene: Scene, endpoints: Callable[..., Awaitable[Endpoint]]
):
    """A 410 from the brand agent's endpoint switches it off, records an endpoint.disabled
    event in the brand's stream, and sends it, signed, to the channels that want it (the
    default set includes it) and to no other."""
    scene = live_scene

    async def gone(_endpoint: Endpoint, _received: Received) -> web.StreamResponse:
        return web.Response(status=410)

    agent_endpoint = await endpoints(gone)
    admins, escalations_only = await endpoints(), await endpoints()
    path = f"/v1/brands/{BRAND}/channels"
    channel = await scene.admin.post(path, {"kind": "webhook", "url": admins.url})
    assert "endpoint.disabled" in channel["events"]
    await scene.admin.post(
        path, {"kind": "webhook", "url": escalations_only.url, "events": ["escalation.opened"]}
    )
    await _point_agent_at(scene, agent_endpoint.url)
    await scene.open_task()
    (received,) = await admins.wait_for(1)
    event = received.json
    assert event["type"] == "endpoint.disabled" and event["brand"] == BRAND
    assert event["agent"]["address"] == scene.agent.address
    assert event["agent"]["endpoint"] == agent_endpoint.url
    assert "410 Gone" in event["agent"]["note"]
    assert event["link"].endswith(f"/v1/agents/{scene.agent.address}")
    assert received.webhook_id == event["id"]
    key = PublicKey.from_jwk(scene.gw.services.gateway_key.public.jwk)
    assert verify_webhook(
        [key],
        received.webhook_id,
        int(received.headers["webhook-timestamp"]),
        received.body,
        received.headers["webhook-signature"],
    )
    card = await scene.admin.get(f"/v1/agents/{scene.agent.address}")
    assert card["endpoint"]["status"] == "disabled"
    recorded = await scene.gw.services.desk.escalations.events(BRAND, 0)
    assert [(e.kind, e.id) for e in recorded] == [("endpoint.disabled", event["id"])]
    assert len(agent_endpoint.received) == 1 and escalations_only.received == []


async def test_channels_may_subscribe_to_endpoint_disabled_alone(live_scene: Scene):
    """endpoint.disabled is a channel event like the escalation events; unknown kinds are not."""
    made = await live_scene.admin.post(
        f"/v1/brands/{BRAND}/channels",
        {"kind": "slack", "url": "http://127.0.0.1:9/T1", "events": ["endpoint.disabled"]},
    )
    assert made["events"] == ["endpoint.disabled"]
