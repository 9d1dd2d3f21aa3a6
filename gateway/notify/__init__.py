"""Notification channels for escalation events (PROTOCOL section 7).

A channel sender is a small class with one coroutine, `send(notification) -> Result`, that
makes exactly one attempt; retrying, ordering and give-up belong to the outbox worker that
calls it (the `NotificationHandler` in `gateway.notify.handler` is the worker's entry point).
The event's `id` is stable across retries, so a receiver can drop repeats:
`webhook-id` for webhooks, `Message-ID` for email.

    Result.ok()                 delivered (2xx, or the mail server took it)
    Result.retry(detail, after) try again later (408, 429, 5xx, timeouts, refused connections)
    Result.final(detail)        never going to work for this event (other 4xx, bad address)
    Result.disable(detail)      the receiver is gone (410): stop using the channel
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["ok", "retry", "final", "disable"]
EVENT_KINDS = (
    "escalation.opened",
    "escalation.unclaimed",
    "escalation.claimed",
    "escalation.resolved",
    "escalation.handed_back",
)


@dataclass(frozen=True, slots=True)
class Result:
    """What one attempt came to, for the worker to act on."""

    status: Status
    detail: str = ""
    retry_after: float | None = None

    @classmethod
    def ok(cls, detail: str = "") -> Result:
        return cls("ok", detail)

    @classmethod
    def retry(cls, detail: str, after: float | None = None) -> Result:
        return cls("retry", detail, after)

    @classmethod
    def final(cls, detail: str) -> Result:
        return cls("final", detail)

    @classmethod
    def disable(cls, detail: str) -> Result:
        return cls("disable", detail)


@dataclass(frozen=True, slots=True)
class Notification:
    """One event for one channel: the outbox row's payload."""

    channel: str
    event: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.event["id"])

    @property
    def kind(self) -> str:
        return str(self.event["type"])


def http_result(status: int, retry_after: str | None) -> Result:
    """The protocol's delivery rules for an HTTP answer (section 6)."""
    if 200 <= status < 300:
        return Result.ok(f"HTTP {status}")
    if status == 410:
        return Result.disable("the receiver answered 410 Gone")
    if status in (408, 429) or status >= 500:
        return Result.retry(f"HTTP {status}", _seconds(retry_after))
    return Result.final(f"the receiver refused it with HTTP {status}")


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def headline(event: dict[str, Any]) -> str:
    """One line about an event, for chat messages and mail subjects."""
    escalation = event.get("escalation", {})
    what = str(event.get("type", "escalation")).removeprefix("escalation.").replace("_", " ")
    return (
        f"[{escalation.get('priority', 'normal')}] Escalation {what} at {event.get('brand')}: "
        f"{escalation.get('reason', '?')} (task {event.get('task', {}).get('id', '?')})"
    )
