"""Signature checks in worker processes (`gateway.signatures.worker`), batched.

Each worker has at most one batch in flight. A check that arrives while every worker is busy
waits in the next batch, so under load one pipe write and one read carry many checks, and
at rest a check goes out at once, alone. Answers come back one byte per check in the order
sent, so they are matched to their checks as the bytes arrive (in the event loop's callback
for the pipe: no task wakes up per batch).

A worker that ends, answers anything but whole 0/1 bytes, or leaves a batch unanswered for
`ANSWER_WAIT_S` (stopped, or stuck), is stopped; its checks in flight are done on the event
loop instead, so no envelope is refused or lost because a worker went away. It is started
again after a pause (doubling from `RESTART_FIRST_S` to `RESTART_MAX_S` while it keeps
ending before it answers; a worker that cannot start at all is tried the same way);
meanwhile checks go to the other workers, or are done on the event loop if there are none.
While `MAX_WAITING` checks already wait (workers stuck until the answer wait gives them up,
or slower than the loop), new ones are done on the loop at once, so a stall neither stops
acceptance nor queues without bound.

The workers run this interpreter on the gateway's own package (`worker_command`): never on
modules from the working directory, since their answers decide what is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog

import gateway
from gateway.signatures.frames import MAX_BATCH, MAX_BATCH_BYTES, VALID, encode_batch, encode_check
from identity.keys import PublicKey

log = structlog.get_logger(__name__)

MAX_WAITING = 4 * MAX_BATCH  # checks queued for the workers; past it the loop checks
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 60.0
STOP_WAIT_S = 5.0
ANSWER_WAIT_S = 5.0  # a batch's answer normally takes a millisecond or so


class _Check:
    __slots__ = ("answer", "data", "public", "signature")

    def __init__(
        self, public: PublicKey, signature: bytes, data: bytes, answer: asyncio.Future[bool]
    ) -> None:
        self.public, self.signature, self.data, self.answer = public, signature, data, answer

    def settle(self, valid: bool) -> None:
        if not self.answer.done():  # its request may have been cancelled meanwhile
            self.answer.set_result(valid)

    def settle_here(self) -> None:
        """Do the check on this thread (its worker went away)."""
        if not self.answer.done():
            self.answer.set_result(self.public.verify(self.signature, self.data))


class _Worker(asyncio.SubprocessProtocol):
    """One worker process, as the event loop's callbacks see it."""

    def __init__(self, pool: SignatureWorkers, number: int) -> None:
        self.pool = pool
        self.number = number
        self.in_flight: deque[_Check] = deque()
        self.transport: asyncio.SubprocessTransport | None = None
        self.failure: str | None = None
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.overdue: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def pid(self) -> int:
        assert self.transport is not None, "set before subprocess_exec returns"
        return int(self.transport.get_pid())

    def send(self, batch: list[_Check], answer_wait_s: float) -> None:
        self.in_flight.extend(batch)
        self.overdue = asyncio.get_running_loop().call_later(
            answer_wait_s, self.fail, f"left a batch unanswered for {answer_wait_s:g} s"
        )
        assert self.transport is not None
        stdin: Any = self.transport.get_pipe_transport(0)
        stdin.write(encode_batch([encode_check(c.public.raw, c.signature, c.data) for c in batch]))

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self.failure is not None:
            return
        if len(data) > len(self.in_flight) or data.translate(None, b"\x00\x01"):
            self.fail("answered out of turn")
            return
        for byte in data:
            self.in_flight.popleft().settle(byte == VALID)
        if not self.in_flight:
            if self.overdue is not None:
                self.overdue.cancel()
                self.overdue = None
            self.pool.answered(self)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self.fail("ended")

    def process_exited(self) -> None:
        self.fail("ended")
        if not self.exited.done():
            self.exited.set_result(None)

    def fail(self, failure: str) -> None:
        if self.failure is None:
            self.failure = failure
            if self.overdue is not None:
                self.overdue.cancel()
            self.pool.lost(self)

    async def stop(self, *, graceful: bool) -> int | None:
        """End the process (closing its stdin asks it to; killed if not `graceful` or if it
        does not end in `STOP_WAIT_S`); its exit code."""
        transport = self.transport
        assert transport is not None, "set before subprocess_exec returns"
        with contextlib.suppress(ProcessLookupError):
            stdin = transport.get_pipe_transport(0)
            if stdin is not None:
                stdin.close()
            if not graceful:
                transport.kill()
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), STOP_WAIT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                transport.kill()
            await self.exited
        finally:
            code = transport.get_returncode()
            transport.close()
        return code


class SignatureWorkers:
    """`SignatureChecks` by `count` worker processes; `start` before use, `close` after."""

    def __init__(
        self,
        count: int,
        *,
        command: Sequence[str] | None = None,
        on_restart: Callable[[], None] | None = None,
        answer_wait_s: float = ANSWER_WAIT_S,
    ) -> None:
        if count < 1:
            raise ValueError("at least one worker; use InlineChecks for none")
        self._count = count
        self._command = tuple(command) if command is not None else worker_command()
        self._on_restart = on_restart
        self._answer_wait_s = answer_wait_s
        self._workers: dict[int, _Worker] = {}  # the live ones, by number
        self._idle: list[_Worker] = []
        self._waiting: list[_Check] = []
        self._restarts: set[asyncio.Task[None]] = set()
        self._stops: set[asyncio.Task[None]] = set()  # of lost workers' processes
        self._pause: dict[int, float] = {}
        self._closed = False

    async def start(self) -> None:
        """Start the workers. One that cannot start is tried again after a pause, as a lost
        one is; meanwhile its share of the checks is done by the others or on the loop."""
        for number in range(self._count):
            await self._spawn(number)

    @property
    def live(self) -> int:
        """How many workers are running now."""
        return len(self._workers)

    def pids(self) -> list[int]:
        """The running workers' process ids."""
        return [worker.pid for worker in self._workers.values()]

    async def check(self, public: PublicKey, signature: bytes, data: bytes) -> bool:
        if self._closed or not self._workers or len(self._waiting) >= MAX_WAITING:
            # No worker, or they fall behind (stuck until `answer_wait_s` gives them up):
            # the loop checks, so acceptance goes on and the queue stays bounded.
            return public.verify(signature, data)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Check(public, signature, data, answer))
        if self._idle:
            self._send(self._idle.pop())
        return await answer

    async def close(self) -> None:
        """Stop the workers; checks still waiting or in flight are done here."""
        self._closed = True
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(*self._restarts, *self._stops, return_exceptions=True)
        workers = list(self._workers.values())
        self._workers.clear()
        self._idle.clear()
        await asyncio.gather(*(worker.stop(graceful=True) for worker in workers))
        for worker in workers:
            while worker.in_flight:
                worker.in_flight.popleft().settle_here()
        waiting, self._waiting = self._waiting, []
        for check in waiting:
            check.settle_here()

    # The workers' callbacks --------------------------------------------------------------

    def answered(self, worker: _Worker) -> None:
        """`worker` answered its whole batch."""
        self._pause.pop(worker.number, None)  # it works: a later loss restarts it soon
        if self._closed or self._workers.get(worker.number) is not worker:
            return
        self._send(worker)

    def lost(self, worker: _Worker) -> None:
        """`worker` ended, broke the pipe format or kept a batch too long: its checks are
        done here, its process is stopped, and another starts later."""
        if self._workers.get(worker.number) is not worker:
            return  # not started yet (`_spawn` stops it) or stopped by `close`
        del self._workers[worker.number]
        if worker in self._idle:
            self._idle.remove(worker)
        done_here = len(worker.in_flight)
        while worker.in_flight:
            worker.in_flight.popleft().settle_here()
        if not self._workers:  # nobody left to take the waiting checks
            waiting, self._waiting = self._waiting, []
            done_here += len(waiting)
            for check in waiting:
                check.settle_here()
        self._keep(
            self._stops, self._stop_lost(worker, done_here), f"signature-stop-{worker.number}"
        )

    # Processes --------------------------------------------------------------------------

    def _send(self, worker: _Worker) -> None:
        """Send `worker` (idle) the waiting checks, up to `MAX_BATCH` of them and
        `MAX_BATCH_BYTES` of signed bytes (at least one check), leaving out checks whose
        request went away; with none to send it waits among the idle."""
        while self._waiting:
            count, size = 0, 0
            for check in self._waiting:
                if count == MAX_BATCH or (count and size + len(check.data) > MAX_BATCH_BYTES):
                    break
                count += 1
                size += len(check.data)
            batch = [check for check in self._waiting[:count] if not check.answer.done()]
            del self._waiting[:count]
            if batch:
                worker.send(batch, self._answer_wait_s)
                return
        self._idle.append(worker)

    async def _spawn(self, number: int) -> bool:
        """Start worker `number`; whether it runs."""
        loop = asyncio.get_running_loop()
        worker = _Worker(self, number)
        try:
            await loop.subprocess_exec(
                lambda: worker,
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,
            )
        except OSError as exc:
            log.warning("signatures.worker_not_started", worker=number, error=str(exc))
            self._restart_later(number)
            return False
        if worker.failure is not None:  # it ended at once
            await self._stop_lost(worker, 0)
            return False
        self._workers[number] = worker
        log.info("signatures.worker_started", worker=number, pid=worker.pid)
        self._send(worker)
        return True

    async def _stop_lost(self, worker: _Worker, done_here: int) -> None:
        code = await worker.stop(graceful=False)
        log.warning(
            "signatures.worker_lost",
            worker=worker.number,
            failure=worker.failure,
            exit_code=code,
            checks_done_here=done_here,
        )
        self._restart_later(worker.number)

    def _restart_later(self, number: int) -> None:
        if self._closed:
            return
        pause = min(self._pause.get(number, RESTART_FIRST_S / 2) * 2, RESTART_MAX_S)
        self._pause[number] = pause

        async def restart() -> None:
            await asyncio.sleep(pause)
            if await self._spawn(number) and self._on_restart is not None:
                self._on_restart()

        self._keep(self._restarts, restart(), f"signature-restart-{number}")

    @staticmethod
    def _keep(tasks: set[asyncio.Task[None]], work: Coroutine[Any, Any, None], name: str) -> None:
        # Started from whatever callback saw the loss (a request's timer, say): in a context
        # of its own, so that no request's log ids go on its lines.
        task = asyncio.get_running_loop().create_task(
            work, name=name, context=contextvars.Context()
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def worker_command() -> tuple[str, ...]:
    """How the gateway starts a worker: this interpreter, importing this very `gateway`
    package and nothing from the working directory (`-P`; the working directory could hold
    a module of the same name, and the worker's answers decide which envelopes are accepted)."""
    root = str(Path(gateway.__file__).resolve().parents[1])
    program = (
        f"import sys; sys.path.insert(0, {root!r}); "
        "from gateway.signatures.worker import main; sys.exit(main())"
    )
    return (sys.executable, "-P", "-c", program)
