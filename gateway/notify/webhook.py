"""The `webhook` channel: the event as JSON, signed like deliveries (Standard Webhooks v1a).

The POST goes through the gateway's SSRF-safe `WebhookSender` (one checked lookup, the checked
address pinned, no redirects), and its answer is read by the delivery rules.
"""

from __future__ import annotations

import json

from gateway.clock import Clock, SystemClock
from gateway.delivery.errors import DeliveryError
from gateway.delivery.sender import WebhookSender
from gateway.delivery.worker import Attempt
from gateway.errors import EndpointForbidden
from gateway.notify import Notification, answered
from identity.keys import PrivateKey
from identity.webhook import sign_webhook


class WebhookChannel:
    """POSTs one notification to a URL; `webhook-id` is the event id (stable across retries)."""

    def __init__(
        self, url: str, key: PrivateKey, sender: WebhookSender, *, clock: Clock | None = None
    ) -> None:
        self._url = url
        self._key = key
        self._sender = sender
        self._clock = clock or SystemClock()

    async def send(self, notification: Notification) -> Attempt:
        body = json.dumps(notification.event, ensure_ascii=False, separators=(",", ":")).encode()
        stamp = int(self._clock.now().timestamp())
        headers = {
            "webhook-id": notification.id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_webhook(self._key, notification.id, stamp, body),
        }
        try:
            answer = await self._sender.post(self._url, body, headers)
        except EndpointForbidden as exc:
            return Attempt.final(f"endpoint_forbidden: {exc.detail}")
        except DeliveryError as exc:
            return Attempt.retry(f"could not reach {self._url}: {exc.code}: {exc.detail}")
        return answered(answer, self._clock.now())
