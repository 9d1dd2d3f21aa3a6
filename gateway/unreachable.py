"""Escalating a task whose brand agent cannot be reached (PROTOCOL section 6, last rule).

The delivery worker calls `escalate_unreachable` when a delivery to a brand agent has used up
its retry budget. The escalation opens with reason `agent_unreachable` (urgent by default) in
one transaction with the task's control change, its event and the status envelopes; nothing
happens when the task has ended or humans already hold it.
"""

from __future__ import annotations

from datetime import datetime

from gateway.bus import Bus
from gateway.escalations import Effects, Escalator
from gateway.store.conversations import Batch, TaskChanged, TaskWrite
from gateway.store.escalations import EscalationRecord
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
        for pk, kind, _partition in committed.outbox:
            await bus.publish(f"work.{kind}", str(pk).encode())
        for subject in effects.wake:
            await bus.publish(subject, b"")
        return record
    raise TaskChanged()
