"""Signature checks in worker processes (`gateway.signatures.workers`), with real processes:
the real worker (`python -m gateway.signatures.worker`), and small real misbehaving workers
(`python -c ...`) passed as `command`. Then PROTOCOL rule 4 through a whole gateway that checks
signatures in a worker, including after its worker is killed, and SWITCHBOARD_VERIFY_WORKERS.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.config import SettingsError, load_settings
from gateway.signatures.frames import MAX_BATCH
from gateway.signatures.workers import MAX_WAITING, SignatureWorkers
from identity.envelope import sign
from identity.keys import PrivateKey, PublicKey
from tests.conftest import Harness, make_settings, start_gateway
from tests.integration.wire import assert_problem, footprint, request

WAIT_S = 60.0  # generous bound on anything that must not hang
RESTART_DEADLINE_S = 10.0
WORKER_MODULE = "gateway.signatures.worker"

Check = tuple[PublicKey, bytes, bytes]


def _checks(count: int, keys: list[PrivateKey]) -> tuple[list[Check], list[bool]]:
    """`count` checks across `keys` (two or more): a quarter valid, the rest a tampered message,
    another key's signature or a signature with one bit flipped. Signed bytes vary in length."""
    assert len(keys) >= 2
    checks: list[Check] = []
    expected: list[bool] = []
    for n in range(count):
        key = keys[n % len(keys)]
        data = f"check {n} ".encode() * (1 + n % 7)
        signature = key.sign(data)
        kind = n % 4
        if kind == 0:
            checks.append((key.public, signature, data))
        elif kind == 1:
            checks.append((key.public, signature, data + b"."))
        elif kind == 2:
            other = keys[(n + 1) % len(keys)]
            checks.append((key.public, other.sign(data), data))
        else:
            checks.append((key.public, bytes([signature[0] ^ 0x80]) + signature[1:], data))
        expected.append(kind == 0)
    return checks, expected


async def _check_all(pool: SignatureWorkers, checks: list[Check]) -> list[bool]:
    return await asyncio.wait_for(asyncio.gather(*(pool.check(*check) for check in checks)), WAIT_S)


def _running(pid: int) -> bool:
    """Whether `pid` is a process that has not ended (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(b")") + 2 :].split()[0] != b"Z"


def _children(marker: str) -> list[int]:
    """This process's running children whose command line contains `marker`."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == me and fields[0] != b"Z" and marker.encode() in cmdline:
            found.append(int(entry))
    return sorted(found)


async def _until(condition: Callable[[], bool], what: str, deadline_s: float = RESTART_DEADLINE_S):
    """Poll `condition` until it holds; fail naming `what` after `deadline_s`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        if loop.time() > end:
            pytest.fail(f"still waiting after {deadline_s} s for {what}")
        await asyncio.sleep(0.02)


def _script(body: str) -> list[str]:
    """A real worker command running `body`, tagged so its processes can be found in /proc."""
    return [sys.executable, "-c", f"# fake-signature-worker-{uuid.uuid4().hex}\n{body}"]


def _marker(command: list[str]) -> str:
    return command[2].splitlines()[0]


# Real misbehaving workers. Each reads batches in the pipe format with the project's frames.
ANSWERS_OUT_OF_TURN = """
import sys
sys.stdin.buffer.read(4)
sys.stdout.buffer.write(b"\\x02")
sys.stdout.buffer.flush()
sys.stdin.buffer.read()
"""

ANSWERS_TOO_MUCH = """
import sys
from gateway.signatures.frames import read_batch
while (batch := read_batch(sys.stdin.buffer.read)) is not None:
    sys.stdout.buffer.write(b"\\x01" * (len(batch) + 1))
    sys.stdout.buffer.flush()
"""

EXITS_AT_ONCE = "raise SystemExit(3)"

ANSWERS_BYTE_BY_BYTE = """
import sys
from gateway.signatures.worker import serve
class Sink:
    def write(self, data):
        for byte in data:
            sys.stdout.buffer.write(bytes([byte]))
            sys.stdout.buffer.flush()
    def flush(self):
        sys.stdout.buffer.flush()
serve(sys.stdin.buffer, Sink())
"""

NEVER_ANSWERS = """
import sys
sys.stdin.buffer.read()
"""

# Answers by the signed bytes alone (1 when they start with b"yes"), never by the signature:
# what comes back shows whose answer each check got.
ANSWERS_BY_CONTENT = """
import sys
from gateway.signatures.frames import read_batch
while (batch := read_batch(sys.stdin.buffer.read)) is not None:
    sys.stdout.buffer.write(bytes(int(data.startswith(b"yes")) for _, _, data in batch))
    sys.stdout.buffer.flush()
"""

# The real worker loop, logging "<pid> <answers>" for every batch it answers.
LOGGING_WORKER = """
import os, sys
from gateway.signatures.worker import serve
log = open(sys.argv[1], "a")
class Sink:
    def write(self, data):
        log.write(f"{os.getpid()} {len(data)}\\n")
        log.flush()
        sys.stdout.buffer.write(data)
    def flush(self):
        sys.stdout.buffer.flush()
serve(sys.stdin.buffer, Sink())
"""


# The pool of real workers -------------------------------------------------------------------


def test_a_pool_needs_at_least_one_worker():
    """Zero workers is InlineChecks' job: SignatureWorkers(0) is refused."""
    with pytest.raises(ValueError, match="at least one worker"):
        SignatureWorkers(0)


async def test_one_worker_answers_300_concurrent_checks_then_closes():
    """300 concurrent checks across five keys get exactly the expected answers from one live
    worker (same pid before and after, never restarted); close() ends the process, and
    checks after close are still answered right (on the event loop)."""
    restarts: list[int] = []
    pool = SignatureWorkers(1, on_restart=lambda: restarts.append(1))
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        assert pool.live == 1
        (pid,) = pool.pids()
        assert _running(pid)
        checks, expected = _checks(300, [PrivateKey.generate() for _ in range(5)])
        assert await _check_all(pool, checks) == expected
        assert pool.pids() == [pid] and pool.live == 1
        assert restarts == []
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert pool.live == 0 and pool.pids() == []
    assert await _check_all(pool, checks[:40]) == expected[:40]


async def test_two_workers_share_the_checks_in_bounded_batches(tmp_path):
    """With two workers (the real worker loop, logging each batch it answers), 1,000 concurrent
    checks are all answered right, both processes answer some, no batch exceeds MAX_BATCH,
    and the workers answered every check (none fell back to the event loop)."""
    log = tmp_path / "batches.log"
    command = [sys.executable, "-c", LOGGING_WORKER, str(log)]
    pool = SignatureWorkers(2, command=command)
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        assert pool.live == 2
        pids = set(pool.pids())
        assert len(pids) == 2
        checks, expected = _checks(1000, [PrivateKey.generate() for _ in range(4)])
        assert await _check_all(pool, checks) == expected
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)
    batches = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    assert {pid for pid, _ in batches} == pids
    assert sum(size for _, size in batches) == 1000
    assert max(size for _, size in batches) <= MAX_BATCH


async def test_answers_are_matched_to_their_checks_in_order():
    """A real worker that answers by the signed bytes (1 for b"yes...") and ignores the
    signature: 600 concurrent checks, all with garbage signatures, get exactly its answers,
    so each answer byte reaches its own check across several batches."""
    pool = SignatureWorkers(1, command=_script(ANSWERS_BY_CONTENT))
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        key = PrivateKey.generate()
        pattern = [n % 3 == 0 or n % 7 == 0 for n in range(600)]
        checks = [
            (key.public, bytes(64), (b"yes %d" if yes else b"no %d") % n)
            for n, yes in enumerate(pattern)
        ]
        assert await _check_all(pool, checks) == pattern
        assert pool.live == 1
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)


async def test_cancelled_checks_do_not_disturb_the_others():
    """Half of 400 checks are cancelled, in flight and waiting (their requests went
    away): the other half get their right answers, and the pool keeps answering after."""
    pool = SignatureWorkers(1)
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        checks, expected = _checks(400, [PrivateKey.generate() for _ in range(3)])
        tasks = [asyncio.ensure_future(pool.check(*check)) for check in checks]
        # Once a first answer is in, the next batch (up to MAX_BATCH checks) is in flight and
        # the rest wait: cancel every other check of both kinds.
        await _until(lambda: any(task.done() for task in tasks), "a first answer")
        for task in tasks[1::2]:
            task.cancel()
        kept = await asyncio.wait_for(asyncio.gather(*tasks[0::2]), WAIT_S)
        assert kept == expected[0::2]
        assert all(task.cancelled() for task in tasks[1::2])
        assert await _check_all(pool, checks[:50]) == expected[:50]
        assert pool.live == 1
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)


async def test_a_killed_worker_loses_no_check_and_is_started_again():
    """SIGKILL the worker while a thousand checks are waiting or in flight: every check
    still gets the right answer (done on the event loop), the pool starts a new worker with
    another pid, on_restart is called, and checks afterwards are right."""
    restarts: list[int] = []
    pool = SignatureWorkers(1, on_restart=lambda: restarts.append(1))
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        (old,) = pool.pids()
        checks, expected = _checks(1000, [PrivateKey.generate() for _ in range(6)])
        tasks = [asyncio.ensure_future(pool.check(*check)) for check in checks]
        # Once a first answer is in, the worker has taken the next batch: kill it mid-batch.
        await _until(lambda: any(task.done() for task in tasks), "a first answer")
        os.kill(old, signal.SIGKILL)
        assert await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S) == expected
        await _until(lambda: pool.live == 1 and pool.pids() != [old], "a new worker after the kill")
        assert restarts == [1]
        assert not _running(old)
        (new,) = pool.pids()
        assert _running(new)
        more, more_expected = _checks(300, [PrivateKey.generate() for _ in range(2)])
        assert await _check_all(pool, more) == more_expected
        assert pool.pids() == [new]
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)
    assert not _running(new)


@pytest.mark.parametrize(
    "body",
    [ANSWERS_OUT_OF_TURN, ANSWERS_TOO_MUCH, EXITS_AT_ONCE],
    ids=["answers-0x02", "answers-too-many-bytes", "exits-at-once"],
)
async def test_a_misbehaving_worker_never_costs_a_right_answer(body):
    """A worker that answers a byte other than 0/1, one that answers more bytes than checks
    (all 1s: trusting it would accept bad signatures), and one that exits at once: two rounds
    of concurrent checks (mostly invalid) still get the right answers, the pool stops the
    worker and starts it again (on_restart), nothing hangs, close() returns, and no such
    process is left running."""
    restarts: list[int] = []
    command = _script(body)
    pool = SignatureWorkers(1, command=command, on_restart=lambda: restarts.append(1))
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        keys = [PrivateKey.generate() for _ in range(3)]
        checks, expected = _checks(200, keys)
        assert await _check_all(pool, checks) == expected
        await _until(lambda: len(restarts) >= 1, "a restart of the misbehaving worker")
        checks, expected = _checks(120, keys)
        assert await _check_all(pool, checks) == expected
        assert await _check_all(pool, checks[1:2]) == [False]
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)
    assert pool.live == 0
    assert await _check_all(pool, checks[:8]) == expected[:8]
    await _until(lambda: not _children(_marker(command)), "the fake workers to end")


async def test_close_right_after_a_worker_was_lost_ends_that_worker_too():
    """A worker answers out of turn (it is lost, its check done here) and close() follows at
    once: close() ends every worker process the pool started, that one included (its stop
    task, cancelled by close() before it killed the process, left it running once)."""
    command = _script(ANSWERS_OUT_OF_TURN)
    pool = SignatureWorkers(1, command=command)
    await asyncio.wait_for(pool.start(), WAIT_S)
    (pid,) = pool.pids()
    try:
        key = PrivateKey.generate()
        assert await asyncio.wait_for(pool.check(key.public, key.sign(b"x"), b"x"), WAIT_S)
        await asyncio.wait_for(pool.close(), WAIT_S)
        assert not _running(pid), "close() left the lost worker's process running"
    finally:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)  # our own child: leave nothing behind if this fails


async def test_a_stopped_worker_is_given_up_after_the_answer_wait():
    """A worker stopped with SIGSTOP mid-load answers nothing: after `answer_wait_s` the pool
    gives it up (kills it), does its checks and the waiting ones on the event loop with the
    right answers, and starts another worker, which answers what follows."""
    restarts: list[int] = []
    pool = SignatureWorkers(1, answer_wait_s=0.3, on_restart=lambda: restarts.append(1))
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        (old,) = pool.pids()
        os.kill(old, signal.SIGSTOP)
        checks, expected = _checks(200, [PrivateKey.generate() for _ in range(3)])
        assert await _check_all(pool, checks) == expected
        await _until(lambda: pool.live == 1 and pool.pids() != [old], "a new worker")
        assert restarts == [1]
        assert not _running(old)
        more, more_expected = _checks(100, [PrivateKey.generate() for _ in range(2)])
        assert await _check_all(pool, more) == more_expected
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)
        if _running(old):
            os.kill(old, signal.SIGKILL)


async def test_a_batch_holds_at_most_a_mebibyte_of_signed_bytes_unless_one_check_is_more(
    tmp_path,
):
    """Checks of 300 KiB each go out at most three to a batch; one check of 2 MiB goes out
    alone; all are answered right (the real worker loop, logging each batch it answers)."""
    log = tmp_path / "batches.log"
    command = [sys.executable, "-c", LOGGING_WORKER, str(log)]
    pool = SignatureWorkers(1, command=command)
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        key, other = PrivateKey.generate(), PrivateKey.generate()
        checks: list[Check] = []
        for n in range(9):
            data = bytes([n]) * (300 * 1024)
            checks.append((key.public, (key if n % 2 else other).sign(data), data))
        huge = b"h" * (2 << 20)
        checks.append((key.public, key.sign(huge), huge))
        assert await _check_all(pool, checks) == [n % 2 == 1 for n in range(9)] + [True]
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)
    sizes = [int(line.split()[1]) for line in log.read_text().splitlines()]
    assert sum(sizes) == 10
    assert all(size <= 3 for size in sizes)
    assert len(sizes) >= 4  # nine checks three at most to a batch, and the 2 MiB one


async def test_past_the_waiting_bound_the_loop_checks_at_once():
    """A stopped worker holds one check in flight and MAX_WAITING wait behind it; every check
    after those is answered at once, right, on the event loop, so a stall never queues more
    than that. close() then answers the held ones right."""
    pool = SignatureWorkers(1, answer_wait_s=WAIT_S)
    await asyncio.wait_for(pool.start(), WAIT_S)
    (pid,) = pool.pids()
    os.kill(pid, signal.SIGSTOP)
    try:
        over = 75
        checks, expected = _checks(
            1 + MAX_WAITING + over, [PrivateKey.generate() for _ in range(3)]
        )
        tasks = [asyncio.ensure_future(pool.check(*check)) for check in checks]
        for _ in range(5):
            await asyncio.sleep(0)
        done = [task for task in tasks if task.done()]
        assert len(done) == over
        assert [task.result() for task in tasks[-over:]] == expected[-over:]
    finally:
        os.kill(pid, signal.SIGCONT)
        await asyncio.wait_for(pool.close(), WAIT_S)
    assert [task.result() for task in tasks] == expected


async def test_a_worker_command_that_cannot_start_leaves_the_checks_to_the_loop():
    """A worker command that does not exist: start() returns, no worker runs, checks are
    answered right on the event loop, no restart is counted (none succeeded), close()
    returns."""
    restarts: list[int] = []
    pool = SignatureWorkers(
        1, command=["/nonexistent/python-for-workers"], on_restart=lambda: restarts.append(1)
    )
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        assert pool.live == 0
        checks, expected = _checks(40, [PrivateKey.generate() for _ in range(2)])
        assert await _check_all(pool, checks) == expected
        await asyncio.sleep(1.2)  # past the first pauses: the start is tried again, and fails
        assert pool.live == 0 and restarts == []
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)


async def test_one_of_two_workers_killed_while_the_other_is_busy():
    """Two workers, 1,000 checks; one is killed mid-load: every answer is right, the other
    keeps answering, and the lost one is started again."""
    pool = SignatureWorkers(2)
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        first, second = pool.pids()
        checks, expected = _checks(1000, [PrivateKey.generate() for _ in range(4)])
        tasks = [asyncio.ensure_future(pool.check(*check)) for check in checks]
        await _until(lambda: any(task.done() for task in tasks), "a first answer")
        os.kill(first, signal.SIGKILL)
        assert await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S) == expected
        assert second in pool.pids()
        await _until(lambda: pool.live == 2 and first not in pool.pids(), "a second worker again")
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)


async def test_answers_split_across_reads_reach_their_checks():
    """A real worker that answers one byte at a time, flushing each: 300 concurrent checks
    get exactly the right answers."""
    pool = SignatureWorkers(1, command=_script(ANSWERS_BYTE_BY_BYTE))
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        checks, expected = _checks(300, [PrivateKey.generate() for _ in range(3)])
        assert await _check_all(pool, checks) == expected
        assert pool.live == 1
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)


def _fake_identity(folder: Path) -> None:
    """An `identity` package whose public keys accept every signature."""
    package = folder / "identity"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("class KeyInvalid(Exception):\n    pass\n")
    (package / "keys.py").write_text(
        "class PublicKey:\n"
        "    def __init__(self, raw):\n"
        "        self.raw = raw\n"
        "    def verify(self, signature, data):\n"
        "        return True\n"
    )


async def test_a_worker_never_imports_from_the_working_directory(tmp_path, monkeypatch):
    """The gateway started in a folder holding an `identity` package that accepts every
    signature: its workers still refuse a forged one. The same folder does fool a worker
    started as `python -m gateway.signatures.worker`, which is why the gateway does not."""
    _fake_identity(tmp_path)
    monkeypatch.chdir(tmp_path)
    key = PrivateKey.generate()
    forged = (key.public, bytes(64), b"forged")
    naive = SignatureWorkers(1, command=[sys.executable, "-m", WORKER_MODULE])
    await asyncio.wait_for(naive.start(), WAIT_S)
    try:
        assert await asyncio.wait_for(naive.check(*forged), WAIT_S) is True
    finally:
        await asyncio.wait_for(naive.close(), WAIT_S)
    pool = SignatureWorkers(1)
    await asyncio.wait_for(pool.start(), WAIT_S)
    try:
        assert pool.live == 1
        assert await asyncio.wait_for(pool.check(*forged), WAIT_S) is False
        assert await asyncio.wait_for(pool.check(key.public, key.sign(b"ok"), b"ok"), WAIT_S)
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)


async def test_a_worker_that_never_answers_holds_its_checks_until_close_or_the_wait():
    """A worker that reads its batches and never answers, with an answer wait longer than
    the test: its checks stay unanswered (no check is answered by anyone else meanwhile);
    close() ends it and answers them all right on the event loop."""
    command = _script(NEVER_ANSWERS)
    pool = SignatureWorkers(1, command=command, answer_wait_s=WAIT_S)
    await asyncio.wait_for(pool.start(), WAIT_S)
    checks, expected = _checks(20, [PrivateKey.generate() for _ in range(2)])
    tasks = [asyncio.ensure_future(pool.check(*check)) for check in checks]
    try:
        for _ in range(5):
            await asyncio.sleep(0)
        assert not any(task.done() for task in tasks)
        assert pool.live == 1
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)
    assert [task.result() for task in tasks] == expected
    assert not _children(_marker(command))


# Through a whole gateway with a worker -----------------------------------------------------

SUPPORT = ("support", "Technical support for speakers", ["troubleshooting", "status lights"])


@pytest.fixture
async def gateway_with_worker(tmp_path: Path) -> AsyncIterator[Harness]:
    """An embedded gateway in this process that checks signatures in one worker process."""
    async with start_gateway(make_settings(tmp_path / "var", verify_workers=1)) as harness:
        yield harness


async def _world(gateway: Harness) -> tuple[Any, Any]:
    """A brand with one agent, and a registered personal agent (alice)."""
    _, agents = await gateway.brand("acme.example", [SUPPORT])
    alice = await gateway.person("alice")
    return agents["support"], alice


async def _post(gateway: Harness, envelope: dict[str, Any]) -> Any:
    return await request(
        gateway.session, "POST", gateway.url + "/v1/messages", data=json.dumps(envelope).encode()
    )


async def _accepted(gateway: Harness, envelope: dict[str, Any]) -> None:
    """`envelope` is accepted (202) and stored under its (from, id)."""
    answer = await _post(gateway, envelope)
    assert answer.status == 202, answer.body
    stored = await gateway.services.conversations.by_replay_key(
        envelope["from"].lower(), envelope["id"]
    )
    assert stored is not None


async def _refused(
    gateway: Harness, envelope: dict[str, Any], status: int, code: str, *words: str
) -> None:
    """`envelope` is refused with the problem for `code`, and the store did not change (no
    task, no inbox item, nothing under its (from, id)); as tests/integration's `refused`."""
    store = gateway.services.conversations
    before = await footprint(gateway)
    assert await store.by_replay_key(envelope["from"].lower(), envelope["id"]) is None
    assert_problem(await _post(gateway, envelope), status, code, *words)
    assert await footprint(gateway) == before, "a refused envelope changed the store"
    assert await store.by_replay_key(envelope["from"].lower(), envelope["id"]) is None


def _tampered(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope with its text changed after signing."""
    return {**envelope, "body": {**envelope["body"], "text": envelope["body"]["text"] + "!"}}


async def _metric(gateway: Harness, name: str) -> float:
    """A metric's value from `/metrics` (0 while it has no sample)."""
    answer = await request(gateway.session, "GET", gateway.url + "/metrics")
    assert answer.status == 200
    for line in str(answer.body).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def _restarts(gateway: Harness) -> float:
    return await _metric(gateway, "switchboard_signature_worker_restarts_total")


async def test_the_gateway_starts_one_worker_and_stops_it_at_shutdown(tmp_path):
    """verify_workers=1: while the gateway runs, one child process runs the worker module;
    after shutdown it has ended."""
    async with start_gateway(make_settings(tmp_path / "var", verify_workers=1)) as gateway:
        workers = _children(WORKER_MODULE)
        assert len(workers) == 1
        assert await _metric(gateway, "switchboard_signature_workers") == 1.0
        _, alice = await _world(gateway)
        await _accepted(gateway, alice.envelope("acme.example", "hello"))
        assert _children(WORKER_MODULE) == workers
    assert not _running(workers[0])


async def test_rule_4_key_and_signature_through_the_worker(gateway_with_worker):
    """Through the worker: a good envelope is accepted; a tampered text, a changed member, a
    signature of zeros and a signature over another envelope are 401 signature_invalid with
    nothing stored; a key that is not the sender's is 401 unknown_key even when the envelope
    is also tampered (the key rule comes first)."""
    gateway = gateway_with_worker
    assert len(_children(WORKER_MODULE)) == 1
    support, alice = await _world(gateway)
    envelope = alice.envelope("acme.example", "My speaker blinks.")
    await _accepted(gateway, envelope)
    assert len((await support.inbox())["items"]) == 1

    await _refused(
        gateway, _tampered(alice.envelope("acme.example", "hi")), 401, "signature_invalid", "sig"
    )
    changed = alice.envelope("acme.example", "hi")
    changed["meta"] = {"added": True}
    await _refused(gateway, changed, 401, "signature_invalid")
    zeros = alice.envelope("acme.example", "hi")
    zeros["sig"] = {**zeros["sig"], "value": "A" * 86}  # 64 zero bytes in base64url
    await _refused(gateway, zeros, 401, "signature_invalid")
    first, second = alice.envelope("acme.example", "one"), alice.envelope("acme.example", "two")
    await _refused(gateway, {**second, "sig": first["sig"]}, 401, "signature_invalid")

    stranger_key = PrivateKey.generate()
    forged = sign(alice.envelope("acme.example", "hi"), stranger_key)
    await _refused(gateway, forged, 401, "unknown_key", stranger_key.kid)
    await _refused(gateway, _tampered(forged), 401, "unknown_key")
    assert len((await support.inbox())["items"]) == 1


async def test_rule_4_revoked_and_new_keys_through_the_worker(gateway_with_worker):
    """After alice adds a key and revokes the first: the old key is 401 key_revoked (also on a
    tampered envelope: the key rule comes before the signature), the new key is accepted, and
    a tampered envelope under the new key is 401 signature_invalid."""
    gateway = gateway_with_worker
    _, alice = await _world(gateway)
    old = alice.key
    new = PrivateKey.generate()
    await alice.add_key(new.public)
    await alice.revoke_key(old.kid)
    stale = alice.envelope("acme.example", "hi")
    await _refused(gateway, stale, 401, "key_revoked", "revoked")
    await _refused(gateway, _tampered(alice.envelope("acme.example", "hi")), 401, "key_revoked")

    alice.key = new
    await _accepted(gateway, alice.envelope("acme.example", "with my new key"))
    await _refused(
        gateway, _tampered(alice.envelope("acme.example", "hi")), 401, "signature_invalid"
    )


async def test_rule_4_the_clock_comes_after_the_signature(gateway_with_worker):
    """A well-signed envelope an hour old or ahead is 400 clock_skew; the same with its text
    changed after signing is 401 signature_invalid (the signature before the clock); one 250 s
    off is accepted."""
    gateway = gateway_with_worker
    _, alice = await _world(gateway)
    now = datetime.now(UTC)
    for hours in (-1, 1):
        skewed = alice.envelope("acme.example", "hi", now=now + timedelta(hours=hours))
        await _refused(gateway, skewed, 400, "clock_skew", "300")
        skewed = alice.envelope("acme.example", "hi", now=now + timedelta(hours=hours))
        await _refused(gateway, _tampered(skewed), 401, "signature_invalid")
    await _accepted(gateway, alice.envelope("acme.example", "hi", now=now - timedelta(seconds=250)))


async def test_the_gateways_killed_worker_costs_no_envelope_and_is_restarted(tmp_path):
    """SIGKILL the gateway's worker: 20 envelopes sent at once are all accepted, a tampered one
    is still refused, a new worker process starts, /metrics counts the restart, envelopes
    after it are accepted, and the new worker ends with the gateway."""
    async with start_gateway(make_settings(tmp_path / "var", verify_workers=1)) as gateway:
        (old,) = _children(WORKER_MODULE)
        support, alice = await _world(gateway)
        assert await _restarts(gateway) == 0
        os.kill(old, signal.SIGKILL)

        envelopes = [alice.envelope("acme.example", f"message {n}") for n in range(20)]
        answers = await asyncio.wait_for(
            asyncio.gather(*(_post(gateway, envelope) for envelope in envelopes)), WAIT_S
        )
        assert [answer.status for answer in answers] == [202] * 20, [a.body for a in answers]
        await _refused(
            gateway, _tampered(alice.envelope("acme.example", "x")), 401, "signature_invalid"
        )

        await _until(
            lambda: len(_children(WORKER_MODULE)) == 1 and _children(WORKER_MODULE) != [old],
            "the gateway's new worker",
        )
        (new,) = _children(WORKER_MODULE)
        loop = asyncio.get_running_loop()
        end = loop.time() + RESTART_DEADLINE_S
        while await _restarts(gateway) < 1:
            assert loop.time() < end, "switchboard_signature_worker_restarts_total stayed 0"
            await asyncio.sleep(0.05)
        assert not _running(old)
        assert await _metric(gateway, "switchboard_signature_workers") == 1.0

        for n in range(5):
            await _accepted(gateway, alice.envelope("acme.example", f"after {n}"))
        await _refused(
            gateway, _tampered(alice.envelope("acme.example", "y")), 401, "signature_invalid"
        )
        assert _children(WORKER_MODULE) == [new]
        inbox = await support.inbox()
        assert len(inbox["items"]) == 25
    assert not _running(new)


# SWITCHBOARD_VERIFY_WORKERS ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", "1.5", "65", "-1", "1000"])
def test_verify_workers_outside_0_to_64_is_refused_by_name(value):
    """Not a whole number from 0 to 64: SettingsError naming SWITCHBOARD_VERIFY_WORKERS."""
    with pytest.raises(SettingsError, match="SWITCHBOARD_VERIFY_WORKERS"):
        load_settings({"SWITCHBOARD_VERIFY_WORKERS": value})


@pytest.mark.parametrize(("value", "workers"), [("0", 0), ("3", 3), (" 2 ", 2), ("64", 64)])
def test_verify_workers_sets_the_number_of_workers(value, workers):
    """A number from 0 to 64 is the number of signature workers (0: the event loop checks)."""
    settings = load_settings({"SWITCHBOARD_VERIFY_WORKERS": value})
    assert settings.verify_workers == workers
    assert settings.verify_worker_count == workers


@pytest.mark.parametrize("environ", [{}, {"SWITCHBOARD_VERIFY_WORKERS": ""}])
def test_verify_workers_unset_is_one_worker_on_two_cores_or_more(environ):
    """Unset (or empty): verify_workers is None and the gateway uses one worker when this
    process may run on two cores or more, none on one core."""
    settings = load_settings(environ)
    assert settings.verify_workers is None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert settings.verify_worker_count == (1 if (cores or 1) >= 2 else 0)
