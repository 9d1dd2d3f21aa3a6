"""What happens when a brand agent's endpoint cannot be reached (PROTOCOL section 6).

Two hooks of the delivery side, wired in `gateway.app`:

- `on_delivery_gave_up` (the outbox worker's `on_gave_up`): a delivery to a brand agent used
  up its retry budget. The task records an `agent_unreachable` event, and
  `escalate_unreachable` opens an escalation with reason `agent_unreachable` (urgent by
  default) in one transaction with the task's control change, its event and the status
  envelopes; nothing more happens when the task has ended or humans already hold it.
- `on_endpoint_disabled` (the deliverer's `on_disabled`): the endpoint answered 410 Gone and
  was switched off. The brand's event stream records an `endpoint.disabled` event, which goes
  to the brand's notification channels like escalation events, so its admins hear of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from gateway.bus import Bus
from gateway.clock import Clock, iso
from gateway.delivery.deliverer import KIND as DELIVERY
from gateway.delivery.wakeup import wake_up
from gateway.delivery.worker import GaveUp
from gateway.escalations import Effects, Escalator
from gateway.notify import ENDPOINT_DISABLED
from gateway.store.conversations import Batch, TaskChanged, TaskWrite
from gateway.store.escalations import AppendEvent, EscalationRecord
from gateway.store.outbox_rows import OutboxRow
from routing.escalation import unreachable
from routing.tasks import TERMINAL, Control, State

_ATTEMPTS = 5


async def escalate_unreachable(
    escalator: Escalator,
    bus: Bus,
    *,
    task_id: str,
    agent: str,
    attempts: int,
    last_error: str,
    now: datetime,
) -> EscalationRecord | None:
    """Open an `agent_unreachable` escalation on the task, if it still needs one."""
    for _ in range(_ATTEMPTS):
        found = await escalator.conversations.task_version(task_id)
        if found is None:
            return None
        task, version = found
        if State(task.state) in TERMINAL or task.brand is None:
            return None
        rules = await escalator.rules(task.brand)
        trigger = unreachable(
            agent=agent,
            attempts=attempts,
            last_error=last_error,
            rules=rules,
            already_escalated=task.control == Control.HUMAN,
        )
        if trigger is None:
            return None
        effects = Effects(task=task)
        turns = await escalator.turns(task, task.id)
        parties = await escalator.parties(task)
        record = await escalator.open_escalation(effects, trigger, turns, rules, parties, now)
        effects.events.insert(
            0, ("control", {"from": task.control, "to": "human", "by": "gateway"})
        )
        batch = Batch(
            now=now,
            task=TaskWrite(effects.task, version, tuple(effects.events)),
            envelopes=effects.envelopes,
            extra=effects.writes,
        )
        try:
            committed = await escalator.conversations.commit(batch)
        except TaskChanged:
            continue
        for address, seq in committed.inbox:
            await bus.publish(f"inbox.{address}", str(seq).encode())
        for pk, kind, partition in committed.outbox:
            await bus.publish(f"work.{kind}", wake_up(pk, partition))
        for subject in effects.wake:
            await bus.publish(subject, b"")
        return record
    raise TaskChanged()


def on_delivery_gave_up(escalator: Escalator, bus: Bus, clock: Clock, record: GaveUp) -> GaveUp:
    """The worker's give-up hook: `record` the task event, then escalate a brand agent's task."""

    async def gave_up(row: OutboxRow, reason: str) -> None:
        await record(row, reason)
        if row.kind != DELIVERY or row.task_id is None:
            return
        agent = await escalator.directory.agent(str(row.payload.get("agent")))
        if agent is None or agent.kind != "brand":
            return
        await escalate_unreachable(
            escalator,
            bus,
            task_id=row.task_id,
            agent=agent.address,
            attempts=row.attempts + 1,
            last_error=reason,
            now=clock.now(),
        )

    return gave_up


def on_endpoint_disabled(
    escalator: Escalator, bus: Bus, clock: Clock
) -> Callable[[str, str], Awaitable[None]]:
    """The deliverer's 410 hook: an `endpoint.disabled` event for the agent's brand."""

    async def disabled(address: str, reason: str) -> None:
        agent = await escalator.directory.agent(address)
        if agent is None or agent.brand is None:
            return  # a personal agent's endpoint: its inbox still fills, nobody to tell
        now = clock.now()
        event_id = escalator.new_id("evt")
        base = escalator.settings.base_url.rstrip("/")
        body = {
            "id": event_id,
            "type": ENDPOINT_DISABLED,
            "at": iso(now),
            "brand": agent.brand,
            "agent": {
                "address": agent.address,
                "endpoint": agent.endpoint_url,
                "status": "disabled",
                "note": reason,
            },
            "link": f"{base}/v1/agents/{agent.address}",
        }
        # Not about an escalation: the event's escalation id is empty.
        event = AppendEvent(agent.brand, event_id, ENDPOINT_DISABLED, "", body, escalator.new_id)
        committed = await escalator.conversations.commit(Batch(now=now, extra=[event]))
        for pk, kind, partition in committed.outbox:
            await bus.publish(f"work.{kind}", wake_up(pk, partition))
        await bus.publish(f"escalations.{agent.brand}", b"")

    return disabled
