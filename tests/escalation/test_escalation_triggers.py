"""Every trigger opens exactly one escalation with the right reason, in the envelope's commit."""

from __future__ import annotations

import pytest

from gateway.client import GatewayProblem
from gateway.unreachable import escalate_unreachable
from identity.envelope import KeyState, parse, verify
from identity.keys import PublicKey
from tests.escalation.conftest import BRAND, Scene


async def _gateway_keys(scene: Scene) -> dict[str, KeyState]:
    known = await scene.jane.get("/.well-known/switchboard")
    keys = {}
    for jwk in known["jwks"]["keys"]:
        key = PublicKey.from_jwk({k: jwk[k] for k in ("kty", "crv", "x")})
        keys[key.kid] = KeyState(key)
    return keys


async def test_agent_escalate_hands_the_task_to_humans_and_tells_both_parties(scene: Scene):
    """`escalate` opens one agent_request escalation, control turns human, and both parties
    get a status envelope signed with the gateway key that names the escalation."""
    task = await scene.open_task()
    answer = await scene.agent_act(task, "escalate", "The customer wants a refund over my limit.")
    assert answer["control"] == "human"
    found = await scene.escalations()
    assert [(e["task"], e["reason"], e["state"]) for e in found] == [
        (task, "agent_request", "open")
    ]
    escalation = found[0]
    assert "refund over my limit" in escalation["reason_text"]
    assert escalation["priority"] == "normal" and escalation["claimed_by"] is None
    assert "Asked: My speaker's light is flashing orange." in escalation["summary"]
    keys = await _gateway_keys(scene)
    for client in (scene.alice, scene.agent):
        statuses = [
            item["envelope"]
            for item in (await client.inbox())["items"]
            if item["envelope"]["act"] == "status"
        ]
        assert len(statuses) == 1, client.address
        status = statuses[0]
        assert status["from"] == "gateway@gw.example" and status["to"] == client.address
        assert status["body"]["parts"][0]["data"] == {
            "state": "submitted",
            "control": "human",
            "escalation": escalation["id"],
        }
        verify(parse(status), keys, scene.clock.now())
    view = await scene.alice.task(task)
    assert [e["id"] for e in view["escalations"]] == [escalation["id"]]
    assert [e["act"] for e in view["history"]] == ["say", "escalate", "status", "status"]


async def test_brand_agent_is_refused_while_humans_hold_the_task(scene: Scene):
    """Under human control the brand agent's envelopes get 409 under_human_control."""
    task = await scene.open_task()
    await scene.agent_act(task, "escalate", "Over to a person.")
    with pytest.raises(GatewayProblem) as refused:
        await scene.agent_act(task, "say", "Actually I can help.")
    assert refused.value.status == 409 and refused.value.code == "under_human_control"


async def test_person_asking_for_a_human_opens_one_escalation(scene: Scene):
    """The language layer's wants_human opens human_requested (high); asking again does not
    open a second one."""
    task = await scene.open_task()
    answer = await scene.say(task, "Can I talk to a human please?")
    assert answer["control"] == "human"
    await scene.say(task, "Can I talk to a human please? Hello?")
    found = await scene.escalations()
    assert [(e["reason"], e["priority"]) for e in found] == [("human_requested", "high")]


async def test_first_message_asking_for_a_human_escalates_the_new_task(scene: Scene):
    """A task's very first message can escalate it; the 202 already says control human."""
    answer = await scene.alice.send(
        BRAND, "I need to talk to a human please.", now=scene.clock.now()
    )
    assert answer["task_state"] == "submitted" and answer["control"] == "human"
    assert [e["task"] for e in await scene.escalations()] == [answer["task"]]


async def test_brand_keyword_opens_policy_rule(scene: Scene):
    """A keyword the brand names opens policy_rule with the keyword as the rule."""
    await scene.policy({"keywords": ["lawyer"]})
    task = await scene.open_task()
    await scene.say(task, "My lawyer will hear about this")
    (escalation,) = await scene.escalations()
    assert escalation["reason"] == "policy_rule" and escalation["rule"] == "keyword:lawyer"


async def test_frustration_opens_frustration(scene: Scene):
    """A frustrated initiator opens a frustration escalation."""
    task = await scene.open_task()
    await scene.say(task, "I am fed up, this is useless")
    (escalation,) = await scene.escalations()
    assert escalation["reason"] == "frustration"


async def test_too_many_turns_without_progress_opens_stalled(scene: Scene):
    """The brand's turn limit opens `stalled` on the message that reaches it, and only then."""
    await scene.policy({"max_turns_without_progress": 3, "frustration": False})
    task = await scene.open_task()
    await scene.say(task, "It is still orange.")
    assert await scene.escalations() == []
    await scene.say(task, "Still not working.")
    (escalation,) = await scene.escalations()
    assert escalation["reason"] == "stalled" and "3 messages" in escalation["reason_text"]


async def test_brand_agent_text_never_triggers_policy_rules(scene: Scene):
    """The brand agent saying a keyword does not escalate its own task."""
    await scene.policy({"keywords": ["refund"]})
    task = await scene.open_task()
    await scene.agent_act(task, "say", "A refund is possible.")
    assert await scene.escalations() == []


async def test_silent_agent_opens_stalled_when_the_reply_timer_fires(scene: Scene):
    """No agent reply within the brand's limit: the reply timer opens `stalled`, once."""
    await scene.policy({"agent_reply_timeout_s": 60})
    task = await scene.open_task()
    runner = scene.gw.services.timers
    scene.clock.advance(59)
    assert await runner.run_due() == []
    scene.clock.advance(2)
    assert await runner.run_due() == [f"reply:{task}"]
    assert await runner.run_due() == []
    (escalation,) = await scene.escalations()
    assert escalation["reason"] == "stalled" and escalation["priority"] == "normal"
    assert (await scene.alice.task(task))["control"] == "human"


async def test_agent_reply_in_time_disarms_the_reply_timer(scene: Scene):
    """An answer before the limit means no escalation, however late the runner looks."""
    await scene.policy({"agent_reply_timeout_s": 60})
    task = await scene.open_task()
    await scene.agent_act(task, "say", "Is it blinking fast or slow?")
    scene.clock.advance(3600)
    assert await scene.gw.services.timers.run_due() == []
    assert await scene.escalations() == []


async def test_delivery_give_up_opens_agent_unreachable_once(scene: Scene):
    """When delivery gives up on the brand agent, an urgent agent_unreachable escalation opens;
    a second give-up on the same task opens nothing more."""
    task = await scene.open_task()
    svc = scene.gw.services
    args = {
        "task_id": task,
        "agent": scene.agent.address,
        "attempts": 12,
        "last_error": "HTTP 503",
        "now": scene.clock.now(),
    }
    first = await escalate_unreachable(svc.desk.escalator, svc.bus, **args)
    again = await escalate_unreachable(svc.desk.escalator, svc.bus, **args)
    assert first is not None and again is None
    (escalation,) = await scene.escalations()
    assert escalation["reason"] == "agent_unreachable" and escalation["priority"] == "urgent"
    assert "failed 12 times" in escalation["reason_text"]
    assert (await scene.alice.task(task))["control"] == "human"
