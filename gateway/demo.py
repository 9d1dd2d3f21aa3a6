"""`switchboard demo`: a whole conversation through a real gateway, told step by step.

One process, a temporary data folder, a gateway on a free local port, a brand with three
agents, a personal agent, and a scripted conversation: routing from the brand's domain, an
`ask`, the answer, a `resolve`, the person's `confirm`. Every step goes over real HTTP with
signed envelopes, exactly as agents on other machines would talk to the gateway.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.app import Overrides, build_app
from gateway.client import AgentClient, StaffClient
from gateway.config import Settings
from identity.keys import PrivateKey
from identity.tokens import new_opaque_token

BRAND = "acme-audio.example"
AGENTS = (
    (
        "support",
        "Technical support for Acme speakers and soundbars.",
        (
            "troubleshooting",
            "device setup",
            "wifi and bluetooth connectivity",
            "status lights",
            "firmware updates",
        ),
    ),
    (
        "orders",
        "Orders, delivery, returns and refunds.",
        ("order status", "shipping and delivery", "returns", "refunds", "invoices and billing"),
    ),
    (
        "accounts",
        "Customer accounts, sign-in, subscriptions and privacy.",
        ("sign-in and passwords", "account settings", "subscriptions", "privacy and data deletion"),
    ),
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Narrator:
    """Prints the story: who said what, and what it did to the task."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._step = 0

    def step(self, text: str) -> None:
        self._step += 1
        self._say(f"\n{self._step}. {text}")

    def line(self, text: str) -> None:
        self._say(f"   {text}")

    def envelope(self, envelope: dict[str, Any], task: dict[str, Any] | None) -> None:
        state = f"  [task {task['state']}, {task['control']}]" if task else ""
        text = envelope["body"]["text"]
        self._say(f"   {envelope['from']} -> {envelope['to']} ({envelope['act']}): {text}{state}")


async def _next_item(agent: AgentClient, after: int) -> dict[str, Any]:
    page = await agent.inbox(after=after, wait=10)
    if not page["items"]:
        raise RuntimeError(f"{agent.address} received nothing within 10 s")
    return page["items"][0]  # type: ignore[no-any-return]


async def run_demo(say: Callable[[str], None] = print, data_dir: Path | None = None) -> None:
    """Play the demo conversation against a gateway started here; raise if any step fails."""
    with tempfile.TemporaryDirectory(prefix="switchboard-demo-") as scratch:
        admin_token = new_opaque_token()
        settings = Settings(
            domain="gateway.demo.example",
            personal_domain="people.example",
            data_dir=data_dir or Path(scratch) / "var",
            admin_token=admin_token,
            port=_free_port(),
        )
        runner = web.AppRunner(build_app(settings, Overrides(announce=lambda _t: None)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", settings.port)
        await site.start()
        base = f"http://127.0.0.1:{settings.port}"
        story = Narrator(say)
        admin = StaffClient(base, admin_token)
        clients: list[Any] = [admin]
        try:
            story.step(f"A gateway is up at {base} (SQLite in a temporary folder).")
            brand = await admin.create_brand(BRAND, "Acme Audio")
            staff = StaffClient(base, brand["token"])
            clients.append(staff)
            agents: dict[str, AgentClient] = {}
            for local, description, skills in AGENTS:
                agent = AgentClient(
                    base, f"{local}@{BRAND}", PrivateKey.generate(), audience=settings.domain
                )
                await staff.register_brand_agent(
                    agent.address, agent.key, description=description, skills=skills
                )
                agents[local] = agent
                clients.append(agent)
            story.line(f"Brand {BRAND} registered its agents: {', '.join(agents)}.")
            alice = AgentClient(
                base,
                f"alice@{settings.personal_domain}",
                PrivateKey.generate(),
                audience=settings.domain,
            )
            clients.append(alice)
            await alice.register_personal(display_name="Alice's assistant")
            story.line(f"Personal agent {alice.address} registered, proving it holds its key.")

            story.step(f"Alice's agent writes to the brand's domain, {BRAND}, in plain English.")
            opened = await alice.send(
                BRAND, "My speaker's light is flashing orange and it won't play anything."
            )
            task_id = opened["task"]
            story.line(f"Accepted: task {task_id}, state {opened['task_state']}.")
            support = agents["support"]
            item = await _next_item(support, 0)
            story.line(f"The gateway routed it to {support.address}.")
            story.envelope(item["envelope"], item["task"])

            story.step("The support agent needs to know more: it sends an `ask`.")
            await support.send(
                alice.address,
                "Is the orange light blinking slowly or quickly?",
                act="ask",
                task=task_id,
                reply_to=item["envelope"]["id"],
            )
            reply = await _next_item(alice, 0)
            story.envelope(reply["envelope"], reply["task"])

            story.step("Alice's agent answers inside the same task.")
            await alice.send(BRAND, "Quickly, about twice a second.", task=task_id)
            answer = await _next_item(support, item["seq"])
            story.envelope(answer["envelope"], answer["task"])

            story.step("The support agent solves it and marks the task resolved.")
            await support.send(
                alice.address,
                "Fast orange blinking means a failed update. Hold the play button for 10 seconds"
                " to restore the firmware; the light turns white when done.",
                act="resolve",
                task=task_id,
            )
            resolved = await _next_item(alice, reply["seq"])
            story.envelope(resolved["envelope"], resolved["task"])

            story.step("Alice's agent confirms the fix.")
            confirmed = await alice.send(BRAND, "", act="confirm", task=task_id)
            story.line(f"Task {task_id}: {confirmed['task_state']}, confirmed.")

            view = await alice.task(task_id)
            story.step(
                f"The task's history, as the gateway keeps it ({len(view['history'])}"
                " signed envelopes):"
            )
            for envelope in view["history"]:
                story.line(f"{envelope['act']:>8}  {envelope['from']}")
            if view["state"] != "completed":
                raise RuntimeError(f"the task ended {view['state']}, not completed")
        finally:
            for client in clients:
                await client.close()
            await runner.cleanup()


def main(say: Callable[[str], None] = print) -> int:
    asyncio.run(run_demo(say))
    say("\nThe demo finished: every step above went through the gateway over HTTP.")
    return 0
