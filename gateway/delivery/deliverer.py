"""The "delivery" handler: one envelope to one agent's endpoint, as a signed webhook.

Body: `{"type": "envelope", "envelope": <the object the sender signed, as the JSON text it was
received in>, "task": {id, state, control}}`. Headers (Standard Webhooks): `webhook-id` is
the outbox row's public id, the same on every retry, so a receiver deduplicates by it;
`webhook-timestamp` is the time of this attempt; `webhook-signature` is
`v1a,<base64 Ed25519>` made with the gateway key published in `/.well-known/switchboard`.

An answer 200 whose JSON is `{"envelope": {...}}` is the recipient's reply in the same round
trip: it goes through `Acceptance.accept_object` exactly as if POSTed to /v1/messages. A
refused reply is noted on the attempt; the delivery itself still succeeded.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from gateway.acceptance import Accepted
from gateway.clock import Clock, iso
from gateway.delivery.errors import DeliveryError
from gateway.delivery.schedule import Verdict, classify_status, parse_retry_after
from gateway.delivery.sender import HttpAnswer, WebhookSender
from gateway.delivery.worker import Attempt
from gateway.errors import EndpointForbidden, GatewayError
from gateway.store.directory import Directory
from gateway.store.outbox import OutboxRow, OutboxStore
from gateway.store.records import dumps
from identity.envelope import MAX_REQUEST_BYTES
from identity.errors import IdentityError
from identity.keys import PrivateKey
from identity.webhook import sign_webhook
from routing.errors import RoutingError

log = structlog.get_logger(__name__)

KIND = "delivery"

Accept = Callable[[object], Awaitable[Accepted]]
Disabled = Callable[[str, str], Awaitable[None]]  # (agent address, reason)


def webhook_body_of_stored(envelope_json: str, task: dict[str, Any] | None) -> bytes:
    """The bytes POSTed for one envelope (UTF-8 JSON): the stored envelope text spliced in as
    it is, not decoded and encoded again. That text is the sender's request as received (or,
    for a synchronous reply, compact `records.dumps`), so the webhook keeps the sender's
    whitespace and escapes: still valid JSON whose "envelope" is the object the sender
    signed."""
    return f'{{"type":"envelope","envelope":{envelope_json},"task":{dumps(task)}}}'.encode()


class _ReplyNotProcessed(Exception):
    """The gateway failed (not refused) while accepting a synchronous reply."""


class EndpointDeliverer:
    """Handles outbox rows of kind "delivery" (payload: envelope_pk, agent, task)."""

    def __init__(
        self,
        *,
        directory: Directory,
        store: OutboxStore,
        sender: WebhookSender,
        key: PrivateKey,
        clock: Clock,
        accept: Accept,
        on_disabled: Disabled | None = None,
    ) -> None:
        self._directory = directory
        self._store = store
        self._sender = sender
        self._key = key
        self._clock = clock
        self._accept = accept
        self._on_disabled = on_disabled

    async def handle(self, row: OutboxRow) -> Attempt:
        address = str(row.payload["agent"])
        target = row.target  # read in the transaction that claimed the row
        if target is None:
            target = await self._store.delivery_target(int(row.payload["envelope_pk"]), address)
        if target is None:
            return Attempt.final(f"{address} or the envelope is no longer stored")
        if not target.endpoint_url:
            return Attempt.final(f"{address} has no endpoint any more")
        if target.endpoint_status != "active":
            note = f": {target.endpoint_note}" if target.endpoint_note else ""
            return Attempt.final(f"the endpoint of {address} is {target.endpoint_status}{note}")
        url = target.endpoint_url
        body = webhook_body_of_stored(target.envelope_json, row.payload.get("task"))
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "webhook-id": row.public_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_webhook(self._key, row.public_id, timestamp, body),
        }
        try:
            answer = await self._sender.post(url, body, headers)
        except EndpointForbidden as exc:
            return Attempt.final(f"endpoint_forbidden: {exc.detail}")
        except DeliveryError as exc:
            return Attempt.retry(f"{exc.code}: {exc.detail}")
        return await self._judge(row, address, url, answer)

    async def _judge(self, row: OutboxRow, address: str, url: str, answer: HttpAnswer) -> Attempt:
        verdict = classify_status(answer.status)
        if verdict == Verdict.OK:
            try:
                note = await self._reply(answer) if answer.status == 200 else None
            except _ReplyNotProcessed as exc:
                # Not a refusal but our own failure (database busy, …): deliver again, and the
                # endpoint, deduplicating by webhook-id, answers with the same reply.
                return Attempt.retry(str(exc), answer.status)
            return Attempt.ok(answer.status, note)
        if verdict == Verdict.RETRY:
            retry_after = parse_retry_after(answer.headers.get("Retry-After"), self._clock.now())
            return Attempt.retry(f"HTTP {answer.status}", answer.status, retry_after)
        if verdict == Verdict.DISABLE:
            reason = (
                f"{url} answered 410 Gone to delivery {row.public_id} at"
                f" {iso(self._clock.now())}; PATCH the agent's endpoint to turn delivery back on"
            )
            await self._directory.disable_endpoint(address, reason, self._clock.now())
            log.warning("delivery.endpoint_disabled", agent=address, reason=reason)
            if self._on_disabled is not None:
                try:
                    await self._on_disabled(address, reason)
                except Exception:
                    log.exception("delivery.on_disabled_failed", agent=address)
            return Attempt.disable(f"HTTP 410: endpoint disabled ({reason})", answer.status)
        what = "a redirect, which is never followed" if 300 <= answer.status < 400 else "refused"
        return Attempt.final(f"HTTP {answer.status}: {what}", answer.status)

    async def _reply(self, answer: HttpAnswer) -> str | None:
        """Accept a synchronous reply, if the answer carries one; a note on what happened."""
        if not answer.body.strip():
            return None
        if len(answer.body) > MAX_REQUEST_BYTES:
            return "reply ignored: the answer is larger than 256 KiB"
        try:
            parsed = json.loads(answer.body)
        except (ValueError, UnicodeDecodeError):
            return None  # a 200 with some other body is a plain acknowledgement
        if not isinstance(parsed, dict) or "envelope" not in parsed:
            return None
        try:
            accepted = await self._accept(parsed["envelope"])
        except (IdentityError, RoutingError, GatewayError) as exc:
            return f"reply refused: {exc.code}: {exc.detail}"[:1000]
        except Exception as exc:
            log.exception("delivery.reply_failed")
            raise _ReplyNotProcessed(
                f"the reply could not be processed ({type(exc).__name__}); delivering again"
            ) from exc
        duplicate = " (a repeat of an accepted envelope)" if accepted.duplicate else ""
        return f"reply accepted: {accepted.answer.get('id')}{duplicate}"


def unreachable_recorder(
    directory: Directory, store: OutboxStore, clock: Clock
) -> Callable[[OutboxRow, str], Awaitable[None]]:
    """The default `on_gave_up` hook: a brand agent's task records `agent_unreachable`.

    The escalation engine replaces this hook to open an escalation instead (section 7).
    """

    async def record(row: OutboxRow, reason: str) -> None:
        if row.kind != KIND or row.task_id is None:
            return
        agent = await directory.agent(str(row.payload.get("agent")))
        if agent is None or agent.kind != "brand":
            return
        await store.add_task_event(
            row.task_id,
            "agent_unreachable",
            {"agent": agent.address, "delivery": row.public_id, "reason": reason},
            clock.now(),
        )

    return record
