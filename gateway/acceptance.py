"""The acceptance pipeline: PROTOCOL section 3's rules, in order, then one durable commit.

Every envelope enters here, whether POSTed to `/v1/messages` or returned by an endpoint as a
synchronous reply. The decisions are the pure cores' (`identity` verifies, `routing` routes,
authorises and moves the task); this module fetches what they need, asks them in the
protocol's order, and writes the result in one transaction. A refused envelope raises before
anything is written, so it leaves no trace but the log line the HTTP layer writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from gateway.bus import Bus
from gateway.clock import Clock
from gateway.delivery.wakeup import wake_up
from gateway.errors import ReplayConflict, Unavailable, UnknownSender
from gateway.escalations import Effects, Escalator
from gateway.inbox_wakeups import InboxWakeups
from gateway.keyring import KeyCache
from gateway.metrics import Metrics
from gateway.policies import PolicyCache
from gateway.signatures import InlineChecks, SignatureChecks
from gateway.store.conversations import (
    Batch,
    Conversations,
    EnvelopeWrite,
    ReplayCollision,
    TaskChanged,
    TaskWrite,
)
from gateway.store.directory import Directory
from gateway.store.records import AgentRecord, StoredEnvelope, TaskRecord, dumps
from identity.address import Address
from identity.envelope import (
    Envelope,
    bad_signature,
    check_clock,
    check_size,
    parse,
    parse_json,
    signing_key,
)
from routing.errors import RateLimited, RoutingError, TaskNotFound, UnknownRecipient
from routing.escalation import count_turn
from routing.language import Candidate, Language
from routing.policy import Party, check_contact
from routing.ratelimit import Bucket, bucket_scope, take
from routing.router import Route, choose_recipient
from routing.tasks import TERMINAL, Control, Side, State, transition

log = structlog.get_logger(__name__)

_COMMIT_ATTEMPTS = 8
_TASKS_REMEMBERED = 20_000
_BUCKETS_SWEPT_FROM = 10_000  # rate buckets kept before the first sweep of full ones
_BUCKET_REFILL_S = 61.0  # an emptied bucket is full again after a minute (burst = rate)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to an accepted envelope (`duplicate` when it repeats an earlier one)."""

    answer: dict[str, Any]
    duplicate: bool
    envelope: Envelope | None = None
    task: TaskRecord | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What accepting one envelope will do, decided before anything is written."""

    task: TaskRecord
    expected_version: int | None
    recipient: AgentRecord
    events: tuple[tuple[str, dict[str, Any]], ...]
    effect: str | None
    before: TaskRecord | None = None
    side: Side = Side.INITIATOR
    effects: Effects | None = None
    charged: tuple[str, str] | None = None  # the rate bucket a token was taken from


class Acceptance:
    """Accepts envelopes. One instance per gateway process; safe for concurrent use."""

    def __init__(
        self,
        *,
        directory: Directory,
        conversations: Conversations,
        language: Language,
        policies: PolicyCache,
        keys: KeyCache,
        bus: Bus,
        clock: Clock,
        metrics: Metrics,
        new_id: Callable[[str], str],
        rate_per_minute: int,
        personal_to_personal: bool,
        escalator: Escalator | None = None,
        signatures: SignatureChecks | None = None,
    ) -> None:
        self._directory = directory
        self._conversations = conversations
        self._language = language
        self._policies = policies
        self._keys = keys
        self._bus = bus
        self._wakeups = InboxWakeups(bus)
        self._clock = clock
        self._metrics = metrics
        self._new_id = new_id
        self._rate_per_minute = rate_per_minute
        self._personal_to_personal = personal_to_personal
        self._buckets: dict[tuple[str, str], Bucket] = {}  # by (sender, `bucket_scope`)
        self._buckets_swept_at = _BUCKETS_SWEPT_FROM
        self._task_locks: dict[str, list[Any]] = {}  # task id -> [lock, holders]
        self._escalator = escalator
        self._signatures = signatures if signatures is not None else InlineChecks()
        # Recently written tasks with their version, so an envelope in a live conversation
        # needs no read of its task (insertion order: least recently written first).
        self._tasks: dict[str, tuple[TaskRecord, int]] = {}

    async def accept_bytes(self, body: bytes) -> Accepted:
        """Rules 1-2 on the raw request body, then the rest."""
        check_size(body)
        parsed = parse_json(body)
        return await self.accept_object(parsed, text=body.decode())

    async def accept_object(self, obj: object, *, text: str | None = None) -> Accepted:
        """Rules 2-7 on a parsed JSON value, then the commit (`text`: the JSON text `obj`
        was parsed from, stored as it is rather than serialised again). Without `text` (a
        synchronous reply), rule 1 applies to the compact JSON text, which is stored."""
        if text is None:
            text = dumps(obj)
            check_size(text.encode())
        envelope = parse(obj)
        structlog.contextvars.bind_contextvars(envelope_id=envelope.id, task_id=envelope.task)
        now = self._clock.now()

        sender = await self._directory.agent(str(envelope.sender))
        if sender is None or sender.status != "active":
            raise UnknownSender(
                f"{envelope.sender} is not a registered agent: register it with POST /v1/agents"
                " before sending",
                address=str(envelope.sender),
            )
        # Rule 4 in identity's order: the key, the signature (checked where the gateway
        # checks signatures, see gateway.signatures), the clock.
        public, signature = signing_key(envelope, self._keys.states(sender))
        if not await self._signatures.check(public, signature, envelope.canonical):
            raise bad_signature(envelope)
        check_clock(envelope, now)

        # Rule 5 (replay) costs no read on the normal path: the envelope table's unique
        # (sender, id) refuses a repeat inside the commit (ReplayCollision below). Only when
        # rules 6-7 would refuse is the replay memory read first, since rule 5 comes before
        # them: an exact resend of an accepted envelope is a duplicate even if the task has
        # moved on since, and the same id with other content is a replay conflict.

        # Envelopes on one task are planned and committed one at a time in this process, so
        # they do not race each other into the version guard; the guard and the retries
        # below remain for races between replicas.
        charged: tuple[str, str] | None = None
        fresh = False  # read the task from the database rather than this process's memory
        async with self._task_turn(envelope.task):
            for attempt in range(_COMMIT_ATTEMPTS):
                # Only the first attempt takes a rate token: a retry after losing a race on
                # the task is the same envelope, not another one.
                remembered = not fresh and envelope.task in self._tasks
                try:
                    plan = await self._with_effects(
                        await self._plan(envelope, sender, now, charge=attempt == 0, fresh=fresh),
                        envelope,
                        sender,
                        now,
                    )
                except RoutingError as refusal:
                    if remembered and not isinstance(refusal, RateLimited):
                        # The remembered task may be behind another writer's change (an
                        # operator, a timer, another replica): never refuse on it unread.
                        fresh = True
                        continue
                    prior = await self._conversations.by_replay_key(
                        str(envelope.sender), envelope.id
                    )
                    if prior is not None:
                        return self._repeat(prior, envelope)
                    raise
                charged = charged or plan.charged
                # A new task's id exists only from the plan on: bind it for the lines after.
                structlog.contextvars.bind_contextvars(task_id=plan.task.id)
                try:
                    accepted = await self._commit(envelope, plan, now, text)
                except TaskChanged:
                    self._tasks.pop(plan.task.id, None)
                    fresh = True
                    await asyncio.sleep(0.001 * (attempt + 1))
                    continue
                except ReplayCollision:
                    self._refund(charged)  # a duplicate is not another envelope
                    prior = await self._conversations.by_replay_key(
                        str(envelope.sender), envelope.id
                    )
                    assert prior is not None
                    return self._repeat(prior, envelope)
                self._remember(plan.task, (plan.expected_version or 0) + 1)
                return accepted
        raise Unavailable(
            f"task {envelope.task} is changing too fast to accept this envelope now; send the"
            " same envelope again in a moment (the retry is idempotent)",
            task=envelope.task,
        )

    def _task_turn(self, task_id: str | None) -> _TaskTurn:
        """Hold the task's turn (nothing to hold for a new task)."""
        return _TaskTurn(self._task_locks, task_id)

    # Rule 5 ---------------------------------------------------------------------------------

    def _repeat(self, prior: StoredEnvelope, envelope: Envelope) -> Accepted:
        if prior.digest != envelope.digest or prior.answer is None:
            raise ReplayConflict(
                f"the envelope id {envelope.id} from {envelope.sender} was accepted before with"
                " other content; give every new envelope a new id",
                id=envelope.id,
            )
        return Accepted(answer={**prior.answer, "duplicate": True}, duplicate=True)

    # Rules 6-7 ------------------------------------------------------------------------------

    async def _task_version(self, task_id: str, fresh: bool) -> tuple[TaskRecord, int] | None:
        """The task and its version: from memory unless `fresh`, else read (and remembered).

        A remembered task may be behind a change made elsewhere; the commit's version guard
        catches that (TaskChanged: read again, plan again), and a refusal is only ever made
        on a task read from the database (see `accept_object`).
        """
        if not fresh:
            found = self._tasks.get(task_id)
            if found is not None:
                return found
        found = await self._conversations.task_version(task_id)
        if found is not None:
            self._remember(*found)
        return found

    def _remember(self, task: TaskRecord, version: int) -> None:
        known = self._tasks.pop(task.id, None)
        if known is not None and known[1] > version:
            task, version = known  # a read older than a commit made meanwhile
        elif len(self._tasks) >= _TASKS_REMEMBERED:
            del self._tasks[next(iter(self._tasks))]  # the least recently written
        self._tasks[task.id] = (task, version)

    async def _plan(
        self,
        envelope: Envelope,
        sender: AgentRecord,
        now: datetime,
        *,
        charge: bool = True,
        fresh: bool = False,
    ) -> _Plan:
        task_and_version = await self._task_version(envelope.task, fresh) if envelope.task else None
        if task_and_version is not None and sender.address not in (
            task_and_version[0].initiator,
            task_and_version[0].responder,
        ):
            task_and_version = None  # not a party: as if the task did not exist
        if envelope.task is None:
            recipient, route = await self._route_new(envelope)
        else:
            recipient = await self._resolve_in_task(envelope, task_and_version)
            route = None

        task_initiator = task_and_version[0].initiator if task_and_version else None
        policy = await self._policies.for_brand(recipient.brand) if recipient.brand else None
        check_contact(
            _party(sender),
            _party(recipient),
            policy,
            task_initiator,
            personal_to_personal=self._personal_to_personal,
        )
        rate = (policy.contact.rate_per_minute if policy else None) or self._rate_per_minute
        charged = None
        if charge:
            charged = self._take_token(
                str(envelope.sender),
                bucket_scope(sender.kind, recipient.address, recipient.brand),
                rate,
                now,
            )

        if envelope.task is None:
            assert route is not None
            step = transition(None, Control.AGENT, envelope.act, Side.INITIATOR, now=now)
            task = TaskRecord(
                id=self._new_id("tsk"),
                initiator=sender.address,
                responder=recipient.address,
                brand=recipient.brand,
                state=str(step.state),
                control=str(step.control),
                created_at=now,
                updated_at=now,
                completed_at=None,
                escalated=False,
                confirmed=False,
                resolved_by=None,
                turns_without_progress=1,
                route_why=route.why,
            )
            events = (
                (
                    "opened",
                    {"by": sender.address, "responder": recipient.address, "why": route.why},
                ),
            )
            return _Plan(task, None, recipient, events, step.effect, charged=charged)

        if task_and_version is None:
            raise TaskNotFound(
                f"no task {envelope.task} that {envelope.sender} is a party of; start a new task"
                " with task null",
                task=envelope.task,
            )
        task, version = task_and_version
        side = Side.INITIATOR if sender.address == task.initiator else Side.RESPONDER
        step = transition(
            State(task.state),
            Control(task.control),
            envelope.act,
            side,
            completed_at=task.completed_at,
            now=now,
        )
        return self._planned_update(task, version, recipient, step, side, envelope, now, charged)

    def _planned_update(
        self,
        task: TaskRecord,
        version: int,
        recipient: AgentRecord,
        step: Any,
        side: Side,
        envelope: Envelope,
        now: datetime,
        charged: tuple[str, str] | None,
    ) -> _Plan:
        state, control = str(step.state), str(step.control)
        events: list[tuple[str, dict[str, Any]]] = []
        if state != task.state:
            events.append(
                ("state", {"from": task.state, "to": state, "act": envelope.act, "by": side.value})
            )
        if control != task.control:
            events.append(("control", {"from": task.control, "to": control, "by": side.value}))
        if step.effect:
            events.append((str(step.effect), {"by": side.value, "envelope": envelope.id}))
        completed_now = state == State.COMPLETED and task.state != State.COMPLETED
        reopened = step.effect == "reopened"
        # Every member spelled out rather than `dataclasses.replace`, which costs about twice
        # as much on this path (it runs once per envelope in a task).
        updated = TaskRecord(
            id=task.id,
            initiator=task.initiator,
            responder=task.responder,
            brand=task.brand,
            state=state,
            control=control,
            created_at=task.created_at,
            updated_at=now,
            completed_at=now if completed_now else (None if reopened else task.completed_at),
            escalated=task.escalated,
            confirmed=task.confirmed or step.effect == "confirmed",
            resolved_by=(
                ("agent" if side == Side.RESPONDER else task.resolved_by)
                if completed_now
                else (None if reopened else task.resolved_by)
            ),
            turns_without_progress=(
                0
                if State(state) in TERMINAL
                else count_turn(
                    task.turns_without_progress, side=side, act=envelope.act, effect=step.effect
                )
            ),
            route_why=task.route_why,
        )
        return _Plan(
            updated, version, recipient, tuple(events), step.effect, task, side, charged=charged
        )

    async def _with_effects(
        self, plan: _Plan, envelope: Envelope, sender: AgentRecord, now: datetime
    ) -> _Plan:
        """Add what the act causes beyond its envelope (escalation, status, timers, ledger)."""
        if self._escalator is None:
            return plan
        effects = await self._escalator.after_envelope(
            before=plan.before,
            after=plan.task,
            envelope=envelope,
            side=plan.side,
            effect=plan.effect,
            parties={sender.address: sender, plan.recipient.address: plan.recipient},
            now=now,
            version=plan.expected_version,
        )
        return _Plan(
            task=effects.task,
            expected_version=plan.expected_version,
            recipient=plan.recipient,
            events=plan.events + tuple(effects.events),
            effect=plan.effect,
            before=plan.before,
            side=plan.side,
            effects=effects,
            charged=plan.charged,
        )

    async def _route_new(self, envelope: Envelope) -> tuple[AgentRecord, Route]:
        if isinstance(envelope.to, Address):
            recipient = await self._agent_or_404(str(envelope.to))
            route = choose_recipient(str(envelope.to), envelope.text, (), None)
            return recipient, route
        agents = await self._directory.brand_agents(envelope.to)
        if not agents:
            raise UnknownRecipient(
                f"no brand agent is registered under {envelope.to}; check the domain, or write"
                " to an agent's full address",
                to=envelope.to,
            )
        candidates = [Candidate(a.address, a.description, a.skills, a.display_name) for a in agents]
        choice = await self._language.route(envelope.text, candidates)
        route = choose_recipient(envelope.to, envelope.text, candidates, choice)
        chosen = next(a for a in agents if a.address == route.address)
        return chosen, route

    async def _resolve_in_task(
        self, envelope: Envelope, found: tuple[TaskRecord, int] | None
    ) -> AgentRecord:
        to = str(envelope.to)
        if found is None:
            # Rule 6 still comes first: the recipient must at least exist.
            if isinstance(envelope.to, Address):
                return await self._agent_or_404(to)
            agents = await self._directory.brand_agents(to)
            if not agents:
                raise UnknownRecipient(f"no brand agent is registered under {to}", to=to)
            return agents[0]
        task = found[0]
        other = task.responder if str(envelope.sender) == task.initiator else task.initiator
        other_domain = other.split("@", 1)[1]
        if to != other and not (to == other_domain and str(envelope.sender) == task.initiator):
            raise UnknownRecipient(
                f"in task {task.id} your counterpart is {other}: address the envelope to it",
                to=to,
                expected=other,
            )
        return await self._agent_or_404(other)

    async def _agent_or_404(self, address: str) -> AgentRecord:
        agent = await self._directory.agent(address)
        if agent is None or agent.status != "active":
            raise UnknownRecipient(
                f"{address} is not a registered agent; look it up with GET /v1/directory",
                to=address,
            )
        return agent

    def _take_token(self, sender: str, scope: str, rate: int, now: datetime) -> tuple[str, str]:
        key = (sender, scope)
        at = now.timestamp()
        bucket = self._buckets.get(key)
        if bucket is None and len(self._buckets) >= self._buckets_swept_at:
            self._sweep_buckets(at)
        bucket, retry_after = take(bucket, at, rate)
        self._buckets[key] = bucket
        if retry_after > 0:
            raise RateLimited(
                f"{sender} may send {rate} envelopes a minute here; retry after"
                f" {retry_after:.1f} s",
                retry_after=retry_after,
            )
        return key

    def _sweep_buckets(self, at: float) -> None:
        """Forget the buckets nobody took from for a minute and a second: the burst is the
        per-minute rate, so such a bucket has refilled and is the same as none (after exactly
        a minute, a rounding error short). The next sweep comes when the map has doubled, so
        sweeps cost O(1) per new bucket."""
        horizon = at - _BUCKET_REFILL_S
        self._buckets = {
            key: bucket for key, bucket in self._buckets.items() if bucket.updated > horizon
        }
        self._buckets_swept_at = max(_BUCKETS_SWEPT_FROM, 2 * len(self._buckets))

    def _refund(self, key: tuple[str, str] | None) -> None:
        """Give back the token a duplicate took (the bucket caps itself at its next take)."""
        bucket = self._buckets.get(key) if key is not None else None
        if key is not None and bucket is not None:
            self._buckets[key] = Bucket(bucket.tokens + 1.0, bucket.updated)

    # The commit -----------------------------------------------------------------------------

    async def _commit(
        self, envelope: Envelope, plan: _Plan, now: datetime, text: str | None
    ) -> Accepted:
        task = plan.task
        answer = {
            "id": envelope.id,
            "task": task.id,
            "task_state": task.state,
            "control": task.control,
            "duplicate": False,
        }
        recipient = plan.recipient
        deliver = (recipient.address,) if recipient.endpoint_status == "active" else ()
        batch = Batch(
            now=now,
            task=TaskWrite(task, plan.expected_version, plan.events),
            envelopes=[
                EnvelopeWrite(
                    sender=str(envelope.sender),
                    envelope_id=envelope.id,
                    recipient=recipient.address,
                    task_id=task.id,
                    act=envelope.act,
                    digest=envelope.digest,
                    body=dict(envelope.raw),
                    answer=answer,
                    inbox_for=(recipient.address,),
                    deliver_to=deliver,
                    text=text,
                )
            ],
        )
        if plan.effects is not None:
            batch.envelopes.extend(plan.effects.envelopes)
            batch.extra.extend(plan.effects.writes)
        committed = await self._conversations.commit(batch)
        structlog.contextvars.bind_contextvars(task_id=task.id)
        self._metrics.accepted(envelope.act)
        try:
            # One `inbox.<agent>` per agent for the whole group commit, not one per envelope.
            await self._wakeups.publish(committed.inbox)
            for pk, kind, partition in committed.outbox:
                await self._bus.publish(f"work.{kind}", wake_up(pk, partition), msg_id=str(pk))
            for subject in plan.effects.wake if plan.effects else ():
                await self._bus.publish(subject, b"")
        except Exception as exc:
            # Committed is accepted: a lost wake-up is repeated by the outbox worker's sweep.
            log.warning("bus.publish_failed", error=repr(exc))
        log.info(
            "envelope.accepted",
            act=envelope.act,
            sender=str(envelope.sender),
            recipient=recipient.address,
            task_state=task.state,
        )
        return Accepted(answer=answer, duplicate=False, envelope=envelope, task=task)


class _TaskTurn:
    """The turn of one task among this process's acceptances: its lock, shared in `locks`
    with a count of holders and waiters, and dropped when the last one leaves. A class
    rather than an `asynccontextmanager`, whose generator machinery cost more than the lock
    on every envelope in a task."""

    __slots__ = ("_entry", "_locks", "_task_id")

    def __init__(self, locks: dict[str, list[Any]], task_id: str | None) -> None:
        self._locks = locks
        self._task_id = task_id
        self._entry: list[Any] | None = None

    async def __aenter__(self) -> None:
        if self._task_id is None:
            return
        entry = self._entry = self._locks.setdefault(self._task_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            await entry[0].acquire()
        except BaseException:  # cancelled while waiting: it never held the lock
            self._leave(entry)
            raise

    async def __aexit__(self, *_exc: object) -> None:
        entry = self._entry
        if entry is not None:
            entry[0].release()
            self._leave(entry)

    def _leave(self, entry: list[Any]) -> None:
        entry[1] -= 1
        if entry[1] == 0:
            del self._locks[self._task_id]  # type: ignore[arg-type]


def _party(agent: AgentRecord) -> Party:
    return Party(address=agent.address, kind=agent.kind, brand=agent.brand)  # type: ignore[arg-type]
