"""Restart: a gateway stopped and started again on the same data folder keeps everything
that was accepted (tasks, inboxes, replay memory) and its own identity (key and JWKS)."""

from __future__ import annotations

from tests.conftest import make_settings, start_gateway
from tests.integration.wire import request


async def test_restart_keeps_tasks_inboxes_replay_memory_and_keys(tmp_path):
    """Everything durable before the stop is there after the start, and a resend of an
    envelope accepted before the restart is still recognised as a duplicate."""
    settings = make_settings(tmp_path / "var")
    async with start_gateway(settings) as first:
        _, agents = await first.brand("acme.example", [("support", "Speakers", ["lights"])])
        support = agents["support"]
        alice = await first.person("alice")
        envelope = alice.envelope("acme.example", "My speaker blinks.")
        opened = await alice.post_envelope(envelope)
        task = opened["task"]
        await support.send(alice.address, "Which colour?", act="ask", task=task)
        before_task = await alice.task(task)
        before_support = await support.inbox()
        before_alice = await alice.inbox()
        well_known = (
            await request(first.session, "GET", first.url + "/.well-known/switchboard")
        ).body
        gateway_kid = first.services.gateway_key.kid

    async with start_gateway(settings) as second:
        for client in (alice, support):
            client.base_url = second.url
            client._session = second.session
        assert second.services.gateway_key.kid == gateway_kid
        again = (await request(second.session, "GET", second.url + "/.well-known/switchboard")).body
        assert again["jwks"] == well_known["jwks"]
        assert await alice.task(task) == before_task
        assert await support.inbox() == before_support
        assert await alice.inbox() == before_alice
        duplicate = await request(
            second.session, "POST", second.url + "/v1/messages", body=envelope
        )
        assert duplicate.status == 200
        assert duplicate.body == {**opened, "duplicate": True}
        # The conversation goes on where it stopped, and inbox seqs keep increasing.
        answered = await alice.send(support.address, "Orange.", task=task)
        assert answered["task_state"] == "working"
        items = (await support.inbox(after=before_support["next"]))["items"]
        assert [item["envelope"]["body"]["text"] for item in items] == ["Orange."]
        assert items[0]["seq"] > before_support["next"]
