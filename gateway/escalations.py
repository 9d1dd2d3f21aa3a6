"""What else an accepted act causes: escalations, status envelopes, timers, ledger entries.

`Escalator.after_envelope` is called by the acceptance pipeline once it has decided the task's
next state, and before anything is written. It asks the pure rules (`routing.escalation`,
`routing.outcomes`) and returns `Effects`: the task as it must be written (control `human`
when an escalation opens), the gateway's status envelopes for both parties, and the
`Batch.extra` writes (escalation row, its `escalation.opened` event with one notification
row per channel, timers, the outcome entry). The caller commits them with the envelope in
one transaction, so an escalation exists exactly when the message that caused it does.

The timers (`gateway.timers`) and the operator desk (`gateway.operators`) use the same pieces
(`open_escalation`, `status`, `event`, `ledger_entry`) for what they cause.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gateway.clock import iso
from gateway.config import Settings
from gateway.policies import PolicyCache
from gateway.store.conversations import Conversations, EnvelopeWrite, Write
from gateway.store.directory import Directory
from gateway.store.escalations import (
    AppendEvent,
    EscalationRecord,
    Escalations,
    MoveEscalation,
    OpenEscalation,
)
from gateway.store.outcomes import AppendOutcome
from gateway.store.records import AgentRecord, TaskRecord
from gateway.store.timers import ArmTimer, DisarmTimer
from identity.envelope import Envelope, parse, sign
from identity.ids import new_ulid
from identity.keys import PrivateKey
from routing.escalation import (
    EscalationRules,
    Trigger,
    abandon_deadline,
    evaluate_message,
    reply_deadline,
    unclaimed_deadline,
)
from routing.language import Language, TaskView, Turn
from routing.outcomes import outcome_for
from routing.policy import DEFAULT_POLICY
from routing.tasks import TERMINAL, Act, Control, Side, State

REPLY_TIMER = "reply"
ABANDON_TIMER = "abandon"
UNCLAIMED_TIMER = "unclaimed"
_TURNS_MADE = 5_000  # tasks whose language-layer turns are kept (see `Escalator.turns`)
_TURNS_PER_TASK_MADE = 200  # a longer task's turns are made again each time


@dataclass(slots=True)
class Effects:
    """What an act causes beyond its own envelope, ready for one `Batch`."""

    task: TaskRecord
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    envelopes: list[EnvelopeWrite] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    wake: list[str] = field(default_factory=list)
    escalation: EscalationRecord | None = None


class Escalator:
    """Decides and prepares the consequences of acts; writes nothing itself."""

    def __init__(
        self,
        *,
        settings: Settings,
        conversations: Conversations,
        escalations: Escalations,
        policies: PolicyCache,
        language: Language,
        gateway_key: PrivateKey,
        directory: Directory,
        new_id: Callable[[str], str],
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.conversations = conversations
        self.escalations = escalations
        self.policies = policies
        self.language = language
        self.gateway_key = gateway_key
        self.new_id = new_id
        # Task id -> (its parties, the bodies converted, their turns), see `turns`. The bodies
        # are kept so that their ids stay theirs while the turns are matched by them.
        self._turns_made: dict[str, tuple[tuple[str, str], list[dict[str, Any]], list[Turn]]] = {}

    async def rules(self, brand: str | None) -> EscalationRules:
        policy = await self.policies.for_brand(brand) if brand else None
        return (policy or DEFAULT_POLICY).escalation

    # The acceptance pipeline's hook ----------------------------------------------------------

    async def after_envelope(
        self,
        *,
        before: TaskRecord | None,
        after: TaskRecord,
        envelope: Envelope,
        side: Side,
        effect: str | None,
        parties: Mapping[str, AgentRecord],
        now: datetime,
        version: int | None = None,
    ) -> Effects:
        """The consequences of an accepted envelope (see the module doc); `version` is the
        version of `before` (its history may then come from memory)."""
        effects = Effects(task=after)
        rules = await self.rules(after.brand)
        history: list[Turn] | None = None
        trigger: Trigger | None = None
        before_id = None if before is None else before.id
        # Under human control before and after: a person holds the task. (A reopening moves
        # it from `human` back to the agent, and its message may escalate it again.)
        escalated = (
            before is not None
            and before.control == Control.HUMAN
            and after.control == Control.HUMAN
        )
        if after.brand is not None and (
            (side is Side.INITIATOR and envelope.act == Act.SAY) or envelope.act == Act.ESCALATE
        ):
            signals = None
            # The language layer is asked only when a rule would use its answer: one of its
            # rules is on, and the task is not with a person already (no message of a task
            # under human control escalates it again).
            if (
                side is Side.INITIATOR
                and not escalated
                and (rules.human_requested or rules.frustration)
            ):
                history = await self.turns(after, before_id, version)
                signals = await self.language.signals(envelope.text, history)
            trigger = evaluate_message(
                side=side,
                act=envelope.act,
                text=envelope.text,
                signals=signals,
                turns_without_progress=after.turns_without_progress,
                rules=rules,
                already_escalated=escalated,
            )
        if trigger is not None:
            if history is None:
                history = await self.turns(after, before_id, version)
            history = [*history, turn_of(after, dict(envelope.raw), self.gateway_address)]
            await self.open_escalation(effects, trigger, history, rules, parties, now)
        elif before is not None and before.control != after.control:
            await self.announce_control(effects, parties, now, None)
        self._arm_timers(effects, before, envelope, side, rules, now)
        if effect == "ended":
            await self.ended(effects, parties, now, side)
        elif effect == "reopened":
            effects.writes.append(self.ledger_entry(after, "reopened", None, now))
        return effects

    def _arm_timers(
        self,
        effects: Effects,
        before: TaskRecord | None,
        envelope: Envelope,
        side: Side,
        rules: EscalationRules,
        now: datetime,
    ) -> None:
        task = effects.task
        state = State(task.state)
        if state in TERMINAL or task.control == Control.HUMAN or side is not Side.INITIATOR:
            effects.writes.append(DisarmTimer(REPLY_TIMER, task.id))
        elif envelope.act == Act.SAY and task.brand is not None:
            deadline = reply_deadline(now, rules)
            if deadline is not None:
                effects.writes.append(
                    ArmTimer(REPLY_TIMER, task.id, deadline, {"asked_at": iso(now)})
                )
        if state is State.INPUT_REQUIRED:
            effects.writes.append(
                ArmTimer(ABANDON_TIMER, task.id, abandon_deadline(now, rules), {"since": iso(now)})
            )
        elif before is not None and before.state == State.INPUT_REQUIRED:
            effects.writes.append(DisarmTimer(ABANDON_TIMER, task.id))

    # Pieces shared with the timers and the operator desk ----------------------------------

    @property
    def gateway_address(self) -> str:
        return self.settings.gateway_address

    async def parties(self, task: TaskRecord) -> dict[str, AgentRecord]:
        """The task's two agents by address (for whether their endpoints get deliveries)."""
        found: dict[str, AgentRecord] = {}
        for address in (task.initiator, task.responder):
            agent = await self.directory.agent(address)
            if agent is not None:
                found[address] = agent
        return found

    async def turns(
        self, task: TaskRecord, task_id: str | None, version: int | None = None
    ) -> list[Turn]:
        """The task's stored envelopes as the language layer reads them (`version`: the
        task's version the caller planned on, see `Conversations.history`)."""
        if task_id is None:
            return []
        history = await self.conversations.history(task_id, version)
        # The turns made for this task last time are reused for the same bodies (remembered
        # bodies are never changed, only added to or, once the window is full, dropped from
        # its middle): a long conversation is not converted again in full for every message.
        parties = (task.initiator, task.responder)
        known = self._turns_made.pop(task_id, None)
        turns: list[Turn]
        if known is None or known[0] != parties:
            turns = [turn_of(task, body, self.gateway_address) for body in history]
        else:
            _, bodies, made = known
            count = len(made)
            if 0 < count <= len(history) and history[count - 1] is bodies[-1]:
                turns = made + [turn_of(task, b, self.gateway_address) for b in history[count:]]
            elif (
                count == len(history) > 2
                and history[0] is bodies[0]
                and history[1] is bodies[2]
                and history[-2] is bodies[-1]
            ):  # a full window moved on by one envelope (the usual step of a long task)
                new = turn_of(task, history[-1], self.gateway_address)
                turns = [made[0], *made[2:], new]
            else:  # the window moved on otherwise: match bodies by identity
                by_body = {id(body): turn for body, turn in zip(bodies, made, strict=True)}
                turns = [
                    by_body.get(id(body)) or turn_of(task, body, self.gateway_address)
                    for body in history
                ]
        if 0 < len(history) <= _TURNS_PER_TASK_MADE:
            if len(self._turns_made) >= _TURNS_MADE:
                del self._turns_made[next(iter(self._turns_made))]
            self._turns_made[task_id] = (parties, history, turns)
        return list(turns)

    async def summary(
        self, task: TaskRecord, turns: Sequence[Turn], reason: str | None, reason_text: str | None
    ) -> str:
        view = TaskView(
            id=task.id,
            initiator=task.initiator,
            responder=task.responder,
            state=task.state,
            turns=tuple(turns),
            reason=reason,
            reason_text=reason_text,
        )
        return await self.language.summarise(view)

    async def open_escalation(
        self,
        effects: Effects,
        trigger: Trigger,
        turns: Sequence[Turn],
        rules: EscalationRules,
        parties: Mapping[str, AgentRecord],
        now: datetime,
    ) -> EscalationRecord:
        """Hand the task to the brand's humans: escalation row, event, timer, status envelopes."""
        task = replace(effects.task, control=str(Control.HUMAN), escalated=True, updated_at=now)
        assert task.brand is not None, "only brand tasks escalate"
        record = EscalationRecord(
            id=self.new_id("esc"),
            task_id=task.id,
            brand=task.brand,
            state="open",
            reason=trigger.reason,
            reason_text=trigger.text,
            rule=trigger.rule,
            priority=trigger.priority,
            summary=await self.summary(task, turns, trigger.reason, trigger.text),
            claimed_by=None,
            created_at=now,
            updated_at=now,
            closed_at=None,
        )
        effects.task = task
        effects.escalation = record
        effects.events.append(
            (
                "escalated",
                {"escalation": record.id, "reason": trigger.reason, "rule": trigger.rule},
            )
        )
        effects.writes.append(OpenEscalation(record))
        effects.writes.append(ArmTimer(UNCLAIMED_TIMER, record.id, unclaimed_deadline(now, rules)))
        self.event(effects, "escalation.opened", record, now)
        await self.announce_control(effects, parties, now, record)
        return record

    async def announce_control(
        self,
        effects: Effects,
        parties: Mapping[str, AgentRecord],
        now: datetime,
        escalation: EscalationRecord | None,
        *,
        to: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> None:
        """Status envelopes telling the parties the task's state and who holds it now."""
        task = effects.task
        if escalation is None:
            escalation = await self.escalations.live_for_task(task.id)
        for party in to if to is not None else (task.initiator, task.responder):
            effects.envelopes.append(
                self.status(task, parties.get(party), party, now, escalation, extra, text)
            )

    def status(
        self,
        task: TaskRecord,
        agent: AgentRecord | None,
        to: str,
        now: datetime,
        escalation: EscalationRecord | None,
        extra: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> EnvelopeWrite:
        """One status envelope from `gateway@<domain>`, signed with the gateway key."""
        data: dict[str, Any] = {"state": task.state, "control": task.control}
        if escalation is not None:
            data["escalation"] = escalation.id
        data.update(extra or {})
        return self.signed(
            sender=self.gateway_address,
            to=to,
            agent=agent,
            task=task,
            act="status",
            text=text or _status_text(task, escalation),
            parts=[{"kind": "data", "data": data}],
            now=now,
        )

    def signed(
        self,
        *,
        sender: str,
        to: str,
        agent: AgentRecord | None,
        task: TaskRecord,
        act: str,
        text: str,
        parts: Sequence[Mapping[str, Any]],
        now: datetime,
        reply_to: str | None = None,
    ) -> EnvelopeWrite:
        """An envelope the gateway signs (its own, or an operator's), for `to`'s inbox."""
        unsigned = {
            "v": "switchboard/1",
            "id": new_ulid(now),
            "from": sender,
            "to": to,
            "task": task.id,
            "reply_to": reply_to,
            "act": act,
            "created_at": iso(now),
            "expires_at": None,
            "body": {"text": text, "parts": [dict(part) for part in parts]},
            "meta": {},
        }
        signed = sign(unsigned, self.gateway_key)
        parsed = parse(signed)
        deliver = (to,) if agent is not None and agent.endpoint_status == "active" else ()
        return EnvelopeWrite(
            sender=sender,
            envelope_id=parsed.id,
            recipient=to,
            task_id=task.id,
            act=act,
            digest=parsed.digest,
            body=signed,
            answer=None,
            inbox_for=(to,),
            deliver_to=deliver,
        )

    def event(
        self,
        effects: Effects,
        kind: str,
        escalation: EscalationRecord,
        now: datetime,
        **extra: Any,
    ) -> None:
        """An escalation event for the brand's stream and channels (written with `effects`)."""
        task = effects.task
        event_id = self.new_id("evt")
        body = {
            "id": event_id,
            "type": kind,
            "at": iso(now),
            "brand": escalation.brand,
            "escalation": escalation.view(),
            "task": task.brief(),
            "link": f"{self.settings.base_url.rstrip('/')}/v1/tasks/{task.id}",
            **extra,
        }
        effects.writes.append(
            AppendEvent(escalation.brand, event_id, kind, escalation.id, body, self.new_id)
        )
        effects.wake.append(f"escalations.{escalation.brand}")

    def ledger_entry(
        self, task: TaskRecord, outcome: str, resolved_by: str | None, now: datetime
    ) -> AppendOutcome:
        assert task.brand is not None
        return AppendOutcome(
            brand=task.brand,
            task=task.id,
            agent=task.responder,
            outcome=outcome,
            resolved_by=resolved_by,
            escalated=task.escalated,
            confirmed=task.confirmed,
            at=now,
            key=self.gateway_key,
        )

    async def ended(
        self,
        effects: Effects,
        parties: Mapping[str, AgentRecord],
        now: datetime,
        side: Side,
        *,
        abandoned: bool = False,
    ) -> None:
        """The task ended: its ledger entry, and any live escalation closed with it."""
        task = effects.task
        if task.brand is None:
            return
        if abandoned:
            kind, by = "abandoned", None
        else:
            outcome, who = outcome_for(State(task.state), task.resolved_by == "human")
            kind, by = outcome.value, who
        effects.writes.append(self.ledger_entry(task, kind, by, now))
        effects.writes.append(DisarmTimer(ABANDON_TIMER, task.id))
        effects.writes.append(DisarmTimer(REPLY_TIMER, task.id))
        live = await self.escalations.live_for_task(task.id)
        if live is not None and side is not Side.OPERATOR:
            closed = replace(live, state="resolved", closed_at=now, updated_at=now)
            effects.writes.append(
                MoveEscalation(
                    live.id, live.state, live.claimed_by, "resolved", live.claimed_by, True
                )
            )
            effects.writes.append(DisarmTimer(UNCLAIMED_TIMER, live.id))
            self.event(effects, "escalation.resolved", closed, now, by=side.value, outcome=kind)


def turn_of(task: TaskRecord, body: Mapping[str, Any], gateway: str) -> Turn:
    """One stored envelope as a language-layer `Turn`, its side told by its sender."""
    sender = str(body.get("from", ""))
    if sender == task.initiator:
        side = "initiator"
    elif sender == task.responder:
        side = "responder"
    elif sender == gateway:
        side = "gateway"
    else:
        side = "operator"
    content = body.get("body")
    content = content if isinstance(content, Mapping) else {}
    parts = content.get("parts") or []
    data = tuple(
        part["data"]
        for part in parts
        if isinstance(part, Mapping) and part.get("kind") == "data" and "data" in part
    )
    return Turn(
        sender=sender,
        side=side,
        act=str(body.get("act", "say")),
        text=str(content.get("text", "")),
        data=data,
    )


def _status_text(task: TaskRecord, escalation: EscalationRecord | None) -> str:
    if task.control == Control.HUMAN and escalation is not None:
        return (
            f"A person at {escalation.brand} is taking over this task "
            f"(reason: {escalation.reason})."
        )
    if task.control == Control.HUMAN:
        return f"This task is {task.state}; the brand's people hold it."
    return f"This task is {task.state}; the brand agent holds it."
