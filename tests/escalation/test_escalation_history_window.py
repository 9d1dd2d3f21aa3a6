"""The language layer reads a long task through a bounded window: the opening envelope and the
newest ones. The escalator's turns must be exactly that window's, whether they are made afresh
or reused from the previous message's, also once the window starts to slide."""

from __future__ import annotations

from gateway.escalations import turn_of
from tests.conftest import Harness

BRAND = "acme.example"
WINDOW = 200  # the opening envelope and the newest 199 (gateway/store/conversations.py)


async def test_turns_are_the_window_of_a_long_task_as_it_slides(gateway: Harness) -> None:
    staff, agents = await gateway.brand(BRAND, [("support", "Helps with speakers", ["setup"])])
    await staff.set_policy(
        BRAND,
        {
            "contact": {"rate_per_minute": 100_000},
            # Alike follow-ups would read as a person asking again: this test is about turns.
            "escalation": {"frustration": False, "max_turns_without_progress": 0},
        },
    )
    alice = await gateway.person("alice")
    support = agents["support"]
    task_id = (await alice.send(BRAND, "My speaker will not join the wifi."))["task"]
    escalator = gateway.services.desk.escalator
    conversations = gateway.services.conversations
    checked = 0
    for n in range(1, 216):
        if n % 2:
            await support.send(alice.address, f"Answer number {n}.", task=task_id)
        else:
            await alice.send(support.address, f"Follow-up number {n}.", task=task_id)
        if n < WINDOW - 3 and n % 50:
            continue
        task, version = await conversations.task_version(task_id)  # type: ignore[misc]
        turns = await escalator.turns(task, task_id, version)
        stored = await conversations.history(task_id)  # every body, read from the database
        window = stored if len(stored) <= WINDOW else [stored[0], *stored[-(WINDOW - 1) :]]
        expected = [turn_of(task, body, gateway.settings.gateway_address) for body in window]
        assert turns == expected, f"after envelope {n + 1}"
        assert len(turns) == min(n + 1, WINDOW)
        checked += 1
    assert checked > 15
    assert turns[0].text == "My speaker will not join the wifi."
    assert turns[-1].text == "Answer number 215."
