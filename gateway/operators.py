"""The operator's desk: adding operators, and working escalations (PROTOCOL section 7).

Every action is one transaction built from the pure decisions: `routing.claims.work` says
what the action does to the escalation (and refuses a second claim, naming the holder), and
`routing.tasks.transition` what it does to the task. The escalation is moved with a guarded
UPDATE from the (state, holder) it was read in, so of two operators claiming at once exactly
one wins; the other retries from a fresh read and gets `escalation_conflict` naming the
winner. Operators hold no keys: the gateway signs their envelopes with its own key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from gateway.bus import Bus
from gateway.clock import Clock, iso
from gateway.delivery.wakeup import wake_up
from gateway.errors import NotFound
from gateway.escalations import UNCLAIMED_TIMER, Effects, Escalator, turn_of
from gateway.notify.console import ConsoleStream
from gateway.store.channels import Channels
from gateway.store.conversations import Batch, TaskChanged, TaskWrite
from gateway.store.directory import Directory
from gateway.store.escalations import EscalationMoved, EscalationRecord, Escalations, MoveEscalation
from gateway.store.operators import OperatorRecord, Operators
from gateway.store.outcomes import Outcomes
from gateway.store.records import TaskRecord
from gateway.store.timers import DisarmTimer
from identity.address import parse_address
from identity.tokens import hash_token, new_opaque_token
from routing.claims import CLOSED, EscalationState, WorkAction, work
from routing.errors import EscalationConflict
from routing.escalation import count_turn
from routing.tasks import TERMINAL, Control, Side, State, transition

log = structlog.get_logger(__name__)

_ATTEMPTS = 8
_EVENT = {"claim": "escalation.claimed", "resolve": "escalation.resolved"}


@dataclass(frozen=True, slots=True)
class Reply:
    """What an operator says: `say` or `ask`, with text and optional parts."""

    text: str
    act: str = "say"
    parts: tuple[Mapping[str, Any], ...] = ()


class Desk:
    """Operators and the escalation workflow; handlers call it after authorising."""

    def __init__(
        self,
        *,
        escalator: Escalator,
        escalations: Escalations,
        operators: Operators,
        channels: Channels,
        outcomes: Outcomes,
        directory: Directory,
        console: ConsoleStream,
        bus: Bus,
        clock: Clock,
    ) -> None:
        self.escalator = escalator
        self.console = console
        self.escalations = escalations
        self.operators = operators
        self.channels = channels
        self.outcomes = outcomes
        self._directory = directory
        self._conversations = escalator.conversations
        self._bus = bus
        self._clock = clock

    async def add_operator(
        self,
        brand: str,
        handle: str,
        display_name: str,
        email: str | None,
        skills: Sequence[str],
    ) -> tuple[OperatorRecord, str]:
        """A new operator `handle@brand` and its token (returned once, stored hashed)."""
        address = str(parse_address(f"{handle}@{brand}"))
        token = new_opaque_token()
        record = await self.operators.add(
            address=address,
            brand=brand,
            handle=address.split("@", 1)[0],
            display_name=display_name or handle,
            email=email,
            skills=skills,
            token_hash=hash_token(token),
            now=self._clock.now(),
        )
        return record, token

    async def escalation(self, escalation_id: str, brand: str | None) -> EscalationRecord:
        """The escalation, if it belongs to `brand` (None: any brand, for the admin)."""
        found = await self.escalations.get(escalation_id)
        if found is None or (brand is not None and found.brand != brand):
            raise NotFound(f"no escalation {escalation_id} at your brand", id=escalation_id)
        return found

    async def detail(self, escalation: EscalationRecord) -> dict[str, Any]:
        """The escalation with its task's state and whole transcript."""
        task = await self._conversations.task(escalation.task_id)
        return {
            **escalation.view(),
            "task_state": task.state if task else None,
            "task_control": task.control if task else None,
            "initiator": task.initiator if task else None,
            "responder": task.responder if task else None,
            "transcript": await self._conversations.history(escalation.task_id),
        }

    async def claim(self, escalation_id: str, operator: str) -> EscalationRecord:
        return await self._work(escalation_id, operator, "claim")

    async def release(self, escalation_id: str, operator: str) -> EscalationRecord:
        return await self._work(escalation_id, operator, "release")

    async def reply(self, escalation_id: str, operator: str, reply: Reply) -> EscalationRecord:
        return await self._work(escalation_id, operator, "reply", reply=reply)

    async def resolve(self, escalation_id: str, operator: str, text: str) -> EscalationRecord:
        return await self._work(escalation_id, operator, "resolve", reply=Reply(text, "resolve"))

    async def handback(self, escalation_id: str, operator: str, note: str) -> EscalationRecord:
        return await self._work(escalation_id, operator, "handback", note=note)

    async def _work(
        self,
        escalation_id: str,
        operator: str,
        action: WorkAction,
        *,
        reply: Reply | None = None,
        note: str = "",
    ) -> EscalationRecord:
        for _ in range(_ATTEMPTS):
            now = self._clock.now()
            escalation = await self.escalation(escalation_id, None)
            was = EscalationState(escalation.state)
            repeat = was is EscalationState.CLAIMED and escalation.claimed_by == operator
            if action == "claim" and repeat:
                return escalation  # a retried claim: the same answer
            state, holder = work(was, escalation.claimed_by, action, operator)
            moved = replace(
                escalation,
                state=state.value,
                claimed_by=holder,
                updated_at=now,
                closed_at=now if state in CLOSED else None,
            )
            found = await self._conversations.task_version(escalation.task_id)
            if found is None:
                raise NotFound(f"the task of escalation {escalation.id} is gone")
            task, version = found
            effects = Effects(task=task)
            effects.writes.append(
                MoveEscalation(
                    escalation.id,
                    escalation.state,
                    escalation.claimed_by,
                    state.value,
                    holder,
                    state in CLOSED,
                )
            )
            write_task = False
            if action in ("reply", "resolve", "handback"):
                write_task = True
                await self._task_act(effects, moved, operator, action, reply, note, now)
            if action in _EVENT:
                effects.writes.append(DisarmTimer(UNCLAIMED_TIMER, escalation.id))
                self.escalator.event(effects, _EVENT[action], moved, now, by=operator)
            elif action == "handback":
                self.escalator.event(effects, "escalation.handed_back", moved, now, by=operator)
            batch = Batch(
                now=now,
                task=TaskWrite(effects.task, version, tuple(effects.events))
                if write_task
                else None,
                envelopes=effects.envelopes,
                extra=effects.writes,
            )
            try:
                committed = await self._conversations.commit(batch)
            except (EscalationMoved, TaskChanged):
                continue
            for agent, seq in committed.inbox:
                await self._bus.publish(f"inbox.{agent}", str(seq).encode())
            for pk, kind, partition in committed.outbox:
                await self._bus.publish(f"work.{kind}", wake_up(pk, partition))
            for subject in effects.wake:
                await self._bus.publish(subject, b"")
            log.info("escalation.worked", escalation=escalation.id, action=action, by=operator)
            return moved
        raise EscalationConflict(
            "this escalation is changing too fast to act on; read it again and retry",
            id=escalation_id,
        )

    async def _task_act(
        self,
        effects: Effects,
        escalation: EscalationRecord,
        operator: str,
        action: WorkAction,
        reply: Reply | None,
        note: str,
        now: datetime,
    ) -> None:
        task = effects.task
        act = reply.act if reply is not None else "handback"
        step = transition(State(task.state), Control(task.control), act, Side.OPERATOR)
        completed = step.state is State.COMPLETED
        updated = replace(
            task,
            state=str(step.state),
            control=str(step.control),
            updated_at=now,
            completed_at=now if completed else task.completed_at,
            resolved_by="human" if completed else task.resolved_by,
            turns_without_progress=(
                0
                if step.state in TERMINAL
                else count_turn(
                    task.turns_without_progress, side=Side.OPERATOR, act=act, effect=step.effect
                )
            ),
        )
        effects.task = updated
        if updated.state != task.state:
            effects.events.append(
                ("state", {"from": task.state, "to": updated.state, "act": act, "by": operator})
            )
        if updated.control != task.control:
            effects.events.append(
                ("control", {"from": task.control, "to": updated.control, "by": operator})
            )
        parties = await self.escalator.parties(task)
        if reply is not None:
            effects.envelopes.append(
                self.escalator.signed(
                    sender=operator,
                    to=task.initiator,
                    agent=parties.get(task.initiator),
                    task=updated,
                    act=act,
                    text=reply.text,
                    parts=reply.parts,
                    now=now,
                )
            )
        if step.effect == "ended":
            await self.escalator.ended(effects, parties, now, Side.OPERATOR)
            await self.escalator.announce_control(
                effects,
                parties,
                now,
                escalation,
                to=(task.responder,),
                text=f"{operator} resolved this task; it is completed.",
                extra={"event": "resolved", "by": operator},
            )
        elif step.effect == "handed_back":
            summary = await self._human_part(updated, escalation, note)
            await self.escalator.announce_control(
                effects,
                parties,
                now,
                escalation,
                to=(task.initiator,),
                text="The brand agent is taking this task up again.",
                extra={"event": "handed_back"},
            )
            await self.escalator.announce_control(
                effects,
                parties,
                now,
                escalation,
                to=(task.responder,),
                text=summary,
                extra={"event": "handed_back", "by": operator, "summary": summary, "note": note},
            )

    async def _human_part(self, task: TaskRecord, escalation: EscalationRecord, note: str) -> str:
        """What happened while the humans held the task, for the brand agent taking it back."""
        since = iso(escalation.created_at)
        gateway = self.escalator.gateway_address
        turns = [
            turn_of(task, body, gateway)
            for body in await self._conversations.history(task.id)
            if str(body.get("created_at", "")) >= since and body.get("from") != gateway
        ]
        text = f"Handed back by {escalation.claimed_by} after escalation {escalation.id}."
        if note:
            text += f" Note: {note}"
        return await self.escalator.summary(task, turns, "handed_back", text)
