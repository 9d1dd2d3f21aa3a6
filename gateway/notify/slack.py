"""The `slack` channel: a Slack-compatible incoming-webhook message (`text` and `blocks`).

The blocks give a person what they need to decide whether to act: for an escalation the
reason, the priority, the summary and a link to the task; for a disabled endpoint the agent,
its URL and why. The POST goes through the gateway's SSRF-safe `WebhookSender`, like
deliveries.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.clock import Clock, SystemClock
from gateway.delivery.errors import DeliveryError
from gateway.delivery.sender import WebhookSender
from gateway.delivery.worker import Attempt
from gateway.errors import EndpointForbidden
from gateway.notify import Notification, answered, digest, headline

_SUMMARY_CHARS = 2800  # Slack caps a section's text at 3000 characters


def slack_message(event: dict[str, Any]) -> dict[str, Any]:
    """The incoming-webhook body for one event."""
    laid_out = digest(event)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline(event)[:150]}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{label}:* {value}"} for label, value in laid_out.facts
            ],
        },
    ]
    if laid_out.text:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": laid_out.text[:2900]}})
    if laid_out.summary:
        summary = laid_out.summary[:_SUMMARY_CHARS]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{summary}```"}})
    blocks.append(
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": laid_out.link_label},
                    "url": laid_out.link,
                }
            ],
        }
    )
    return {"text": headline(event), "blocks": blocks}


class SlackChannel:
    """POSTs one notification to a Slack incoming-webhook URL."""

    def __init__(self, url: str, sender: WebhookSender, *, clock: Clock | None = None) -> None:
        self._url = url
        self._sender = sender
        self._clock = clock or SystemClock()

    async def send(self, notification: Notification) -> Attempt:
        body = json.dumps(slack_message(notification.event), ensure_ascii=False).encode()
        try:
            answer = await self._sender.post(self._url, body, {})
        except EndpointForbidden as exc:
            return Attempt.final(f"endpoint_forbidden: {exc.detail}")
        except DeliveryError as exc:
            return Attempt.retry(f"could not reach Slack: {exc.code}: {exc.detail}")
        return answered(answer, self._clock.now())
