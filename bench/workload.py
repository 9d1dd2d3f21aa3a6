"""What the senders send: personal agents, a brand, and pre-built request bodies.

The gateway workload is a brand (`acme.example`) with two agents and N personal agents, one
per sender. Each sender opens one task during set-up; its timed envelopes then mix new tasks
(`task: null`, addressed to the brand's domain, so the language layer routes them) with
`say` messages inside its open task, addressed to the agent that answers it. Envelopes are
signed before the clock starts, so the generator's signing cost is not measured.

The peer receives A2A `SendMessage` JSON-RPC requests built to the same byte size as the
envelopes, one conversation (`contextId`) per sender.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from gateway.client import AgentClient, StaffClient
from identity.ids import new_id, new_ulid
from identity.keys import PrivateKey

BRAND = "acme.example"
PERSONAL_DOMAIN = "people.example"
GATEWAY_DOMAIN = "gateway.example"
BRAND_AGENTS = (
    (
        "support",
        "Helps with speakers that will not connect, flash, crackle or drop out; setup and"
        " troubleshooting.",
        ("troubleshooting", "setup", "wifi", "speakers"),
    ),
    (
        "billing",
        "Answers questions about invoices, charges, refunds and subscriptions.",
        ("billing", "refunds", "invoices", "subscriptions"),
    ),
)

_OPENINGS = (
    "My speaker's light is flashing orange since this morning",
    "The soundbar drops off the wifi every evening",
    "I was charged twice for my subscription this month",
    "The left speaker crackles at high volume",
    "I would like a refund for the order that arrived broken",
    "Setup fails at the last step with a network error",
)
_FOLLOW_UPS = (
    "I tried unplugging it for a minute and it came back, then failed again",
    "The router is a few metres away and other devices are fine",
    "The invoice number is on the email you sent last week",
    "It happens with every app, not just one",
    "Yes, the firmware is the newest one the app offers",
    "Thanks, that helped a little but the problem is still there",
)

_COMPACT = {"separators": (",", ":"), "ensure_ascii": False}


def encode(value: Any) -> bytes:
    """Compact JSON, as a client would send it."""
    return json.dumps(value, **_COMPACT).encode()  # type: ignore[arg-type]


@dataclass
class Sender:
    """One personal agent and the task it keeps writing in."""

    client: AgentClient
    task: str
    responder: str


def make_keys(count: int) -> list[PrivateKey]:
    return [PrivateKey.generate() for _ in range(count)]


def sender_address(index: int) -> str:
    return f"bench{index:03d}@{PERSONAL_DOMAIN}"


def write_keys_file(path: Path, keys: Sequence[PrivateKey]) -> None:
    """The senders' public keys for the ceiling server, `{address: [jwk]}`."""
    path.write_text(json.dumps({sender_address(i): [key.public.jwk] for i, key in enumerate(keys)}))


async def set_up_gateway(
    session: aiohttp.ClientSession,
    url: str,
    admin_token: str,
    keys: Sequence[PrivateKey],
    *,
    agent_keeps_tasks: bool = False,
) -> list[Sender]:
    """Create the brand and its agents, lift its rate limit, register senders, open tasks.

    The brand's policy carries its own per-sender rate limit (120 a minute by default), which
    applies instead of `SWITCHBOARD_RATE_PER_MINUTE` to envelopes for its agents, so the
    benchmark raises it to the policy's maximum.

    With the default escalation rules, the follow-ups of the long tasks read as frustrated
    (the same complaints again, "still there") and every sender's task passes to a person
    early on; so do about a sixth of the new tasks. `agent_keeps_tasks` turns off the two
    rules that escalate them (`frustration`, `max_turns_without_progress`) and keeps
    `human_requested`: the language layer still reads every `say` for signals, and the
    agent keeps every task.
    """
    admin = StaffClient(url, admin_token, session=session)
    created = await admin.create_brand(BRAND, "Acme")
    brand_admin = StaffClient(url, created["token"], session=session)
    for local, description, skills in BRAND_AGENTS:
        await brand_admin.register_brand_agent(
            f"{local}@{BRAND}",
            PrivateKey.generate(),
            display_name=local.title(),
            description=description,
            skills=skills,
        )
    policy: dict[str, Any] = {"contact": {"rate_per_minute": 100_000}}
    if agent_keeps_tasks:
        policy["escalation"] = {"frustration": False, "max_turns_without_progress": 0}
    await brand_admin.set_policy(BRAND, policy)

    senders = []
    for index, key in enumerate(keys):
        client = AgentClient(
            url, sender_address(index), key, audience=GATEWAY_DOMAIN, session=session
        )
        await client.register_personal(display_name=f"Bench {index}")
        opened = await client.send(BRAND, _OPENINGS[index % len(_OPENINGS)] + ".")
        task = await client.task(opened["task"])
        senders.append(Sender(client, opened["task"], task["responder"]))
    return senders


def placeholder_senders(keys: Sequence[PrivateKey]) -> list[Sender]:
    """Senders with made-up task ids of the real shape, for servers that keep no tasks."""
    return [
        Sender(
            AgentClient("http://unused", sender_address(i), key, audience=GATEWAY_DOMAIN),
            new_id("tsk"),
            f"{BRAND_AGENTS[0][0]}@{BRAND}",
        )
        for i, key in enumerate(keys)
    ]


def sign_envelopes(
    senders: Sequence[Sender], per_sender: int, new_task_share: float, seed: int = 7
) -> list[list[bytes]]:
    """Per sender, `per_sender` distinct signed envelopes, encoded and ready to post.

    Every `round(1 / new_task_share)`-th envelope opens a new task; the rest are `say`s in the
    sender's open task. Texts vary so no two envelopes are alike.
    """
    rng = random.Random(seed)
    every = max(1, round(1 / new_task_share)) if new_task_share > 0 else 0
    now = datetime.now(UTC)
    pools = []
    for index, sender in enumerate(senders):
        pool = []
        for n in range(per_sender):
            reference = f" (ref {index}-{n}-{rng.randrange(10**6):06d})"
            if every and n % every == every - 1:
                text = rng.choice(_OPENINGS) + reference + ". What should I do?"
                envelope = sender.client.envelope(BRAND, text, now=now)
            else:
                text = rng.choice(_FOLLOW_UPS) + reference + "."
                envelope = sender.client.envelope(sender.responder, text, task=sender.task, now=now)
            pool.append(encode(envelope))
        pools.append(pool)
    return pools


def a2a_requests(envelope_pools: Sequence[Sequence[bytes]]) -> list[list[bytes]]:
    """A2A `SendMessage` requests, each padded to the byte size of the envelope it mirrors."""
    pools = []
    for index, envelopes in enumerate(envelope_pools):
        context = f"ctx-bench-{index:03d}"
        pool = []
        for number, envelope in enumerate(envelopes):
            text = json.loads(envelope)["body"]["text"]
            room = len(envelope) - len(encode(_send_message(context, number, "")))
            padded = (text + " " + "." * len(envelope))[: max(room, 1)]
            pool.append(encode(_send_message(context, number, padded)))
        pools.append(pool)
    return pools


def _send_message(context: str, number: int, text: str) -> dict[str, Any]:
    """An A2A 1.0 JSON-RPC `SendMessage` request with one text part."""
    return {
        "jsonrpc": "2.0",
        "id": number,
        "method": "SendMessage",
        "params": {
            "message": {
                "messageId": new_ulid(),
                "contextId": context,
                "role": "ROLE_USER",
                "parts": [{"text": text}],
            }
        },
    }


def cycle(pool: Sequence[bytes]) -> Iterator[bytes]:
    """Endlessly repeat a pool (for servers that keep no replay memory)."""
    while True:
        yield from pool
