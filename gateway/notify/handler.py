"""The outbox worker's handler for rows of kind `notification` (one event, one channel).

The generic outbox worker (gateway/delivery) owns retries, backoff and give-up; it calls
`NotificationHandler.handle(payload)` once per attempt with the row's payload
`{"channel": <id>, "event": <event>}` and acts on the `Result`. The handler looks the
channel up at send time, so a channel removed or disabled meanwhile gets nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp

from gateway.clock import Clock
from gateway.notify import Notification, Result
from gateway.notify.email import EmailChannel
from gateway.notify.slack import SlackChannel
from gateway.notify.webhook import WebhookChannel
from gateway.store.channels import ChannelRecord, Channels
from identity.keys import PrivateKey

KIND = "notification"


class Sender(Protocol):
    async def send(self, notification: Notification) -> Result: ...


class NotificationHandler:
    """Sends one notification through its channel's sender."""

    kind = KIND

    def __init__(
        self,
        *,
        channels: Channels,
        key: PrivateKey,
        session: aiohttp.ClientSession,
        clock: Clock,
        smtp_url: str | None,
        mail_from: str,
        timeout: float = 15.0,
    ) -> None:
        self._channels = channels
        self._key = key
        self._session = session
        self._clock = clock
        self._smtp_url = smtp_url
        self._mail_from = mail_from
        self._timeout = timeout

    async def handle(self, payload: Mapping[str, Any]) -> Result:
        """One attempt at the notification in an outbox row's payload."""
        channel = await self._channels.get(str(payload.get("channel")))
        if channel is None:
            return Result.final("the channel was removed")
        if channel.status != "active":
            return Result.final(f"the channel is {channel.status}")
        sender = self.sender(channel)
        if sender is None:
            return Result.final("email channels need SWITCHBOARD_SMTP_URL on the gateway")
        result = await sender.send(Notification(channel.id, dict(payload["event"])))
        if result.status == "disable":
            await self._channels.disable(channel.id, result.detail)
        return result

    def sender(self, channel: ChannelRecord) -> Sender | None:
        if channel.kind == "webhook":
            return WebhookChannel(
                channel.target, self._key, self._session, timeout=self._timeout, clock=self._clock
            )
        if channel.kind == "slack":
            return SlackChannel(channel.target, self._session, timeout=self._timeout)
        if self._smtp_url is None:
            return None
        return EmailChannel(self._smtp_url, self._mail_from, channel.target, timeout=self._timeout)
