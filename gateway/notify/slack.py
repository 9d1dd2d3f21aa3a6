"""The `slack` channel: a Slack-compatible incoming-webhook message (`text` and `blocks`).

The blocks give an operator what they need to decide whether to pick the task up: the
reason, the priority, the summary and a link to the task.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from gateway.notify import Notification, Result, headline, http_result

_SUMMARY_CHARS = 2800  # Slack caps a section's text at 3000 characters


def slack_message(event: dict[str, Any]) -> dict[str, Any]:
    """The incoming-webhook body for one event."""
    escalation = event.get("escalation", {})
    summary = str(escalation.get("summary", ""))[:_SUMMARY_CHARS]
    link = str(event.get("link", ""))
    fields = [
        f"*Reason:* {escalation.get('reason')}",
        f"*Priority:* {escalation.get('priority')}",
        f"*State:* {escalation.get('state')}",
        f"*Claimed by:* {escalation.get('claimed_by') or 'nobody yet'}",
    ]
    return {
        "text": headline(event),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline(event)[:150]}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": str(escalation.get("reason_text", ""))[:2900]},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": f"```{summary}```"}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the task"},
                        "url": link,
                    }
                ],
            },
        ],
    }


class SlackChannel:
    """POSTs one notification to a Slack incoming-webhook URL."""

    def __init__(self, url: str, session: aiohttp.ClientSession, *, timeout: float = 15.0) -> None:
        self._url = url
        self._session = session
        self._timeout = timeout

    async def send(self, notification: Notification) -> Result:
        body = json.dumps(slack_message(notification.event), ensure_ascii=False).encode()
        try:
            async with self._session.post(
                self._url,
                data=body,
                headers={"content-type": "application/json"},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                return http_result(response.status, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Result.retry(f"could not reach Slack: {type(exc).__name__} {exc}")
