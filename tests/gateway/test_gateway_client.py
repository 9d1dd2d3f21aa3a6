"""The agent client against a server that answers what no gateway would: its answers are read
within the same JSON limits as the gateway's own input, so a hostile or broken server makes a
typed error (`InvalidJson`), not a RecursionError or a bare ValueError in the agent, and an
error answer that is no problem keeps its status."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.client import AgentClient, GatewayProblem
from identity.errors import InvalidJson, JsonBeyondLimits
from identity.keys import PrivateKey

DEEP = "[" * 5000 + "]" * 5000
HUGE = '{"items": [], "next": ' + "9" * 5000 + "}"


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, dict[str, str]]]:
    answers: dict[str, str] = {}

    async def inbox(_request: web.Request) -> web.Response:
        return web.Response(text=answers["inbox"], content_type="application/json")

    async def stream(_request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(_request)
        await response.write(f"id: 1\ndata: {answers['event']}\n\n".encode())
        return response

    async def problem(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="<html>busy</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/v1/inbox", inbox)
    app.router.add_get("/v1/inbox/stream", stream)
    app.router.add_get("/v1/tasks/{id}", problem)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server, answers
    await test_server.close()


def _client(server: TestServer) -> AgentClient:
    base = str(server.make_url("")).rstrip("/")
    return AgentClient(base, "alice@people.example", PrivateKey.generate(), audience="gw.example")


@pytest.mark.parametrize("answer", [DEEP, HUGE], ids=["deep", "huge-integer"])
async def test_an_answer_beyond_the_limits_is_a_typed_error(server, answer) -> None:
    test_server, answers = server
    answers["inbox"] = answer
    client = _client(test_server)
    try:
        with pytest.raises(JsonBeyondLimits, match="the gateway's answer"):
            await client.inbox()
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("event", "error"), [(DEEP, JsonBeyondLimits), ("[1, 2]", InvalidJson)], ids=["deep", "array"]
)
async def test_an_event_beyond_the_limits_or_not_an_object_is_a_typed_error(
    server, event, error
) -> None:
    test_server, answers = server
    answers["event"] = event
    client = _client(test_server)
    try:
        with pytest.raises(error, match="the gateway's event"):
            async for _ in client.events("/v1/inbox/stream", client.token()):
                pass
    finally:
        await client.close()


async def test_an_error_answer_that_is_not_json_keeps_its_status(server) -> None:
    """A proxy's HTML error page in place of a problem: a GatewayProblem with its status."""
    test_server, _ = server
    client = _client(test_server)
    try:
        with pytest.raises(GatewayProblem) as refused:
            await client.task("tsk_x")
    finally:
        await client.close()
    assert refused.value.status == 503 and refused.value.code == "unknown"
