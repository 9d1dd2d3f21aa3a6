"""The "delivery" handler: one envelope to one agent's endpoint, as a signed webhook.

Body: `{"type": "envelope", "envelope": <the object the sender signed, as the JSON text it was
received in>, "task": {id, state, control}}`. Headers (Standard Webhooks): `webhook-id` is
the outbox row's public id, the same on every retry, so a receiver deduplicates by it;
`webhook-timestamp` is the time of this attempt; `webhook-signature` is
`v1a,<base64 Ed25519>` made with the gateway key published in `/.well-known/switchboard`.

An answer 200 whose JSON is `{"envelope": {...}}` is the recipient's reply in the same round
trip: it goes through `Acceptance.accept_object` exactly as if POSTed to /v1/messages. A
refused reply is noted on the attempt; the delivery itself still succeeded. So is an answer
that is JSON beyond what the gateway reads (`identity.json_text`: nested deeper than 128
levels, or an integer too long for Python): its reply is ignored, with a note saying why.

An endpoint registered with `max_batch` > 1 takes ordered batches (docs/delivery-batches.md):
the worker leases the rows queued behind the head with it, and `handle_batch` POSTs them in
one body, `{"type": "batch", "items": [{"id": <row id>, "envelope": …, "task": …}, …]}`
(that body even for one item, so such an endpoint sees one shape), with `webhook-id` naming
the batch (`batch_<digest of its rows' ids>`: the same rows retried carry the same id). The
HTTP answer settles every item; a 200 may carry
`{"replies": [{"id": <row id>, "envelope": …} | {"id": <row id>, "refused": <why>}, …]}`.
Replies are accepted in order within each task, tasks side by side, so that one group
commit takes them together.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import structlog

from gateway.acceptance import Accepted
from gateway.clock import Clock, iso
from gateway.delivery.errors import DeliveryError
from gateway.delivery.schedule import Verdict, classify_status, parse_retry_after
from gateway.delivery.sender import HttpAnswer, WebhookSender
from gateway.delivery.worker import Attempt
from gateway.errors import EndpointForbidden, GatewayError, Unavailable
from gateway.logs import log_context_restored
from gateway.store.directory import Directory
from gateway.store.outbox import OutboxStore
from gateway.store.outbox_rows import DeliveryTarget, OutboxRow
from gateway.store.records import dumps
from identity import json_text
from identity.envelope import MAX_REQUEST_BYTES
from identity.errors import IdentityError, InvalidJson, JsonBeyondLimits
from identity.keys import PrivateKey
from identity.webhook import sign_webhook
from routing.errors import RoutingError

log = structlog.get_logger(__name__)

KIND = "delivery"

# What a batch's answer may be: 256 KiB per item (a reply each), and 4 MiB in all.
MAX_ANSWER_BYTES = 4 * 1024 * 1024

Accept = Callable[[object], Awaitable[Accepted]]
Disabled = Callable[[str, str], Awaitable[None]]  # (agent address, reason)


def webhook_body_of_stored(envelope_json: str, task: dict[str, Any] | None) -> bytes:
    """The bytes POSTed for one envelope (UTF-8 JSON): the stored envelope text spliced in as
    it is, not decoded and encoded again. That text is the sender's request as received (or,
    for a synchronous reply, compact `records.dumps`), so the webhook keeps the sender's
    whitespace and escapes: still valid JSON whose "envelope" is the object the sender
    signed."""
    return f'{{"type":"envelope","envelope":{envelope_json},"task":{dumps(task)}}}'.encode()


def webhook_body_of_batch(items: Sequence[tuple[str, str, dict[str, Any] | None]]) -> bytes:
    """The bytes POSTed for a batch: (row id, stored envelope text, task) per item, in order,
    each envelope spliced in as `webhook_body_of_stored` does."""
    parts = ",".join(
        f'{{"id":{dumps(row_id)},"envelope":{envelope_json},"task":{dumps(task)}}}'
        for row_id, envelope_json, task in items
    )
    return f'{{"type":"batch","items":[{parts}]}}'.encode()


def batch_id(rows: Sequence[OutboxRow]) -> str:
    """The `webhook-id` of a batch: a digest of its rows' ids, so the same rows sent again
    carry the same id, and other rows another one. (Each item's own id is what a receiver
    deduplicates by.)"""
    digest = hashlib.sha256(",".join(row.public_id for row in rows).encode()).hexdigest()
    return f"batch_{digest[:32]}"


def _answer_limit(items: int) -> int:
    """The bytes of an answer read for `items` items (more is cut off, and ignored)."""
    return min(items * MAX_REQUEST_BYTES, MAX_ANSWER_BYTES)


def _entries_by_item(replies: Sequence[object], ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The reply entries that count, by item id, in the order given: an object naming an
    item of the batch not named before, with an envelope or a refusal (not both)."""
    known = set(ids)
    entries: dict[str, dict[str, Any]] = {}
    for entry in replies:
        if not isinstance(entry, dict):
            continue
        item = entry.get("id")
        if not isinstance(item, str) or item not in known or item in entries:
            continue
        if ("envelope" in entry) != ("refused" in entry):
            entries[item] = entry
    return entries


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
        target = await self._target(row, address)
        if isinstance(target, Attempt):
            return target
        if target.max_batch > 1:  # the endpoint takes batches: always the batch body
            [attempt] = await self._send_batch([(row, target)])
            return attempt
        url = target.endpoint_url
        assert url is not None  # `_target` checked it
        body = webhook_body_of_stored(target.envelope_json, row.payload.get("task"))
        answer = await self._post(url, row.public_id, body)
        if isinstance(answer, Attempt):
            return answer
        if classify_status(answer.status) != Verdict.OK:
            return await self._judge_failure(row.public_id, address, url, answer)
        try:
            note = await self._reply(answer) if answer.status == 200 else None
        except _ReplyNotProcessed as exc:
            # Not a refusal but our own failure (database busy, …): deliver again, and the
            # endpoint, deduplicating by webhook-id, answers with the same reply.
            return Attempt.retry(str(exc), answer.status)
        return Attempt.ok(answer.status, note)

    async def handle_batch(self, rows: Sequence[OutboxRow]) -> list[Attempt]:
        """One POST for the rows of a batch (a head and its followers); an attempt per row."""
        outcomes: dict[int, Attempt] = {}
        items: list[tuple[OutboxRow, DeliveryTarget]] = []
        for row in rows:
            target = await self._target(row, str(row.payload["agent"]))
            if isinstance(target, Attempt):
                outcomes[row.pk] = target  # settled alone; the others still go
            else:
                items.append((row, target))
        if items:
            for row, attempt in zip(
                (row for row, _ in items), await self._send_batch(items), strict=True
            ):
                outcomes[row.pk] = attempt
        return [outcomes[row.pk] for row in rows]

    async def _send_batch(self, items: Sequence[tuple[OutboxRow, DeliveryTarget]]) -> list[Attempt]:
        rows = [row for row, _ in items]
        url = items[0][1].endpoint_url
        assert url is not None  # `_target` checked it
        body = webhook_body_of_batch(
            [(row.public_id, found.envelope_json, row.payload.get("task")) for row, found in items]
        )
        webhook_id = batch_id(rows)
        answer = await self._post(url, webhook_id, body, len(rows))
        if isinstance(answer, Attempt):
            return [answer] * len(rows)
        if classify_status(answer.status) != Verdict.OK:
            address = str(rows[0].payload["agent"])
            failed = await self._judge_failure(webhook_id, address, url, answer)
            return [failed] * len(rows)
        try:
            notes = await self._replies(answer, rows) if answer.status == 200 else {}
        except _ReplyNotProcessed as exc:
            return [Attempt.retry(str(exc), answer.status)] * len(rows)
        return [notes.get(row.public_id) or Attempt.ok(answer.status) for row in rows]

    async def _target(self, row: OutboxRow, address: str) -> DeliveryTarget | Attempt:
        """What the row's delivery needs, or the final attempt when it can't be made."""
        target = row.target  # read in the transaction that claimed the row
        if target is None and isinstance(row.payload.get("envelope_pk"), int):
            target = await self._store.delivery_target(int(row.payload["envelope_pk"]), address)
        if target is None:
            return Attempt.final(f"{address} or the envelope is no longer stored")
        if not target.endpoint_url:
            return Attempt.final(f"{address} has no endpoint any more")
        if target.endpoint_status != "active":
            note = f": {target.endpoint_note}" if target.endpoint_note else ""
            return Attempt.final(f"the endpoint of {address} is {target.endpoint_status}{note}")
        return target

    async def _post(
        self, url: str, webhook_id: str, body: bytes, items: int = 1
    ) -> HttpAnswer | Attempt:
        """POST the signed body; the answer (read up to 256 KiB per item), or the attempt when
        none came."""
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_webhook(self._key, webhook_id, timestamp, body),
        }
        try:
            return await self._sender.post(url, body, headers, _answer_limit(items))
        except EndpointForbidden as exc:
            return Attempt.final(f"endpoint_forbidden: {exc.detail}")
        except DeliveryError as exc:
            return Attempt.retry(f"{exc.code}: {exc.detail}")

    async def _judge_failure(
        self, webhook_id: str, address: str, url: str, answer: HttpAnswer
    ) -> Attempt:
        """The attempt for an answer other than 2xx."""
        verdict = classify_status(answer.status)
        if verdict == Verdict.RETRY:
            retry_after = parse_retry_after(answer.headers.get("Retry-After"), self._clock.now())
            return Attempt.retry(f"HTTP {answer.status}", answer.status, retry_after)
        if verdict == Verdict.DISABLE:
            reason = (
                f"{url} answered 410 Gone to delivery {webhook_id} at"
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
            parsed = json_text.load(answer.body, "the answer")
        except JsonBeyondLimits as exc:  # JSON, but nothing the gateway would keep
            return f"reply ignored: {exc.detail}"[:1000]
        except InvalidJson:
            return None  # a 200 with some other body is a plain acknowledgement
        if not isinstance(parsed, dict) or "envelope" not in parsed:
            return None
        return await self._accept_reply(parsed["envelope"])

    async def _replies(self, answer: HttpAnswer, rows: Sequence[OutboxRow]) -> dict[str, Attempt]:
        """A batch's replies: the attempt of each row the answer says something about (the
        rest are plainly delivered). Each entry names an item of the batch, once, with an
        envelope or a refusal; other entries are ignored, with a note on the first item.
        Replies are accepted in the order given within each task; different tasks' replies
        side by side.

        Raises:
            _ReplyNotProcessed: a reply failed on our side; the whole batch goes again.
        """
        status = answer.status
        if not answer.body.strip():
            return {}
        if len(answer.body) > _answer_limit(len(rows)):
            ignored = (
                f"replies ignored: the answer is larger than {_answer_limit(len(rows))} bytes"
                " (256 KiB per item, 4 MiB in all)"
            )
            return {row.public_id: Attempt.ok(status, ignored) for row in rows}
        try:
            parsed = json_text.load(answer.body, "the answer")
        except JsonBeyondLimits as exc:  # JSON, but nothing the gateway would keep
            ignored = f"replies ignored: {exc.detail}"[:1000]
            return {row.public_id: Attempt.ok(status, ignored) for row in rows}
        except InvalidJson:
            return {}  # a 200 with some other body is a plain acknowledgement
        replies = parsed.get("replies") if isinstance(parsed, dict) else None
        if not isinstance(replies, list):
            return {}
        entries = _entries_by_item(replies, [row.public_id for row in rows])
        outcomes: dict[str, Attempt] = {}
        by_task: dict[object, list[tuple[str, object]]] = {}
        for row_id, entry in entries.items():
            if "refused" in entry:
                why = str(entry["refused"])[:500]
                outcomes[row_id] = Attempt.final(f"refused by the endpoint: {why}", status)
                continue
            envelope = entry["envelope"]
            task = envelope.get("task") if isinstance(envelope, dict) else None
            # A new task (no task id yet) has nothing to keep in order with.
            key: object = task if isinstance(task, str) else ("new", row_id)
            by_task.setdefault(key, []).append((row_id, envelope))
        results = await asyncio.gather(
            *(self._accept_in_order(line) for line in by_task.values()), return_exceptions=True
        )
        failed = [result for result in results if isinstance(result, BaseException)]
        if failed:
            raise failed[0]
        for line_notes in results:
            assert not isinstance(line_notes, BaseException)
            for answered, note in line_notes:
                outcomes[answered] = Attempt.ok(status, note)
        if len(entries) < len(replies):
            first = rows[0].public_id
            extra = (
                f"{len(replies) - len(entries)} reply entries ignored: each names an item of"
                " this batch, once, with an envelope or a refusal"
            )
            done = outcomes.get(first, Attempt.ok(status))
            outcomes[first] = replace(done, note=f"{done.note}; {extra}" if done.note else extra)
        return outcomes

    async def _accept_in_order(
        self, line: Sequence[tuple[str, object]]
    ) -> list[tuple[str, str | None]]:
        return [(row_id, await self._accept_reply(envelope)) for row_id, envelope in line]

    async def _accept_reply(self, envelope: object) -> str | None:
        """Accept one synchronous reply; a note on what happened.

        Raises:
            _ReplyNotProcessed: the gateway failed (not refused) while accepting it.
        """
        # The acceptance binds the reply's envelope and task ids to the log context, as for
        # a request; here they describe the reply only, not the deliveries this worker task
        # goes on with.
        with log_context_restored():
            try:
                accepted = await self._accept(envelope)
            except Unavailable as exc:
                # Not a refusal: the gateway cannot take it now (a task changing too fast).
                # The endpoint, deduplicating, answers the same reply when delivered again.
                raise _ReplyNotProcessed(
                    f"the reply could not be processed (Unavailable: {exc.detail});"
                    " delivering again"
                ) from exc
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
