"""The outbox worker: after-commit work of any kind, in order per partition, retried.

Rows in the `outbox` table carry a `kind` ("delivery", "notification", …) and a `partition`
(for deliveries, the recipient's address). A `Handler` registered for the kind does one
attempt and says what came of it (`Attempt`); the worker records the attempt, then marks the
row delivered, failed, or due again later by the retry schedule (`Backoff`).

Order and fairness: at most one row per (kind, partition) is in flight, and the next one
starts only when the previous attempt is over, has settled its row (delivered, or failed for
good; for a delivery, after its synchronous reply was accepted) and that is written down, so
a partition's rows leave in the order they were committed: if the record fails or the
process dies before it commits, the row is attempted again before any row after it. The next
row is leased ahead (`OutboxStore.claim_after`, or in the previous record's transaction), so
no claim of its own is needed; a row left pending for a retry gives back the row leased ahead,
which waits behind it. Partitions run concurrently (bounded by `concurrency`), so a slow
endpoint only delays itself.

Waking: the bus's `work.<kind>` messages (published after each commit, naming the row and
its partition, `gateway.delivery.wakeup`) start the row's partition at once, with no scan and
no read: a running drain of the partition is told to look once more before it stops, or one
transaction claims the partition's head and a drain starts with it. (A wake-up naming only
the row finds the partition from it: claimed in one statement when no partition of the kind
is being drained here, else by one indexed read.) A drain claims the partition's next row in
the same transaction that records the previous attempt (the row after the one leased ahead),
and each claim also reads what a delivery needs (envelope and endpoint), so a busy partition
costs one transaction per attempt. A sweep every `sweep_s` finds anything else that is due
(retries whose time has come, rows a crashed process left, rows another replica's wake-up
went to, a wake-up that named no row).

Batches: a claim of a delivery row whose endpoint takes ordered batches (`max_batch` > 1)
also leases the rows right behind it, up to that many in all (`OutboxRow.followers`). The
drain treats the batch as one row: one attempt (`BatchHandler.handle_batch`), one record
transaction for all its rows, and the next claim starts after its last row. The rows of a
retried batch are all due again when the first of them still pending is, so they go together
again. After an attempt that disabled the target (410), the rows leased ahead are given back
and claimed afresh, reading the target again, so nothing more is sent to it.

Rows are claimed with a lease (`OutboxStore.claim_head`), so replicas never work the same row
at once, and nor do two claimers in this process: a lease is never taken again by its own
holder. A row leased ahead waits for one attempt before its own, so its lease is twice as
long. A lease left by a killed process expires, or is released at once by the same replica
when it restarts (the lease owner id is stable per replica). Delivery is therefore at least
once, and a repeat carries the same row id (the `webhook-id`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import structlog

from gateway.bus import Bus, Subscription
from gateway.clock import Clock
from gateway.delivery.schedule import Backoff, Verdict
from gateway.delivery.wakeup import read_wake_up
from gateway.store.outbox import OutboxStore
from gateway.store.outbox_rows import DELIVERED, FAILED, PENDING, AttemptWrite, OutboxRow

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt came to. Build with the class methods."""

    verdict: Verdict
    status: int | None = None
    error: str | None = None
    note: str | None = None
    retry_after: float | None = None

    @classmethod
    def ok(cls, status: int | None = None, note: str | None = None) -> Attempt:
        """Done: the row is delivered."""
        return cls(Verdict.OK, status, None, note)

    @classmethod
    def retry(
        cls, error: str, status: int | None = None, retry_after: float | None = None
    ) -> Attempt:
        """Try again by the schedule (not before `retry_after` seconds, when given)."""
        return cls(Verdict.RETRY, status, error, None, retry_after)

    @classmethod
    def final(cls, reason: str, status: int | None = None) -> Attempt:
        """Failed for good: no retry."""
        return cls(Verdict.FINAL, status, reason)

    @classmethod
    def disable(cls, reason: str, status: int | None = None) -> Attempt:
        """Failed for good, and the target is gone (the handler has disabled it)."""
        return cls(Verdict.DISABLE, status, reason)


class Handler(Protocol):
    """Does one attempt for a row of its kind. Raising counts as a retryable failure."""

    async def handle(self, row: OutboxRow) -> Attempt: ...


@runtime_checkable
class BatchHandler(Handler, Protocol):
    """A handler that also takes a row with its followers (`OutboxRow.batch`) in one attempt,
    and says what came of it for each row, in the same order."""

    async def handle_batch(self, rows: Sequence[OutboxRow]) -> Sequence[Attempt]: ...


GaveUp = Callable[[OutboxRow, str], Awaitable[None]]


def _batches(row: OutboxRow) -> bool:
    """Whether the row's endpoint takes batches. Its next batch is not leased ahead: the
    record's transaction leases it, with everything that queued until then."""
    return row.target is not None and row.target.max_batch > 1


class OutboxWorker:
    """Works the outbox for the registered kinds until stopped."""

    def __init__(
        self,
        *,
        store: OutboxStore,
        bus: Bus,
        clock: Clock,
        backoff: Backoff,
        owner: str,
        handlers: Mapping[str, Handler] | None = None,
        concurrency: int = 64,
        sweep_s: float = 1.0,
        lease_s: float = 60.0,
        on_gave_up: GaveUp | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._backoff = backoff
        self._owner = owner
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._concurrency = concurrency
        self._sweep_s = sweep_s
        self._lease_s = lease_s
        self.on_gave_up = on_gave_up
        self._draw = draw
        self._wake = asyncio.Event()
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Wake-ups counted per running partition: a drain that finds nothing more looks once
        # again if the count moved since its last look (the row may have committed after it).
        self._woken: dict[tuple[str, str], int] = {}
        # A row claimed by a wake-up for a partition whose drain was already running here: the
        # drain takes it before it stops.
        self._handoff: dict[tuple[str, str], OutboxRow] = {}
        self._saturated = False
        self._main: asyncio.Task[None] | None = None
        self._subscriptions: list[Subscription] = []
        self._timers: set[asyncio.TimerHandle] = set()

    def register(self, kind: str, handler: Handler) -> None:
        """Add a handler for `kind` (before `start`)."""
        if self._main is not None:
            raise RuntimeError("register handlers before the worker starts")
        self._handlers[kind] = handler

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    async def start(self) -> None:
        try:  # what this replica held when it last stopped or was killed is free again
            await self._store.release(self._owner)
        except Exception:
            log.warning("outbox.release_failed", owner=self._owner)
        for kind in self._handlers:
            self._subscriptions.append(await self._bus.consume(f"work.{kind}", self._on_work))
        self._main = asyncio.create_task(self._loop(), name="outbox-worker")
        self.wake()

    async def stop(self) -> None:
        """Stop taking work, cancel what is in flight, and release this replica's leases."""
        for subscription in self._subscriptions:
            await subscription.stop()
        self._subscriptions.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        tasks = [t for t in (self._main, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._main = None
        self._running.clear()
        try:
            await self._store.release(self._owner)
        except Exception:
            log.warning("outbox.release_failed", owner=self._owner)

    def wake(self) -> None:
        """Look for due work now."""
        self._wake.set()

    async def _on_work(self, subject: str, data: bytes) -> None:
        kind = subject.rsplit(".", 1)[-1]
        named = read_wake_up(data)
        if named is None:
            self.wake()  # a wake-up that names no row: look everywhere
            return
        pk, partition = named
        try:
            if partition is not None:
                await self._on_partition(kind, partition)
            elif any(running == kind for running, _ in self._running):
                found = await self._store.partition_of(pk)
                if found is not None and found[0] == kind:
                    self._start(kind, found[1])
            elif len(self._running) >= self._concurrency:
                self._saturated = True
            else:
                row = await self._store.claim_woken(
                    kind, pk, self._owner, self._clock.now(), self._lease_s
                )
                if row is not None:
                    self._start(kind, row.partition, row)
        except Exception:
            log.warning("outbox.wake_failed", kind=kind, row=pk)
            self.wake()

    async def _on_partition(self, kind: str, partition: str) -> None:
        """A row of `partition` was committed: tell its running drain to look again, or claim
        its head and start one (no read of the row: the wake-up named the partition)."""
        if (kind, partition) in self._running:
            self._start(kind, partition)
        elif len(self._running) >= self._concurrency:
            self._saturated = True
        else:
            row = await self._claim(kind, partition)
            if row is not None:
                self._start(kind, partition, row)

    def _start(self, kind: str, partition: str, claimed: OutboxRow | None = None) -> bool:
        """Drain the partition (from `claimed`, its head, already leased), or tell its running
        drain to look again (handing it `claimed`); False when no drain can start now."""
        key = (kind, partition)
        if key in self._running:
            self._woken[key] += 1
            if claimed is not None:
                self._handoff[key] = claimed
            return True
        if len(self._running) >= self._concurrency and claimed is None:
            self._saturated = True
            return False
        self._woken[key] = 0
        self._running[key] = asyncio.create_task(
            self._drain(kind, partition, claimed), name=f"outbox-{kind}-{partition}"
        )
        return True

    # The loop ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._sweep_s)
            self._wake.clear()
            try:
                await self._scan()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox.scan_failed")
                await asyncio.sleep(min(self._sweep_s, 1.0))

    async def _scan(self) -> None:
        if not self._handlers:
            return
        heads = await self._store.due_heads(
            self.kinds, self._clock.now(), limit=self._concurrency * 2, owner=self._owner
        )
        for _pk, kind, partition in heads:
            if not self._start(kind, partition):
                break

    async def _drain(self, kind: str, partition: str, claimed: OutboxRow | None) -> None:
        """Work one partition's due rows in order, one at a time.

        The row after the current one is leased ahead (`ahead`: claimed by the previous row's
        record, or while the current one is attempted when rows were seen queued behind it).
        Once the current attempt has settled its row (delivered or failed for good), the
        settled row is recorded, claiming the row after the next in the same transaction,
        and only then does the next attempt start: a record that fails leaves the settled row
        to be attempted again before anything after it is sent. A row left pending (a retry)
        gives back the row leased ahead, which waits behind the retry."""
        key = (kind, partition)
        row = claimed
        ahead: OutboxRow | None = None
        fetch: asyncio.Task[OutboxRow | None] | None = None
        queued = False  # row was found behind another one: more may be queued after it
        try:
            looked = self._woken[key]
            if row is None:
                row = await self._claim(kind, partition)
            while True:
                if row is None:
                    row = self._handoff.pop(key, None)  # claimed for us by a wake-up
                    if row is not None:
                        continue
                    if self._woken[key] == looked:
                        return  # nothing due, and no wake-up since the last look
                    # A wake-up came while we looked: its row may have been committed after
                    # our last look, so look once more before leaving.
                    looked = self._woken[key]
                    row = await self._claim(kind, partition)
                    continue
                looked = self._woken[key]
                if ahead is None and queued and not _batches(row):
                    fetch = asyncio.create_task(self._claim_after(row))
                writes = await self._attempt(row)
                if fetch is not None:
                    ahead, fetch = await self._not_a_batch(await fetch), None
                settled = all(write.row_status != PENDING for write in writes)
                disabled = any(write.outcome == Verdict.DISABLE for write in writes)
                if settled and not disabled and ahead is not None:
                    # Recorded before the next attempt starts, claiming the row after it.
                    following = await self._record(row, writes, after=ahead.last_pk)
                    row, ahead = ahead, await self._not_a_batch(following)
                    continue
                if ahead is not None:
                    # Row is retried later, and the rows behind it wait for it; or the target
                    # is gone, and what was read with them is out of date: claimed again.
                    held, ahead = ahead, None
                    await self._store.release_rows([one.pk for one in held.batch], self._owner)
                row = await self._record(row, writes)  # and claim the next head
                queued = row is not None
        except asyncio.CancelledError:
            if fetch is not None:
                fetch.cancel()
            raise
        except Exception:
            log.exception("outbox.partition_failed", kind=kind, partition=partition)
            self._leave(key)  # before any await: no more hand-offs to this drain
            # Our leases are never taken again by us while we run: give them back, so that
            # the sweep starts the partition afresh.
            leased = [row, ahead, self._handoff.pop(key, None)]
            if fetch is not None:
                with contextlib.suppress(Exception):
                    leased.append(await fetch)
            # A row settled meanwhile is not pending: left as it is.
            pks = [one.pk for lease in leased if lease is not None for one in lease.batch]
            with contextlib.suppress(Exception):
                await self._store.release_rows(pks, self._owner)
        finally:
            self._leave(key)
            if self._saturated:
                self._saturated = False
                self.wake()

    async def _not_a_batch(self, ahead: OutboxRow | None) -> OutboxRow | None:
        """A row leased ahead, unless it came as a batch (its endpoint has taken batches
        since the lookahead started): a batch made up now would leave only after the row
        before it, without what queues meanwhile, so it is given back, and the next record
        claims it afresh."""
        if ahead is None or not _batches(ahead):
            return ahead
        await self._store.release_rows([one.pk for one in ahead.batch], self._owner)
        return None

    def _leave(self, key: tuple[str, str]) -> None:
        """Forget the running drain of `key`, if it is the current task (a new drain of the
        same partition may have started since this one left)."""
        if self._running.get(key) is asyncio.current_task():
            del self._running[key]
            self._woken.pop(key, None)

    async def _claim(self, kind: str, partition: str) -> OutboxRow | None:
        return await self._store.claim_head(
            kind, partition, self._owner, self._clock.now(), self._lease_s
        )

    @property
    def _ahead_lease_s(self) -> float:
        """The lease of a row leased ahead: it waits for the attempt before it (and that
        row's record) before its own attempt starts, so it is leased for two attempts, and
        keeps for its own attempt the whole `lease_s` of a row claimed just before it."""
        return 2 * self._lease_s

    async def _claim_after(self, row: OutboxRow) -> OutboxRow | None:
        return await self._store.claim_after(
            row, self._owner, self._clock.now(), self._ahead_lease_s
        )

    async def _attempt(self, row: OutboxRow) -> list[AttemptWrite]:
        """One attempt (for a row with followers, one for the whole batch), and what to record
        of it for each row of the batch (its new state)."""
        handler = self._handlers[row.kind]
        rows = row.batch
        started = time.perf_counter()
        try:
            if len(rows) == 1:
                attempts = [await handler.handle(row)]
            elif isinstance(handler, BatchHandler):
                attempts = list(await handler.handle_batch(rows))
            else:  # attempted one by one, a retry would let the rows after it overtake it
                raise TypeError(f"rows of {row.kind} came in a batch; its handler takes none")
            if len(attempts) != len(rows):
                raise ValueError(f"{len(attempts)} outcomes for a batch of {len(rows)} rows")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("outbox.handler_failed", kind=row.kind, row=row.public_id)
            failed = Attempt.retry(f"handler failed: {type(exc).__name__}: {exc}"[:500])
            attempts = [failed] * len(rows)
        duration_ms = int((time.perf_counter() - started) * 1000)
        writes = [
            await self._settle(one, attempt, duration_ms)
            for one, attempt in zip(rows, attempts, strict=True)
        ]
        retried = [write.next_attempt_at for write in writes if write.row_status == PENDING]
        if len(retried) > 1:  # a retried batch goes again together, when its first row is due
            together = retried[0]
            writes = [
                replace(write, next_attempt_at=together) if write.row_status == PENDING else write
                for write in writes
            ]
        return writes

    async def _settle(self, row: OutboxRow, attempt: Attempt, duration_ms: int) -> AttemptWrite:
        """What to record of one row's attempt: its new state by the retry schedule."""
        now = self._clock.now()
        number = row.attempts + 1
        status, next_at, last_error = DELIVERED, now, None
        if attempt.verdict == Verdict.RETRY:
            planned = self._backoff.next_attempt(
                first_at=row.created_at,
                now=now,
                attempt=number,
                retry_after=attempt.retry_after,
                draw=self._draw,
            )
            if planned is None:
                status, last_error = FAILED, self._gave_up_reason(number, attempt)
                await self._gave_up(row, last_error)
            else:
                status, next_at, last_error = PENDING, planned, attempt.error
                self._wake_at((planned - now).total_seconds())
        elif attempt.verdict in (Verdict.FINAL, Verdict.DISABLE):
            status, last_error = FAILED, attempt.error
        return AttemptWrite(
            at=now,
            outcome=str(attempt.verdict),
            status_code=attempt.status,
            error=attempt.error,
            note=attempt.note,
            duration_ms=duration_ms,
            row_status=status,
            next_attempt_at=next_at,
            last_error=last_error,
        )

    async def _record(
        self,
        row: OutboxRow,
        writes: Sequence[AttemptWrite],
        after: int | None = None,
    ) -> OutboxRow | None:
        """Record the attempt (for each row of the batch, in one transaction); returns the
        partition's next row (the head, or the row after row `after`) if it could be claimed
        with it."""
        lease_s = self._lease_s if after is None else self._ahead_lease_s
        kept, following = await self._store.record(
            row,
            self._owner,
            writes[0],
            claim_next_s=lease_s,
            after=after,
            followers=list(zip(row.followers, writes[1:], strict=True)),
            claim_at=self._clock.now(),
        )
        for one, write in zip(row.batch, writes, strict=True):
            log.info(
                "outbox.attempt",
                kind=one.kind,
                row=one.public_id,
                partition=one.partition,
                attempt=one.attempts + 1,
                outcome=write.outcome,
                status=write.status_code,
                error=write.error,
                row_status=write.row_status,
                lease_kept=kept,
                batch=len(writes),
            )
        return following

    def _gave_up_reason(self, number: int, attempt: Attempt) -> str:
        hours = self._backoff.budget_s / 3600
        budget = f"{hours:g} h" if hours >= 1 else f"{self._backoff.budget_s:g} s"
        return f"gave up after {number} attempts over the {budget} retry budget: {attempt.error}"

    async def _gave_up(self, row: OutboxRow, reason: str) -> None:
        # Called before the row is marked failed: a crash in between repeats the call after
        # restart (at least once), never skips it.
        if self.on_gave_up is None:
            return
        try:
            await self.on_gave_up(row, reason)
        except Exception:
            log.exception("outbox.gave_up_hook_failed", row=row.public_id)

    def _wake_at(self, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self.wake()

        handle = loop.call_later(max(0.0, delay_s), fire)
        self._timers.add(handle)
