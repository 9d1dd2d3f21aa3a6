"""A brand with one agent, a person, two operators, on a gateway whose clock tests move.

The timer loop is off (`timer_interval_s=0`): tests fire timers with `run_due` themselves.
`scene` runs on a clock the tests move; `live_scene` on the system clock with test-sized
delivery backoff, so the gateway's own outbox worker retries in real time (notifications,
deliveries), on both backends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Overrides
from gateway.client import AgentClient, StaffClient
from gateway.clock import ManualClock
from gateway.config import DeliverySettings
from tests.conftest import Harness, make_settings, provision_distributed, start_gateway
from tests.delivery.webhook_endpoints import fast_delivery

BRAND = "acme.example"


@dataclass
class Scene:
    """Everything an escalation test talks to."""

    gw: Harness
    clock: ManualClock
    admin: StaffClient  # the brand admin
    agent: AgentClient  # support@acme.example
    alice: AgentClient  # a person's agent
    jane: StaffClient  # operator
    bob: StaffClient  # operator
    jane_address: str
    bob_address: str

    async def open_task(self, text: str = "My speaker's light is flashing orange.") -> str:
        answer = await self.alice.send(BRAND, text, now=self.clock.now())
        return str(answer["task"])

    async def say(self, task: str, text: str) -> dict[str, Any]:
        return await self.alice.send(BRAND, text, task=task, now=self.clock.now())

    async def agent_act(self, task: str, act: str, text: str = "") -> dict[str, Any]:
        return await self.agent.send(
            self.alice.address, text, act=act, task=task, now=self.clock.now()
        )

    async def escalations(self, **params: Any) -> list[dict[str, Any]]:
        return list((await self.jane.get("/v1/escalations", **params))["items"])

    async def policy(self, escalation: dict[str, Any]) -> None:
        await self.admin.set_policy(BRAND, {"escalation": escalation})


async def build_scene(gw: Harness, clock: ManualClock) -> Scene:
    admin, agents = await gw.brand(BRAND, [("support", "Speaker support", ["status lights"])])
    alice = await gw.person("alice")
    jane = await admin.post(f"/v1/brands/{BRAND}/operators", {"handle": "jane"})
    bob = await admin.post(f"/v1/brands/{BRAND}/operators", {"handle": "bob"})
    return Scene(
        gw=gw,
        clock=clock,
        admin=admin,
        agent=agents["support"],
        alice=alice,
        jane=gw.staff(jane["token"]),
        bob=gw.staff(bob["token"]),
        jane_address=jane["address"],
        bob_address=bob["address"],
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def settings_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
async def scene(settings_dir: Path, clock: ManualClock) -> AsyncIterator[Scene]:
    """A running gateway with the brand, the person and two operators."""
    settings = make_settings(
        settings_dir,
        timer_interval_s=0.0,
        # Channel receivers in these tests listen on 127.0.0.1.
        delivery=DeliverySettings(allow_private=(ipaddress.ip_network("127.0.0.0/8"),)),
    )
    overrides = Overrides(clock=clock, announce=lambda _text: None)
    async with start_gateway(settings, overrides) as gw:
        yield await build_scene(gw, clock)


@asynccontextmanager
async def live_gateway(backend: str, settings_dir: Path, **delivery: Any) -> AsyncIterator[Scene]:
    """A scene on a gateway whose worker runs in real time (test-sized backoff, loopback
    allowed, `delivery` changes applied), on either backend.

    The gateway keeps the system clock; the scene's clock only stamps the test's envelopes.
    """
    changes: dict[str, Any] = {"timer_interval_s": 0.0, "delivery": fast_delivery(**delivery)}
    overrides = Overrides(announce=lambda _text: None)
    stamps = ManualClock(datetime.now(UTC))
    if backend == "embedded":
        async with start_gateway(make_settings(settings_dir, **changes), overrides) as gw:
            yield await build_scene(gw, stamps)
        return
    async with provision_distributed() as services:
        settings = make_settings(settings_dir, **changes, **services.settings_changes())
        async with start_gateway(settings, overrides) as gw:
            yield await build_scene(gw, stamps)


@pytest.fixture
async def live_scene(backend: str, settings_dir: Path) -> AsyncIterator[Scene]:
    """The scene on a gateway whose outbox worker retries in real time, on both backends."""
    async with live_gateway(backend, settings_dir) as scene:
        yield scene
