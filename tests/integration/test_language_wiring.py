"""The gateway uses the configured language adapter: an OpenAI-compatible model when it
answers, the rules (and a metric) when it does not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.clock import ManualClock
from gateway.config import LanguageSettings
from tests.conftest import make_settings, start_gateway
from tests.escalation.conftest import build_scene

AGENTS = [
    ("support", "Technical support for speakers.", ["troubleshooting", "wifi connectivity"]),
    ("accounts", "Customer accounts and sign-in.", ["sign-in and passwords", "privacy"]),
]


def _completion(content: dict[str, Any]) -> web.Response:
    return web.json_response(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": json.dumps(content)},
                    "finish_reason": "stop",
                }
            ],
        }
    )


async def _model(behaviour: str) -> tuple[TestServer, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        if behaviour == "down":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        user = json.loads(next(m for m in body["messages"] if m["role"] == "user")["content"])
        if "candidates" in user:
            # A model that sends everything to accounts, whatever the words say.
            return _completion(
                {
                    "address": "accounts@acme.example",
                    "confidence": 0.9,
                    "why": "the model chose accounts",
                }
            )
        return _completion(
            {"wants_human": False, "frustrated": False, "confidence": 0.5, "why": "calm"}
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, seen


def _signal_requests(seen: list[dict[str, Any]]) -> int:
    """How many of the model's requests asked for signals (a message with its history; the
    others ask for a route or a summary)."""
    return sum(
        "history" in json.loads(next(m for m in b["messages"] if m["role"] == "user")["content"])
        for b in seen
    )


def _settings(tmp_path: Path, model: TestServer) -> Any:
    return make_settings(
        tmp_path / "var",
        language=LanguageSettings(
            kind="openai",
            openai_base_url=str(model.make_url("/v1")),
            openai_api_key="test-key",
            openai_model="test-model",
            openai_timeout_s=2.0,
        ),
    )


async def test_model_decides_the_route_when_it_answers(tmp_path):
    """With SWITCHBOARD_LANGUAGE=openai the model's choice routes the first envelope."""
    model, seen = await _model("answers")
    try:
        async with start_gateway(_settings(tmp_path, model)) as gateway:
            await gateway.brand("acme.example", AGENTS)
            alice = await gateway.person("alice")
            answer = await alice.send("acme.example", "The wifi keeps dropping on my speaker.")
            task = await alice.task(answer["task"])
            assert task["responder"] == "accounts@acme.example"
            assert seen, "the model server was never called"
    finally:
        await model.close()


async def test_rules_answer_and_a_metric_counts_when_the_model_fails(tmp_path):
    """A model answering 500 falls back to the rules: routing still works and /metrics
    counts the fallback by reason."""
    model, _seen = await _model("down")
    try:
        async with start_gateway(_settings(tmp_path, model)) as gateway:
            await gateway.brand("acme.example", AGENTS)
            alice = await gateway.person("alice")
            answer = await alice.send("acme.example", "The wifi keeps dropping on my speaker.")
            task = await alice.task(answer["task"])
            assert task["responder"] == "support@acme.example"
            async with gateway.session.get(gateway.url + "/metrics") as response:
                text = await response.text()
            assert 'switchboard_language_fallbacks_total{reason="http_500"}' in text
    finally:
        await model.close()


async def test_the_model_reads_signals_only_for_a_brand_whose_rules_use_them(tmp_path):
    """Signals (does the person want a human, are they frustrated) feed only the rules
    human_requested and frustration: a brand with both off never has the model asked for
    them; with the defaults, a message is read once."""
    model, seen = await _model("answers")

    def signal_requests() -> int:
        return _signal_requests(seen)

    try:
        async with start_gateway(_settings(tmp_path, model)) as gateway:
            staff, _ = await gateway.brand("acme.example", AGENTS)
            alice = await gateway.person("alice")
            await alice.send("support@acme.example", "My speaker is broken, I want a person.")
            assert signal_requests() == 1
            off = {"escalation": {"human_requested": False, "frustration": False}}
            await staff.set_policy("acme.example", off)
            answer = await alice.send("support@acme.example", "Still broken. A person, please.")
            await alice.send("support@acme.example", "Hello again?", task=answer["task"])
            assert signal_requests() == 1
            task = await alice.task(answer["task"])
            assert task["control"] == "agent"  # nothing escalated without those rules
    finally:
        await model.close()


async def test_the_model_is_not_asked_for_signals_while_a_person_has_the_task(tmp_path):
    """Signals can only escalate a task the agent holds: while an operator has it, the
    initiator's messages are not read for them; once handed back, they are again."""
    model, seen = await _model("answers")
    try:
        async with start_gateway(_settings(tmp_path, model)) as gateway:
            scene = await build_scene(gateway, ManualClock(datetime.now(UTC)))
            task = await scene.open_task()
            assert _signal_requests(seen) == 1
            await scene.agent_act(task, "escalate", "Needs a person.")
            (escalation,) = await scene.escalations()
            await scene.say(task, "Is anyone there?")
            await scene.say(task, "Hello? I am still waiting.")
            assert _signal_requests(seen) == 1
            assert (await scene.alice.task(task))["control"] == "human"
            path = f"/v1/escalations/{escalation['id']}"
            await scene.jane.post(f"{path}/claim")
            await scene.jane.post(f"{path}/handback", {"note": "Back to the agent."})
            await scene.say(task, "Thanks. What now?")
            assert _signal_requests(seen) == 2
    finally:
        await model.close()
