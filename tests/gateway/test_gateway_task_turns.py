"""The acceptances of one task take turns (`gateway.acceptance._TaskTurn`): one at a time per
task, none for a new task, and the per-task lock is forgotten when its last holder or waiter
leaves, also when a waiter is cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.acceptance import _TaskTurn


async def test_one_turn_at_a_time_per_task_and_the_lock_is_forgotten_after():
    """A second acceptance of a task waits for the first; another task does not."""
    locks: dict[str, list[Any]] = {}
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with _TaskTurn(locks, "tsk_1"):
            order.append("first in")
            first_in.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with _TaskTurn(locks, "tsk_1"):
            order.append("second in")

    async def other() -> None:
        await first_in.wait()
        async with _TaskTurn(locks, "tsk_2"):
            order.append("other in")

    tasks = [asyncio.create_task(job()) for job in (first, second, other)]
    await first_in.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["first in", "other in"]
    assert locks["tsk_1"][1] == 2  # the holder and its waiter
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first in", "other in", "first out", "second in"]
    assert locks == {}


async def test_a_cancelled_waiter_leaves_nothing_behind_and_a_new_task_takes_no_lock():
    locks: dict[str, list[Any]] = {}
    async with _TaskTurn(locks, None):
        assert locks == {}
    async with _TaskTurn(locks, "tsk_1"):
        waiter = asyncio.create_task(_TaskTurn(locks, "tsk_1").__aenter__())
        for _ in range(3):
            await asyncio.sleep(0)
        assert locks["tsk_1"][1] == 2
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert locks["tsk_1"][1] == 1
    assert locks == {}
    async with _TaskTurn(locks, "tsk_1"):  # the task's turn can be taken again at once
        assert locks["tsk_1"][1] == 1
    assert locks == {}
