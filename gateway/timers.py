"""Durable timers at work: unclaimed escalations, silent brand agents, abandoned tasks.

Timers are rows (`gateway.store.timers`), armed in the transaction of the act that sets them,
so they survive restarts. `TimerRunner.run_due(now)` leases each due timer, re-checks the
facts (a timer may fire late, or after what it waited for happened) and commits the effects
together with the timer's `fired_at` mark: each timer fires exactly once, whichever replica
runs it and however often it restarts. Tests drive `run_due` with a `ManualClock`; the app
runs `run_forever` in the background.

    unclaimed  key: escalation id  still open after the brand's limit -> escalation.unclaimed
    reply      key: task id        the brand agent did not answer in time -> escalation `stalled`
    abandon    key: task id        idle in input-required -> task canceled, ledger `abandoned`
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime

import structlog

from gateway.bus import Bus
from gateway.clock import Clock
from gateway.delivery.wakeup import wake_up
from gateway.escalations import ABANDON_TIMER, REPLY_TIMER, UNCLAIMED_TIMER, Effects, Escalator
from gateway.store.conversations import Batch, Committed, TaskChanged, TaskWrite
from gateway.store.directory import Directory
from gateway.store.records import TaskRecord
from gateway.store.timers import ArmTimer, FireTimer, TimerLost, TimerRecord, Timers
from routing.escalation import abandon_deadline, evaluate_timeout
from routing.tasks import TERMINAL, Control, Side, State

log = structlog.get_logger(__name__)

_ATTEMPTS = 5


class TimerRunner:
    """Fires due timers; safe to run on every replica at once."""

    def __init__(
        self,
        *,
        timers: Timers,
        escalator: Escalator,
        directory: Directory,
        bus: Bus,
        clock: Clock,
        lease_s: float = 60.0,
    ) -> None:
        self.timers = timers
        self._escalator = escalator
        self._conversations = escalator.conversations
        self._directory = directory
        self._bus = bus
        self._clock = clock
        self._lease_s = lease_s

    async def run_due(self, now: datetime | None = None) -> list[str]:
        """Fire every timer due by `now`; returns `kind:key` of those that had an effect."""
        now = now or self._clock.now()
        acted: list[str] = []
        for timer in await self.timers.due(now):
            lease = await self.timers.lease(timer, now, self._lease_s)
            if lease is None:
                continue
            try:
                if await self._fire(timer, lease, now):
                    acted.append(f"{timer.kind}:{timer.key}")
            except TimerLost:
                continue
            except Exception:
                log.exception("timer.failed", kind=timer.kind, key=timer.key)
        return acted

    async def run_forever(self, interval: float) -> None:
        """The background loop of `gateway.app`."""
        while True:
            try:
                await self.run_due()
            except Exception:
                log.exception("timers.loop_failed")
            await asyncio.sleep(interval)

    async def _fire(self, timer: TimerRecord, lease: str, now: datetime) -> bool:
        fire = FireTimer(timer.pk, lease)
        for _ in range(_ATTEMPTS):
            batch, effects = await self._plan(timer, now)
            batch.extra.insert(0, fire)
            try:
                committed = await self._conversations.commit(batch)
            except TaskChanged:
                continue
            await self._publish(committed, effects)
            if effects is not None:
                log.info("timer.fired", kind=timer.kind, key=timer.key)
            return effects is not None
        raise TimerLost(str(timer.pk))

    async def _plan(self, timer: TimerRecord, now: datetime) -> tuple[Batch, Effects | None]:
        if timer.kind == UNCLAIMED_TIMER:
            return await self._unclaimed(timer, now)
        found = await self._conversations.task_version(timer.key)
        if found is None:
            return Batch(now=now), None
        task, version = found
        if timer.kind == REPLY_TIMER:
            effects = await self._silent_agent(timer, task, now)
        elif timer.kind == ABANDON_TIMER:
            effects = await self._abandoned(task, now)
            if effects is None and task.state == State.INPUT_REQUIRED:
                # The brand lengthened its limit since the timer was set: wait for the new one.
                rules = await self._escalator.rules(task.brand)
                later = ArmTimer(ABANDON_TIMER, task.id, abandon_deadline(task.updated_at, rules))
                return Batch(now=now, extra=[later]), None
        else:
            log.warning("timer.unknown_kind", kind=timer.kind)
            return Batch(now=now), None
        if effects is None:
            return Batch(now=now), None
        batch = Batch(
            now=now,
            task=TaskWrite(effects.task, version, tuple(effects.events)),
            envelopes=effects.envelopes,
            extra=effects.writes,
        )
        return batch, effects

    async def _unclaimed(self, timer: TimerRecord, now: datetime) -> tuple[Batch, Effects | None]:
        escalation = await self._escalator.escalations.get(timer.key)
        if escalation is None or escalation.state != "open":
            return Batch(now=now), None
        task = await self._conversations.task(escalation.task_id)
        if task is None:
            return Batch(now=now), None
        effects = Effects(task=task)
        waited = int((now - escalation.created_at).total_seconds())
        self._escalator.event(effects, "escalation.unclaimed", escalation, now, open_for_s=waited)
        return Batch(now=now, extra=effects.writes), effects

    async def _silent_agent(
        self, timer: TimerRecord, task: TaskRecord, now: datetime
    ) -> Effects | None:
        rules = await self._escalator.rules(task.brand)
        asked_at = datetime.fromisoformat(str(timer.data.get("asked_at")))
        replies = [
            datetime.fromisoformat(str(body["created_at"]))
            for body in await self._conversations.history(task.id)
            if body.get("from") == task.responder
        ]
        trigger = evaluate_timeout(
            initiator_at=asked_at,
            agent_reply_at=max(replies) if replies else None,
            now=now,
            rules=rules,
            already_escalated=task.control == Control.HUMAN,
            task_open=State(task.state) not in TERMINAL,
        )
        if trigger is None:
            return None
        effects = Effects(task=task)
        turns = await self._escalator.turns(task, task.id)
        parties = await self._escalator.parties(task)
        await self._escalator.open_escalation(effects, trigger, turns, rules, parties, now)
        effects.events.insert(
            0, ("control", {"from": task.control, "to": "human", "by": "gateway"})
        )
        return effects

    async def _abandoned(self, task: TaskRecord, now: datetime) -> Effects | None:
        rules = await self._escalator.rules(task.brand)
        if task.state != State.INPUT_REQUIRED or abandon_deadline(task.updated_at, rules) > now:
            return None
        ended = replace(task, state=str(State.CANCELED), updated_at=now, turns_without_progress=0)
        idle_days = (now - task.updated_at).total_seconds() / 86400
        effects = Effects(
            task=ended,
            events=[
                (
                    "state",
                    {"from": task.state, "to": ended.state, "act": "abandon", "by": "gateway"},
                ),
                ("abandoned", {"idle_s": int((now - task.updated_at).total_seconds())}),
            ],
        )
        parties = await self._escalator.parties(task)
        await self._escalator.ended(effects, parties, now, Side.GATEWAY, abandoned=True)
        await self._escalator.announce_control(
            effects,
            parties,
            now,
            None,
            text=(
                f"This task waited {idle_days:.1f} days for the initiator's answer and was "
                "closed as abandoned; start a new task to continue."
            ),
            extra={"event": "abandoned"},
        )
        return effects

    async def _publish(self, committed: Committed, effects: Effects | None) -> None:
        for agent, seq in committed.inbox:
            await self._bus.publish(f"inbox.{agent}", str(seq).encode())
        for pk, kind, partition in committed.outbox:
            await self._bus.publish(f"work.{kind}", wake_up(pk, partition))
        for subject in effects.wake if effects else ():
            await self._bus.publish(subject, b"")
