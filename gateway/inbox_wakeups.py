"""Inbox wake-ups of one group commit, sent as one message per agent.

Every accepted envelope wakes its recipient's inbox readers with `inbox.<agent>` carrying
the new seq; on NATS each such message reaches every replica. The acceptances of one group
commit resume together, so `InboxWakeups.publish` lets the first of them yield once, then
sends the highest seq noted per agent by all of them (a feed remembers only the highest
seq it has heard of, and reads the store for everything after its reader's point) while
the others wait for that send. Each caller returns once a message carrying its seq, or a
higher one for the same agent, has been published, as when it published its own.

The database stays the source of truth: a wake-up lost here (the bus down, the sender
cancelled before the send) costs what a lost NATS message costs, a reader waiting out its
wait before it reads the store.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterable

from gateway.bus import Bus


class InboxWakeups:
    """Coalesces the inbox wake-ups of acceptances that commit together (one per process)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._pending: dict[str, int] = {}  # agent -> highest seq not yet sent
        self._round: asyncio.Future[None] | None = None  # the send not yet under way
        self._sending: set[asyncio.Task[None]] = set()

    async def publish(self, seqs: Iterable[tuple[str, int]]) -> None:
        """Send `inbox.<agent>` with (at least) each of these seqs; raise if the send fails."""
        for agent, seq in seqs:
            if seq > self._pending.get(agent, 0):
                self._pending[agent] = seq
        if not self._pending:
            return
        done = self._round
        if done is None:
            done = self._round = asyncio.get_running_loop().create_future()
            try:
                await asyncio.sleep(0)  # the rest of the group resumes and notes its seqs
            finally:
                # What was noted goes with this send (even if this caller was cancelled
                # meanwhile: the others wait for it); later callers start their own.
                self._round = None
                pending, self._pending = self._pending, {}
                # The send is the whole group's: no caller's log ids on what it logs.
                task = asyncio.create_task(self._send(pending, done), context=contextvars.Context())
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
        await asyncio.shield(done)

    async def _send(self, pending: dict[str, int], done: asyncio.Future[None]) -> None:
        try:
            for agent, seq in pending.items():
                await self._bus.publish(f"inbox.{agent}", str(seq).encode())
        except Exception as exc:
            done.set_exception(exc)
            done.exception()  # each waiting caller still gets it; none waiting is no warning
        except BaseException:
            done.cancel()
            raise
        else:
            done.set_result(None)
