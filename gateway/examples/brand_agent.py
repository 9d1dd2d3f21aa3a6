"""A reference brand agent: a small web service that receives deliveries and answers them.

It is what a brand writes (PROTOCOL section 6), kept short enough to copy:

1. Learn the gateway's public keys from `GET /.well-known/switchboard` (its JWKS).
2. For each POST, check the Standard Webhooks signature (`webhook-id`, `webhook-timestamp`,
   `webhook-signature: v1a,…`) with those keys, and refuse stale timestamps.
3. Answer a repeated `webhook-id` (a retry after a lost answer) with the answer already given,
   never a second reply.
4. Check the envelope's own signature with the sender's public card (`GET /v1/agents/{from}`),
   or the gateway's keys for envelopes the gateway signs (operators, status).
5. Reply in English by a few simple rules, either in the same round trip (`200 {"envelope":
   …}`) or later by `POST /v1/messages` (`mode="async"`); stay quiet while the task's
   `control` is `human` (an operator holds it, and the gateway answers the agent with 409).
6. Take ordered batches too (an endpoint registered with `max_batch` > 1,
   docs/delivery-batches.md): `{"type": "batch", "items": [...]}`, each item deduplicated by
   its own `id`, answered `200 {"replies": [{"id", "envelope"} | {"id", "refused"}, …]}`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from gateway.client import AgentClient
from identity.envelope import Envelope, KeyState, parse, verify
from identity.errors import IdentityError
from identity.keys import PrivateKey, PublicKey
from identity.webhook import verify_webhook

log = structlog.get_logger(__name__)

_REMEMBERED = 10_000
_NO_REPLY_ACTS = frozenset({"status", "cancel", "confirm", "resolve", "reject", "fail"})


@dataclass(frozen=True, slots=True)
class Rule:
    """When every word group matches (any word of each group), answer `text` with `act`."""

    groups: tuple[tuple[str, ...], ...]
    act: str
    text: str


RULES: tuple[Rule, ...] = (
    Rule(
        (("thank", "thanks", "fixed", "worked", "works"),),
        "resolve",
        "Glad that sorted it. I'm closing this; write again any time.",
    ),
    Rule(
        (("fast",), ("blink", "blinking", "flash", "flashing", "fast")),
        "ask",
        "A fast blink means the speaker lost its Wi-Fi. Hold the join button for 10 seconds"
        " until the light turns white. Did that fix it?",
    ),
    Rule(
        (("slow",), ("blink", "blinking", "flash", "flashing", "slow")),
        "ask",
        "A slow blink means an update is installing. Leave it plugged in for 10 minutes."
        " Is it back to normal?",
    ),
    Rule(
        (("light", "led"), ("orange", "flashing", "blinking", "red")),
        "ask",
        "Is the light blinking fast or slow?",
    ),
    Rule(
        (("refund", "return", "money"),),
        "ask",
        "You can return it within 30 days for a full refund. Shall I start the return?",
    ),
    Rule(
        (("order", "delivery", "shipping", "package", "parcel"),),
        "ask",
        "Could you tell me your order number?",
    ),
    Rule(
        (("yes", "please"),),
        "resolve",
        "Done: you'll get an email with the details in a few minutes.",
    ),
    Rule(
        (("hello", "hi", "hey"),),
        "ask",
        "Hello! How can I help you today?",
    ),
)
_FALLBACK = Rule((), "ask", "Thanks for your message. Could you tell me a bit more about it?")
_WORD = re.compile(r"[a-z0-9']+")


def _well_formed(items: object) -> bool:
    """Whether a batch's `items` is a list of objects, each with a string id."""
    return isinstance(items, list) and all(
        isinstance(item, dict) and isinstance(item.get("id"), str) for item in items
    )


def answer(text: str) -> tuple[str, str]:
    """(act, text) of the reply to `text`: the first rule whose word groups all match."""
    words = set(_WORD.findall(text.lower()))
    if re.search(r"\b\d{5,}\b", text):
        return "say", "Thanks. That order is on its way and should arrive within two days."
    for rule in RULES:
        if all(words & set(group) for group in rule.groups):
            return rule.act, rule.text
    return _FALLBACK.act, _FALLBACK.text


class BrandAgent:
    """The service. `app()` is the aiohttp application; `start()` must run first (it fetches
    the gateway's keys), which `app()` arranges through its cleanup context."""

    def __init__(
        self,
        *,
        gateway_url: str,
        address: str,
        key: PrivateKey,
        mode: str = "sync",
        tolerance_s: int = 300,
    ) -> None:
        if mode not in ("sync", "async"):
            raise ValueError("mode is sync or async")
        self.gateway_url = gateway_url.rstrip("/")
        self.address = address
        self.key = key
        self.mode = mode
        self.tolerance_s = tolerance_s
        self.gateway_keys: list[PublicKey] = []
        self.gateway_address = ""
        self._cards: dict[str, dict[str, KeyState]] = {}
        self._answered: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._client: AgentClient | None = None
        self._background: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application()  # bodies up to 1 MiB: the gateway's batches stay under that
        app.router.add_post("/{tail:.*}", self.receive)
        app.cleanup_ctx.append(self._lifecycle)
        return app

    async def _lifecycle(self, _app: web.Application) -> Any:
        await self.start()
        yield
        await self.close()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        domain = await self.refresh_gateway_keys()
        self._client = AgentClient(
            self.gateway_url, self.address, self.key, audience=domain, session=self._session
        )

    async def close(self) -> None:
        for task in list(self._background):
            await task
        if self._session is not None:
            await self._session.close()

    async def refresh_gateway_keys(self) -> str:
        """Read the gateway's JWKS from its well-known document; returns the gateway's domain."""
        assert self._session is not None
        async with self._session.get(self.gateway_url + "/.well-known/switchboard") as response:
            response.raise_for_status()
            document = await response.json()
        self.gateway_keys = [PublicKey.from_jwk(jwk) for jwk in document["jwks"]["keys"]]
        self.gateway_address = str(document.get("gateway", ""))
        return str(document["domain"])

    async def receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "")
        signature = request.headers.get("webhook-signature", "")
        if not (webhook_id and timestamp.isdigit() and signature):
            return web.json_response({"error": "missing webhook headers"}, status=400)
        if not await self._signed_by_gateway(webhook_id, int(timestamp), raw, signature):
            return web.json_response({"error": "bad webhook signature"}, status=401)
        delivery = json.loads(raw)
        if delivery.get("type") == "batch" and not _well_formed(delivery.get("items")):
            return web.json_response({"error": "a batch's items each need an id"}, status=400)
        try:
            if delivery.get("type") == "batch":
                answers = [
                    await self._answer_once(str(item["id"]), item) for item in delivery["items"]
                ]
                replies = [one for one in answers if "envelope" in one or "refused" in one]
                status, body = 200, json.dumps({"replies": replies}).encode()
            else:
                status, body = self._encoded(await self._answer_once(webhook_id, delivery))
        except aiohttp.ClientError as exc:
            # The sender's card could not be fetched: ask the gateway to retry later.
            log.warning("example_agent.card_unavailable", reason=str(exc))
            return web.json_response({"error": "try again later"}, status=503)
        return web.Response(status=status, body=body, content_type="application/json")

    async def _answer_once(self, delivery_id: str, delivery: dict[str, Any]) -> dict[str, Any]:
        """The answer to one delivery, the same one again for a repeated id."""
        if delivery_id in self._answered:
            return self._answered[delivery_id]
        answered = await self._answer(delivery)
        if answered:
            answered = {"id": delivery_id, **answered}
        self._answered[delivery_id] = answered
        while len(self._answered) > _REMEMBERED:
            self._answered.popitem(last=False)
        return answered

    def _encoded(self, answered: dict[str, Any]) -> tuple[int, bytes]:
        """A single delivery's HTTP answer."""
        if "refused" in answered:
            return 400, json.dumps({"error": answered["refused"]}).encode()
        if "envelope" in answered:
            return 200, json.dumps({"envelope": answered["envelope"]}).encode()
        return (202 if "later" in answered else 200), b"{}"

    async def _signed_by_gateway(
        self, webhook_id: str, timestamp: int, raw: bytes, signature: str
    ) -> bool:
        now = datetime.now(UTC)
        args = (webhook_id, timestamp, raw, signature, now, self.tolerance_s)
        if verify_webhook(self.gateway_keys, *args):
            return True
        await self.refresh_gateway_keys()  # the gateway may have rotated its key
        return verify_webhook(self.gateway_keys, *args)

    async def _answer(self, delivery: dict[str, Any]) -> dict[str, Any]:
        """`{"envelope": reply}`, `{"refused": why}`, `{"later": True}` (the reply goes by
        `POST /v1/messages`), or `{}` (nothing to say)."""
        try:
            envelope = parse(delivery["envelope"])
            await self._verify_sender(envelope)
        except (IdentityError, KeyError) as exc:
            log.warning("example_agent.refused", reason=str(exc))
            return {"refused": f"envelope refused: {exc}"}
        if envelope.act in _NO_REPLY_ACTS or str(envelope.sender) == self.gateway_address:
            return {}
        if (delivery.get("task") or {}).get("control") == "human":
            return {}  # the brand's people hold the task: the gateway would refuse a reply
        act, text = answer(envelope.text)
        assert self._client is not None
        reply = self._client.envelope(
            str(envelope.sender),
            text,
            act=act,
            task=(delivery.get("task") or {}).get("id"),
            reply_to=envelope.id,
        )
        if self.mode == "sync":
            return {"envelope": reply}
        task = asyncio.create_task(self._post_later(reply))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return {"later": True}

    async def _post_later(self, reply: dict[str, Any]) -> None:
        assert self._client is not None
        try:
            await self._client.post_envelope(reply)
        except Exception:
            log.exception("example_agent.reply_failed")

    async def _verify_sender(self, envelope: Envelope) -> None:
        """The envelope's signature by its sender's published keys (time is not checked: a
        delivery retried hours later is still genuine)."""
        sender = str(envelope.sender)
        if sender == self.gateway_address or envelope.sig.kid in {
            key.kid for key in self.gateway_keys
        }:
            keys = {key.kid: KeyState(key) for key in self.gateway_keys}
        else:
            keys = self._cards.get(sender, {})
            if envelope.sig.kid not in keys:
                keys = await self._card_keys(sender)
        verify(envelope, keys, envelope.created_at)

    async def _card_keys(self, address: str) -> dict[str, KeyState]:
        assert self._session is not None
        async with self._session.get(f"{self.gateway_url}/v1/agents/{address}") as response:
            response.raise_for_status()
            card = await response.json()
        keys = {
            entry["kid"]: KeyState(
                PublicKey.from_jwk(entry["jwk"]), revoked=entry.get("status") == "revoked"
            )
            for entry in card["keys"]
        }
        self._cards[address] = keys
        return keys
