"""The operator's workflow over HTTP: claim (exclusive), release, reply, resolve, hand back."""

from __future__ import annotations

import asyncio

import pytest

from gateway.client import GatewayProblem
from identity.envelope import KeyState, parse, verify
from identity.keys import PublicKey
from tests.escalation.conftest import BRAND, Scene


async def _escalated(scene: Scene) -> tuple[str, str]:
    task = await scene.open_task()
    await scene.agent_act(task, "escalate", "Needs a person.")
    (escalation,) = await scene.escalations()
    return task, escalation["id"]


async def test_adding_an_operator_returns_address_handle_and_a_working_token(scene: Scene):
    """201 {address, handle, token}; the token reads the queue; the handle is lowercased."""
    made = await scene.admin.post(f"/v1/brands/{BRAND}/operators", {"handle": "Maria"})
    assert made["address"] == f"maria@{BRAND}" and made["handle"] == "maria"
    assert made["token"].startswith("sbt_")
    assert (await scene.gw.staff(made["token"]).get("/v1/escalations"))["items"] == []
    listed = await scene.admin.get(f"/v1/brands/{BRAND}/operators")
    assert [o["address"] for o in listed["items"]] == [
        f"bob@{BRAND}",
        f"jane@{BRAND}",
        f"maria@{BRAND}",
    ]
    assert all("token" not in o for o in listed["items"])


async def test_operator_address_cannot_take_an_agents_address(scene: Scene):
    """An operator handle equal to an agent's local part is address_taken (409)."""
    with pytest.raises(GatewayProblem) as refused:
        await scene.admin.post(f"/v1/brands/{BRAND}/operators", {"handle": "support"})
    assert refused.value.status == 409 and refused.value.code == "address_taken"


async def test_two_operators_claiming_at_once_exactly_one_wins(scene: Scene):
    """A claim race: one 200, one 409 escalation_conflict naming the winner."""
    _, escalation = await _escalated(scene)
    path = f"/v1/escalations/{escalation}/claim"
    results = await asyncio.gather(
        scene.jane.post(path), scene.bob.post(path), return_exceptions=True
    )
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, GatewayProblem)]
    assert len(wins) == 1 and len(losses) == 1
    winner = wins[0]["claimed_by"]
    assert winner in (scene.jane_address, scene.bob_address)
    assert losses[0].status == 409 and losses[0].code == "escalation_conflict"
    assert winner in losses[0].detail and losses[0].problem["holder"] == winner
    (current,) = await scene.escalations()
    assert current["state"] == "claimed" and current["claimed_by"] == winner


async def test_claim_repeat_is_harmless_and_release_reopens(scene: Scene):
    """The holder's second claim answers the same; release makes it claimable by another."""
    _, escalation = await _escalated(scene)
    first = await scene.jane.post(f"/v1/escalations/{escalation}/claim")
    again = await scene.jane.post(f"/v1/escalations/{escalation}/claim")
    assert first["claimed_by"] == again["claimed_by"] == scene.jane_address
    with pytest.raises(GatewayProblem) as refused:
        await scene.bob.post(f"/v1/escalations/{escalation}/release")
    assert refused.value.code == "escalation_conflict"
    released = await scene.jane.post(f"/v1/escalations/{escalation}/release")
    assert released["state"] == "open" and released["claimed_by"] is None
    taken = await scene.bob.post(f"/v1/escalations/{escalation}/claim")
    assert taken["claimed_by"] == scene.bob_address


async def test_reply_needs_a_claim_and_reaches_the_initiator_signed_by_the_gateway(scene: Scene):
    """The operator's reply is an envelope from jane@acme.example, signed with the gateway key,
    in the initiator's inbox; the task is input-required after an `ask`."""
    task, escalation = await _escalated(scene)
    with pytest.raises(GatewayProblem) as refused:
        await scene.jane.post(f"/v1/escalations/{escalation}/reply", {"text": "Hi"})
    assert refused.value.code == "escalation_conflict"
    await scene.jane.post(f"/v1/escalations/{escalation}/claim")
    await scene.jane.post(
        f"/v1/escalations/{escalation}/reply",
        {"text": "Which model is it?", "act": "ask", "parts": [{"kind": "data", "data": {"n": 1}}]},
    )
    said = [
        i["envelope"] for i in (await scene.alice.inbox())["items"] if i["envelope"]["act"] == "ask"
    ]
    assert len(said) == 1
    envelope = said[0]
    assert envelope["from"] == scene.jane_address and envelope["task"] == task
    assert envelope["body"] == {
        "text": "Which model is it?",
        "parts": [{"kind": "data", "data": {"n": 1}}],
    }
    jwk = (await scene.jane.get("/.well-known/switchboard"))["jwks"]["keys"][0]
    key = PublicKey.from_jwk({k: jwk[k] for k in ("kty", "crv", "x")})
    verify(parse(envelope), {key.kid: KeyState(key)}, scene.clock.now())
    view = await scene.alice.task(task)
    assert view["state"] == "input-required" and view["control"] == "human"
    detail = await scene.jane.get(f"/v1/escalations/{escalation}")
    assert [e["act"] for e in detail["transcript"]][-1] == "ask"
    assert detail["summary"] and detail["reason"] == "agent_request"


async def test_resolve_completes_the_task_as_resolved_by_a_human(scene: Scene):
    """Resolve: task completed, resolved_by human, the escalation resolved, one ledger entry
    resolved by a human, and the brand agent told by a status envelope."""
    task, escalation = await _escalated(scene)
    await scene.jane.post(f"/v1/escalations/{escalation}/claim")
    done = await scene.jane.post(f"/v1/escalations/{escalation}/resolve", {"text": "Refunded."})
    assert done["state"] == "resolved" and done["closed_at"]
    view = await scene.alice.task(task)
    assert view["state"] == "completed" and view["resolved_by"] == "human"
    assert view["outcome"]["outcome"] == "resolved" and view["outcome"]["resolved_by"] == "human"
    assert view["escalations"][0]["state"] == "resolved"
    agent_statuses = [
        i["envelope"]["body"]["parts"][0]["data"]
        for i in (await scene.agent.inbox())["items"]
        if i["envelope"]["act"] == "status"
    ]
    assert agent_statuses[-1]["state"] == "completed"
    ledger = await scene.admin.get(f"/v1/brands/{BRAND}/outcomes")
    assert [(e["outcome"], e["resolved_by"], e["escalated"]) for e in ledger["entries"]] == [
        ("resolved", "human", True)
    ]
    assert ledger["totals"]["resolved_by_human"] == 1 and ledger["totals"]["billable"] == 0
    with pytest.raises(GatewayProblem) as closed:
        await scene.jane.post(f"/v1/escalations/{escalation}/reply", {"text": "More?"})
    assert closed.value.code == "escalation_conflict"


async def test_handback_then_the_agent_resolves(scene: Scene):
    """Handback returns control to the agent, which gets a summary of the human's part and
    may then resolve; the ledger counts it resolved by the agent but escalated (not billable)."""
    task, escalation = await _escalated(scene)
    await scene.jane.post(f"/v1/escalations/{escalation}/claim")
    await scene.jane.post(f"/v1/escalations/{escalation}/reply", {"text": "I reset your account."})
    back = await scene.jane.post(
        f"/v1/escalations/{escalation}/handback", {"note": "Account reset; check the speaker."}
    )
    assert back["state"] == "handed_back"
    statuses = [
        i["envelope"]
        for i in (await scene.agent.inbox())["items"]
        if i["envelope"]["act"] == "status"
    ]
    data = statuses[-1]["body"]["parts"][0]["data"]
    assert data["control"] == "agent" and data["event"] == "handed_back"
    assert "I reset your account." in data["summary"]
    assert "Account reset; check the speaker." in data["summary"]
    done = await scene.agent_act(task, "resolve", "All good now.")
    assert done["task_state"] == "completed" and done["control"] == "agent"
    ledger = await scene.admin.get(f"/v1/brands/{BRAND}/outcomes")
    assert [(e["outcome"], e["resolved_by"], e["escalated"]) for e in ledger["entries"]] == [
        ("resolved", "agent", True)
    ]
    assert ledger["totals"]["billable"] == 0 and ledger["totals"]["resolved_by_agent"] == 1


async def test_brand_admin_reads_but_does_not_work_escalations(scene: Scene):
    """Brand admins read the queue; claiming is for operators (403)."""
    _, escalation = await _escalated(scene)
    assert [e["id"] for e in (await scene.admin.get("/v1/escalations"))["items"]] == [escalation]
    with pytest.raises(GatewayProblem) as refused:
        await scene.admin.post(f"/v1/escalations/{escalation}/claim")
    assert refused.value.status == 403


async def test_the_gateway_admin_works_an_escalation_as_admin_at_the_gateway(scene: Scene):
    """The admin may do everything (PROTOCOL section 4): it claims under admin@ the gateway's
    domain, so an operator's claim then conflicts; its reply reaches the initiator from that
    address, signed with the gateway key; its resolve completes the task as resolved by a
    human."""
    task, escalation = await _escalated(scene)
    admin = scene.gw.admin()
    address = f"admin@{scene.gw.settings.domain}"
    claimed = await admin.post(f"/v1/escalations/{escalation}/claim")
    assert claimed["state"] == "claimed" and claimed["claimed_by"] == address
    with pytest.raises(GatewayProblem) as taken:
        await scene.jane.post(f"/v1/escalations/{escalation}/claim")
    assert taken.value.code == "escalation_conflict" and taken.value.problem["holder"] == address
    await admin.post(f"/v1/escalations/{escalation}/reply", {"text": "Looking into it."})
    (envelope,) = [
        i["envelope"]
        for i in (await scene.alice.inbox())["items"]
        if i["envelope"]["from"] == address
    ]
    assert envelope["task"] == task and envelope["body"]["text"] == "Looking into it."
    jwk = (await admin.get("/.well-known/switchboard"))["jwks"]["keys"][0]
    key = PublicKey.from_jwk({k: jwk[k] for k in ("kty", "crv", "x")})
    verify(parse(envelope), {key.kid: KeyState(key)}, scene.clock.now())
    done = await admin.post(f"/v1/escalations/{escalation}/resolve", {"text": "Refunded."})
    assert done["state"] == "resolved"
    view = await scene.alice.task(task)
    assert view["state"] == "completed" and view["resolved_by"] == "human"


async def test_escalation_of_another_brand_is_not_found(scene: Scene):
    """Another brand's operator neither sees nor works this brand's escalation."""
    _, escalation = await _escalated(scene)
    other_admin, _ = await scene.gw.brand("other.example")
    made = await other_admin.post("/v1/brands/other.example/operators", {"handle": "eve"})
    eve = scene.gw.staff(made["token"])
    assert (await eve.get("/v1/escalations"))["items"] == []
    for call in (
        eve.get(f"/v1/escalations/{escalation}"),
        eve.post(f"/v1/escalations/{escalation}/claim"),
    ):
        with pytest.raises(GatewayProblem) as refused:
            await call
        assert refused.value.status == 404
