"""The `webhook` channel: the event as JSON, signed like deliveries (Standard Webhooks v1a)."""

from __future__ import annotations

import json

import aiohttp

from gateway.clock import Clock, SystemClock
from gateway.notify import Notification, Result, http_result
from identity.keys import PrivateKey
from identity.webhook import sign_webhook


class WebhookChannel:
    """POSTs one notification to a URL; `webhook-id` is the event id (stable across retries)."""

    def __init__(
        self,
        url: str,
        key: PrivateKey,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 15.0,
        clock: Clock | None = None,
    ) -> None:
        self._url = url
        self._key = key
        self._session = session
        self._timeout = timeout
        self._clock = clock or SystemClock()

    async def send(self, notification: Notification) -> Result:
        body = json.dumps(notification.event, ensure_ascii=False, separators=(",", ":")).encode()
        stamp = int(self._clock.now().timestamp())
        headers = {
            "content-type": "application/json",
            "webhook-id": notification.id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_webhook(self._key, notification.id, stamp, body),
        }
        try:
            async with self._session.post(
                self._url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                return http_result(response.status, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Result.retry(f"could not reach {self._url}: {type(exc).__name__} {exc}")
