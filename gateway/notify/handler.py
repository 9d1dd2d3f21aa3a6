"""The outbox worker's handler for rows of kind `notification` (one event, one channel).

The generic outbox worker (gateway/delivery/worker.py) owns ordering (one row in flight per
channel, since the row's partition is the channel id), retries, backoff and give-up; it calls
`NotificationHandler.handle(row)` once per attempt. The row's payload is
`{"channel": <id>, "event": <event>}`. The handler looks the channel up at send time, so a
channel removed or disabled meanwhile gets nothing more, and disables the channel when its
receiver answers 410 Gone.
"""

from __future__ import annotations

from typing import Protocol

from gateway.clock import Clock
from gateway.delivery.schedule import Verdict
from gateway.delivery.sender import WebhookSender
from gateway.delivery.worker import Attempt
from gateway.notify import Notification
from gateway.notify.email import EmailChannel
from gateway.notify.slack import SlackChannel
from gateway.notify.webhook import WebhookChannel
from gateway.store.channels import ChannelRecord, Channels
from gateway.store.outbox_rows import OutboxRow
from identity.keys import PrivateKey

KIND = "notification"


class Sender(Protocol):
    async def send(self, notification: Notification) -> Attempt: ...


class NotificationHandler:
    """Sends one notification through its channel's sender (the worker's `Handler`)."""

    kind = KIND

    def __init__(
        self,
        *,
        channels: Channels,
        key: PrivateKey,
        sender: WebhookSender,
        clock: Clock,
        smtp_url: str | None,
        mail_from: str,
        timeout: float = 15.0,
    ) -> None:
        self._channels = channels
        self._key = key
        self._sender = sender
        self._clock = clock
        self._smtp_url = smtp_url
        self._mail_from = mail_from
        self._timeout = timeout

    async def handle(self, row: OutboxRow) -> Attempt:
        """One attempt at the notification in an outbox row."""
        channel = await self._channels.get(str(row.payload.get("channel")))
        if channel is None:
            return Attempt.final("the channel was removed")
        if channel.status != "active":
            return Attempt.final(f"the channel is {channel.status}")
        sender = self.sender(channel)
        if sender is None:
            return Attempt.final("email channels need SWITCHBOARD_SMTP_URL on the gateway")
        attempt = await sender.send(Notification(channel.id, dict(row.payload["event"])))
        if attempt.verdict == Verdict.DISABLE:
            await self._channels.disable(channel.id, attempt.error or "410 Gone")
        return attempt

    def sender(self, channel: ChannelRecord) -> Sender | None:
        if channel.kind == "webhook":
            return WebhookChannel(channel.target, self._key, self._sender, clock=self._clock)
        if channel.kind == "slack":
            return SlackChannel(channel.target, self._sender, clock=self._clock)
        if self._smtp_url is None:
            return None
        return EmailChannel(self._smtp_url, self._mail_from, channel.target, timeout=self._timeout)
