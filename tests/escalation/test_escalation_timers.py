"""Durable timers, driven by an injected clock: unclaimed escalations, abandoned tasks,
exactly once, across a restart and after a runner dies holding a lease."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.app import Overrides
from gateway.clock import ManualClock
from tests.conftest import make_settings, start_gateway
from tests.escalation.conftest import BRAND, Scene, build_scene


async def _events(scene: Scene) -> list[str]:
    found = await scene.gw.services.desk.escalations.events(BRAND, 0)
    return [event.kind for event in found]


async def test_unclaimed_fires_once_after_the_brands_limit(scene: Scene):
    """An escalation still open after unclaimed_after_s announces escalation.unclaimed once."""
    await scene.policy({"unclaimed_after_s": 300})
    task = await scene.open_task()
    await scene.agent_act(task, "escalate", "Over to you.")
    runner = scene.gw.services.timers
    scene.clock.advance(299)
    assert await runner.run_due() == []
    scene.clock.advance(2)
    (fired,) = await runner.run_due()
    assert fired.startswith("unclaimed:esc_")
    scene.clock.advance(3600)
    assert await runner.run_due() == []
    assert await _events(scene) == ["escalation.opened", "escalation.unclaimed"]


async def test_a_claimed_escalation_is_never_announced_unclaimed(scene: Scene):
    """Claiming in time disarms the unclaimed timer."""
    task = await scene.open_task()
    await scene.agent_act(task, "escalate", "Over to you.")
    (escalation,) = await scene.escalations()
    await scene.jane.post(f"/v1/escalations/{escalation['id']}/claim")
    scene.clock.advance(24 * 3600)
    assert await scene.gw.services.timers.run_due() == []
    assert await _events(scene) == ["escalation.opened", "escalation.claimed"]


async def test_two_runners_at_once_fire_a_timer_exactly_once(scene: Scene):
    """Runners racing (as on two replicas) produce one unclaimed event between them."""
    task = await scene.open_task()
    await scene.agent_act(task, "escalate", "Over to you.")
    scene.clock.advance(601)
    runner = scene.gw.services.timers
    results = await asyncio.gather(*(runner.run_due() for _ in range(4)))
    assert sum(len(r) for r in results) == 1
    assert (await _events(scene)).count("escalation.unclaimed") == 1


async def test_a_runner_dying_with_a_lease_delays_but_does_not_lose_the_timer(scene: Scene):
    """A lease taken by a runner that never fires keeps others off until it runs out; then
    the timer fires, once."""
    task = await scene.open_task()
    await scene.agent_act(task, "escalate", "Over to you.")
    scene.clock.advance(601)
    timers = scene.gw.services.timers.timers
    (due,) = await timers.due(scene.clock.now())
    assert await timers.lease(due, scene.clock.now(), 60) is not None  # then "crashes"
    runner = scene.gw.services.timers
    assert await runner.run_due() == []
    scene.clock.advance(61)
    assert len(await runner.run_due()) == 1
    assert (await _events(scene)).count("escalation.unclaimed") == 1


async def test_timers_fire_after_a_restart(tmp_path: Path):
    """A timer armed before a restart fires in the new process, exactly once."""
    data = tmp_path / "var"
    settings = make_settings(data, timer_interval_s=0.0)
    clock = ManualClock(datetime.now(UTC))
    async with start_gateway(settings, Overrides(clock=clock, announce=lambda _t: None)) as gw:
        scene = await build_scene(gw, clock)
        task = await scene.open_task()
        await scene.agent_act(task, "escalate", "Over to you.")
    clock.advance(601)
    async with start_gateway(settings, Overrides(clock=clock, announce=lambda _t: None)) as gw:
        runner = gw.services.timers
        assert len(await runner.run_due()) == 1
        assert await runner.run_due() == []
        kinds = [e.kind for e in await gw.services.desk.escalations.events(BRAND, 0)]
    assert kinds == ["escalation.opened", "escalation.unclaimed"]


async def test_a_task_idle_in_input_required_for_seven_days_is_abandoned(tmp_path: Path):
    """After 7 days waiting on the initiator the task ends: canceled, one `abandoned` ledger
    entry, both parties told; a day earlier nothing happens."""
    clock = ManualClock(datetime.now(UTC))
    settings = make_settings(tmp_path / "var", timer_interval_s=0.0)
    async with start_gateway(settings, Overrides(clock=clock, announce=lambda _t: None)) as gw:
        scene = await build_scene(gw, clock)  # agents register at the real time (their JWTs)
        start = clock.now() - timedelta(days=8)
        clock.set(start)
        task = await scene.open_task()
        await scene.agent_act(task, "ask", "Which model is it?")
        runner = gw.services.timers
        clock.set(start + timedelta(days=6, hours=23))
        assert await runner.run_due() == []
        clock.set(start + timedelta(days=7, seconds=1))
        assert await runner.run_due() == [f"abandon:{task}"]
        assert await runner.run_due() == []
        view = await scene.admin.get(f"/v1/tasks/{task}")
        ledger = await scene.admin.get(f"/v1/brands/{BRAND}/outcomes")
    assert view["state"] == "canceled"
    assert view["outcome"]["outcome"] == "abandoned"
    assert [e["outcome"] for e in ledger["entries"]] == ["abandoned"]
    statuses = [e for e in view["history"] if e["act"] == "status"]
    assert sorted(e["to"] for e in statuses) == sorted([scene.alice.address, scene.agent.address])
    assert all(e["body"]["parts"][0]["data"]["event"] == "abandoned" for e in statuses)


async def test_an_answer_in_time_keeps_the_task_open(scene: Scene):
    """The initiator answering disarms the abandon timer."""
    task = await scene.open_task()
    await scene.agent_act(task, "ask", "Which model is it?")
    await scene.say(task, "The Era 100.")
    scene.clock.advance(8 * 24 * 3600)
    assert await scene.gw.services.timers.run_due() == []
    view = await scene.admin.get(f"/v1/tasks/{task}")
    assert view["state"] == "working"
