"""Notification channels for a brand's events (PROTOCOL sections 6 and 7).

A channel sender is a small class with one coroutine, `send(notification) -> Attempt`, that
makes exactly one attempt; retrying, ordering and give-up belong to the generic outbox worker
(`gateway.delivery.worker`), whose `Attempt` it returns, so notifications and deliveries share
one retry schedule and one reading of HTTP answers (`gateway.delivery.schedule`). The
`NotificationHandler` in `gateway.notify.handler` is the worker's entry point for rows of kind
`notification`. The event's `id` is stable across retries, so a receiver can drop repeats:
`webhook-id` for webhooks, `Message-ID` for email.

Events are escalation events (`escalation.*`, with the escalation in `escalation`) and
`endpoint.disabled` (a brand agent's endpoint answered 410 Gone; the agent is in `agent`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.delivery.schedule import Verdict, classify_status, parse_retry_after
from gateway.delivery.sender import HttpAnswer
from gateway.delivery.worker import Attempt

ESCALATION_KINDS = (
    "escalation.opened",
    "escalation.unclaimed",
    "escalation.claimed",
    "escalation.resolved",
    "escalation.handed_back",
)
ENDPOINT_DISABLED = "endpoint.disabled"
EVENT_KINDS = (*ESCALATION_KINDS, ENDPOINT_DISABLED)


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


def answered(answer: HttpAnswer, now: datetime) -> Attempt:
    """What a receiver's HTTP answer means, by the delivery rules (PROTOCOL section 6)."""
    verdict = classify_status(answer.status)
    if verdict == Verdict.OK:
        return Attempt.ok(answer.status)
    if verdict == Verdict.RETRY:
        retry_after = parse_retry_after(answer.headers.get("Retry-After"), now)
        return Attempt.retry(f"HTTP {answer.status}", answer.status, retry_after)
    if verdict == Verdict.DISABLE:
        return Attempt.disable("the receiver answered 410 Gone", answer.status)
    return Attempt.final(f"the receiver refused it with HTTP {answer.status}", answer.status)


def headline(event: dict[str, Any]) -> str:
    """One line about an event, for chat messages and mail subjects."""
    if event.get("type") == ENDPOINT_DISABLED:
        agent = event.get("agent", {})
        return (
            f"[urgent] Endpoint disabled at {event.get('brand')}: {agent.get('address', '?')}"
            " no longer gets deliveries (410 Gone)"
        )
    escalation = event.get("escalation", {})
    what = str(event.get("type", "escalation")).removeprefix("escalation.").replace("_", " ")
    return (
        f"[{escalation.get('priority', 'normal')}] Escalation {what} at {event.get('brand')}: "
        f"{escalation.get('reason', '?')} (task {event.get('task', {}).get('id', '?')})"
    )


@dataclass(frozen=True, slots=True)
class Digest:
    """An event as the people-facing channels (Slack, email) lay it out."""

    facts: tuple[tuple[str, str], ...]
    text: str
    summary: str
    link: str
    link_label: str


def digest(event: dict[str, Any]) -> Digest:
    """The facts, text and link a person needs to act on the event."""
    link = str(event.get("link", ""))
    if event.get("type") == ENDPOINT_DISABLED:
        agent = event.get("agent", {})
        return Digest(
            facts=(
                ("Agent", str(agent.get("address"))),
                ("Endpoint", str(agent.get("endpoint"))),
                ("Status", "disabled"),
            ),
            text=str(agent.get("note", "")),
            summary="",
            link=link,
            link_label="Open the agent",
        )
    escalation = event.get("escalation", {})
    return Digest(
        facts=(
            ("Reason", f"{escalation.get('reason')}"),
            ("Priority", f"{escalation.get('priority')}"),
            ("State", f"{escalation.get('state')}"),
            ("Claimed by", f"{escalation.get('claimed_by') or 'nobody yet'}"),
        ),
        text=str(escalation.get("reason_text", "")),
        summary=str(escalation.get("summary", "")),
        link=link,
        link_label="Open the task",
    )
