"""A first conversation end to end."""

from __future__ import annotations


async def test_personal_agent_opens_task_by_domain_and_brand_answers(gateway):
    """A personal agent writes to a brand's domain, the brand agent asks, the person answers,
    the brand resolves: every step is visible in both inboxes and on the task."""
    _, agents = await gateway.brand(
        "acme.example",
        [
            ("support", "Technical support for speakers", ["troubleshooting", "status lights"]),
            ("orders", "Orders, delivery and refunds", ["order status", "refunds"]),
        ],
    )
    alice = await gateway.person("alice")
    answer = await alice.send("acme.example", "My speaker's light is flashing orange.")
    assert answer["task_state"] == "submitted"
    task = answer["task"]
    support = agents["support"]
    inbox = await support.inbox()
    assert [item["envelope"]["body"]["text"] for item in inbox["items"]] == [
        "My speaker's light is flashing orange."
    ]
    asked = await support.send(alice.address, "Slow or fast blinking?", act="ask", task=task)
    assert asked["task_state"] == "input-required"
    await alice.send("acme.example", "Fast.", task=task)
    done = await support.send(
        alice.address, "Hold the button 10 s to reset.", act="resolve", task=task
    )
    assert done["task_state"] == "completed"
    items = (await alice.inbox())["items"]
    assert [item["envelope"]["act"] for item in items] == ["ask", "resolve"]
    view = await alice.task(task)
    assert [e["act"] for e in view["history"]] == ["say", "ask", "say", "resolve"]
    assert view["state"] == "completed" and view["responder"] == support.address


async def test_gateway_rate_setting_applies_to_brands_without_their_own(tmp_path):
    """SWITCHBOARD_RATE_PER_MINUTE is the limit for a brand whose policy sets none."""
    from tests.conftest import make_settings, start_gateway
    from tests.integration.wire import assert_problem, request

    async with start_gateway(make_settings(tmp_path / "var", rate_per_minute=3)) as gateway:
        await gateway.brand("acme.example", [("support", "Support", ["troubleshooting"])])
        alice = await gateway.person("alice")
        for n in range(3):
            await alice.send("acme.example", f"Question {n} about my speaker.")
        refused = await request(
            gateway.session,
            "POST",
            gateway.url + "/v1/messages",
            body=alice.envelope("acme.example", "One more question."),
        )
        assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1
