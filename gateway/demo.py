"""`switchboard demo`: a whole conversation through a real gateway, told step by step.

One process, a temporary data folder, a gateway on a free local port, a brand with three
agents, a personal agent, and a scripted person: routing from the brand's domain, an `ask`,
the answer, a `resolve`, the person's `confirm`; then an escalation to an operator and the
outcome ledger. The brand's agents are the reference brand agent
(`gateway/examples/brand_agent.py`), each a web service on its own local port registered as
the agent's endpoint: the gateway delivers every envelope to it as a signed webhook, and it
answers in the same round trip. Every step goes over real HTTP with signed envelopes, exactly
as agents on other machines would talk to the gateway.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.app import Overrides, build_app
from gateway.client import AgentClient, StaffClient
from gateway.config import DeliverySettings, Settings
from gateway.examples.brand_agent import BrandAgent
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


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _hop(staff: StaffClient, task_id: str, envelope_id: str) -> dict[str, Any]:
    """The delivery of one envelope, once its attempt is recorded (brand admin's view)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        view = await staff.get(f"/v1/tasks/{task_id}")
        for delivery in view.get("deliveries", []):
            if delivery["envelope"] == envelope_id and delivery["status"] == "delivered":
                return delivery  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the delivery of {envelope_id} was not recorded within 10 s")


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
            # The brand's agents listen on this machine: let the gateway deliver to loopback.
            delivery=DeliverySettings(allow_private=(ipaddress.ip_network("127.0.0.0/8"),)),
        )
        runners = [
            await _serve(build_app(settings, Overrides(announce=lambda _t: None)), settings.port)
        ]
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
            endpoints: dict[str, str] = {}
            for local, description, skills in AGENTS:
                agent = AgentClient(
                    base, f"{local}@{BRAND}", PrivateKey.generate(), audience=settings.domain
                )
                port = _free_port()
                service = BrandAgent(gateway_url=base, address=agent.address, key=agent.key)
                runners.append(await _serve(service.app(), port))
                endpoints[local] = f"http://127.0.0.1:{port}/webhook"
                await staff.register_brand_agent(
                    agent.address,
                    agent.key,
                    description=description,
                    skills=skills,
                    endpoint=endpoints[local],
                )
                agents[local] = agent
                clients.append(agent)
            story.line(f"Brand {BRAND} registered its agents: {', '.join(agents)}.")
            story.line(
                "Each is the reference brand agent (gateway/examples/brand_agent.py), a web"
                " service on its own port:"
            )
            for local, url in endpoints.items():
                story.line(f"  {local}@{BRAND} -> {url}")
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
            reply = await _next_item(alice, 0)
            hop = await _hop(staff, task_id, opened["id"])
            story.line(f"The gateway routed it to {hop['recipient']}.")
            _webhook(story, hop, endpoints)
            story.envelope(reply["envelope"], reply["task"])

            story.step("Alice's agent answers inside the same task.")
            answer = await alice.send(
                BRAND, "It's blinking fast, about twice a second.", task=task_id
            )
            second = await _next_item(alice, reply["seq"])
            _webhook(story, await _hop(staff, task_id, answer["id"]), endpoints)
            story.envelope(second["envelope"], second["task"])

            story.step("Alice's agent reports the fix worked; the support agent resolves the task.")
            thanks = await alice.send(BRAND, "Yes, that worked, thanks!", task=task_id)
            resolved = await _next_item(alice, second["seq"])
            _webhook(story, await _hop(staff, task_id, thanks["id"]), endpoints)
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

            ops = _OpsChannel()
            ops_url = f"http://127.0.0.1:{(ops_port := _free_port())}/events"
            runners.append(await _serve(ops.app(), ops_port))
            await _escalation_story(story, base, staff, alice, endpoints, (ops, ops_url))
        finally:
            for client in clients:
                await client.close()
            for runner in reversed(runners):
                await runner.cleanup()


def _webhook(story: Narrator, delivery: dict[str, Any], endpoints: dict[str, str]) -> None:
    """One line for the webhook hop: where it went, what came back, what the reply did."""
    attempt = delivery["attempts"][-1]
    local = str(delivery["recipient"]).partition("@")[0]
    note = str(attempt.get("note") or "")
    if note.startswith("reply accepted"):
        outcome = "its reply came back in the same answer"
    else:
        outcome = "no reply in the answer"
    story.line(
        f"Webhook {delivery['id']} -> {endpoints.get(local, '?')}: HTTP {attempt['status']}"
        f" in {attempt['duration_ms']} ms, {outcome}."
    )


class _OpsChannel:
    """The brand's webhook notification channel: a tiny receiver keeping the events."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/events", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        await self.events.put(await request.json())
        return web.Response(status=204)


async def _follow(operator: StaffClient, seen: asyncio.Queue[dict[str, Any]]) -> None:
    async for event in operator.stream(heartbeat=1.0):
        await seen.put(event)


async def _escalation_story(
    story: Narrator,
    base: str,
    staff: StaffClient,
    alice: AgentClient,
    endpoints: dict[str, str],
    channel: tuple[_OpsChannel, str],
) -> None:
    """The person asks for a human: an operator is told, claims, answers and resolves."""
    ops, ops_url = channel
    story.step("The brand adds an operator, Jane, who watches the live escalation queue.")
    await staff.post(f"/v1/brands/{BRAND}/channels", {"kind": "webhook", "url": ops_url})
    added = await staff.post(
        f"/v1/brands/{BRAND}/operators",
        {"handle": "jane", "display_name": "Jane", "email": "jane@acme-audio.example"},
    )
    jane = StaffClient(base, added["token"])
    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    follower = asyncio.create_task(_follow(jane, seen))
    try:
        story.line(f"Operator {added['address']} is on the console stream.")
        story.line(f"The brand's ops channel (a webhook) listens at {ops_url}.")
        story.step("Alice's agent opens a new task, and asks for a person in plain English.")
        mark = await _last_seq(alice)
        opened = await alice.send(
            BRAND,
            "My order A-1009 still hasn't arrived and the tracking hasn't moved for a week."
            " Can I speak to a real person please?",
        )
        story.line(
            f"Accepted: task {opened['task']}, state {opened['task_state']},"
            f" control {opened['control']}."
        )
        event = await asyncio.wait_for(seen.get(), 10)
        escalation = event["escalation"]
        story.line(
            f"Jane's console: {event['type']} ({escalation['reason']}, priority"
            f" {escalation['priority']})."
        )
        summary = textwrap.shorten(escalation["summary"].replace("\n", " | "), 300)
        story.line("Summary for the human: " + summary)
        notified = await asyncio.wait_for(ops.events.get(), 10)
        story.line(f"Ops channel: {notified['type']}, signed webhook {notified['id']}.")
        quiet = await _hop(staff, opened["task"], opened["id"])
        _webhook(story, quiet, endpoints)
        story.line(f"{quiet['recipient']} stays quiet: the brand's people hold the task.")
        status = await _next_item(alice, mark)
        story.envelope(status["envelope"], status["task"])

        story.step("Jane claims the escalation, answers Alice, and resolves it.")
        claimed = await jane.post(f"/v1/escalations/{escalation['id']}/claim")
        story.line(f"Claimed by {claimed['claimed_by']}.")
        before = await _last_seq(alice)
        await jane.post(
            f"/v1/escalations/{escalation['id']}/reply",
            {
                "text": "I'm sorry about the wait. I've sent a replacement by express courier;"
                " it arrives tomorrow.",
                "act": "say",
            },
        )
        reply = await _next_item(alice, before)
        story.envelope(reply["envelope"], reply["task"])
        await jane.post(
            f"/v1/escalations/{escalation['id']}/resolve",
            {"text": "Replacement sent; the lost parcel is refunded."},
        )
        view = await alice.task(opened["task"])
        story.line(f"Task {view['id']}: {view['state']}, resolved by {view['resolved_by']}.")

        story.step("The outcome ledger: what the brand can count and audit.")
        ledger = await staff.get(f"/v1/brands/{BRAND}/outcomes")
        for entry in ledger["entries"]:
            story.line(
                f"#{entry['seq']} {entry['task']}: {entry['outcome']} by"
                f" {entry['resolved_by']}, escalated={entry['escalated']}"
            )
        totals = ledger["totals"]
        story.line(
            f"Totals: {totals['resolved_by_agent']} resolved by the agent,"
            f" {totals['resolved_by_human']} by a human, {totals['billable']} billable."
        )
        if totals["resolved_by_human"] != 1:
            raise RuntimeError("the ledger does not show the human resolution")
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await jane.close()


async def _last_seq(agent: AgentClient) -> int:
    page = await agent.inbox(after=0, limit=500)
    return int(page["items"][-1]["seq"]) if page["items"] else 0


def main(say: Callable[[str], None] = print) -> int:
    asyncio.run(run_demo(say))
    say("\nThe demo finished: every step above went through the gateway over HTTP.")
    return 0
