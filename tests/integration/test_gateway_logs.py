"""Logs of a request: the request id, envelope id and task id are on its lines, and message
bodies never appear at info (captured with structlog's own testing facility); a crash's
traceback in the console format shows no local variables."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from gateway.logs import configure
from tests.conftest import Harness, make_settings, provision_distributed, start_gateway
from tests.delivery.webhook_endpoints import Endpoint, Received, fast_delivery, wait_until
from tests.integration.wire import request

SECRET_TEXT = "my card number is 4111 1111 1111 1111"


async def test_accepted_envelope_lines_carry_ids_and_no_body(gateway):
    """Opening a task logs `envelope.accepted` with the request id, the envelope id and the
    new task's id; the message text is on no line at info or above."""
    await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    alice = await gateway.person("alice")
    envelope = alice.envelope("acme.example", SECRET_TEXT)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        answer = await request(
            gateway.session,
            "POST",
            gateway.url + "/v1/messages",
            body=envelope,
            headers={"X-Request-Id": "req-logs-1"},
        )
    assert answer.status == 202
    accepted = [entry for entry in logs if entry["event"] == "envelope.accepted"]
    assert len(accepted) == 1
    line = accepted[0]
    assert line["request_id"] == "req-logs-1"
    assert line["envelope_id"] == envelope["id"]
    assert line["task_id"] == answer.body["task"]
    for entry in logs:
        assert SECRET_TEXT not in json.dumps(entry, default=str)


async def test_refused_envelope_line_carries_ids_and_no_body(gateway):
    """A refusal inside a task logs `envelope.refused` with its code, the request, envelope
    and task ids, and not the text."""
    _, agents = await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    alice = await gateway.person("alice")
    task = (await alice.send("acme.example", "hello"))["task"]
    envelope = alice.envelope(agents["support"].address, SECRET_TEXT, act="resolve", task=task)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        answer = await request(
            gateway.session,
            "POST",
            gateway.url + "/v1/messages",
            body=envelope,
            headers={"X-Request-Id": "req-logs-2"},
        )
    assert answer.status == 409
    (line,) = [entry for entry in logs if entry["event"] == "envelope.refused"]
    assert line["code"] == "invalid_transition"
    assert line["request_id"] == "req-logs-2"
    assert line["envelope_id"] == envelope["id"]
    assert line["task_id"] == task
    for entry in logs:
        assert SECRET_TEXT not in json.dumps(entry, default=str)


async def test_a_request_without_an_id_gets_a_random_uuid4_on_its_lines_and_answer(gateway):
    """With no X-Request-Id of its own, a request gets a fresh version-4 UUID in hex (as
    `uuid.uuid4().hex` spells it), the same on its log lines and in the answer's header, and
    another one the next time."""
    import uuid

    await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    alice = await gateway.person("alice")
    seen = []
    for _ in range(2):
        envelope = alice.envelope("acme.example", "my speaker's light flashes orange")
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            async with gateway.session.post(gateway.url + "/v1/messages", json=envelope) as r:
                assert r.status == 202
                header = r.headers["X-Request-Id"]
        (line,) = [entry for entry in logs if entry["event"] == "envelope.accepted"]
        assert line["request_id"] == header
        parsed = uuid.UUID(header)
        assert parsed.hex == header and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        seen.append(header)
    assert seen[0] != seen[1]


@pytest.fixture
async def delivering(backend: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """A gateway, on each backend, that may deliver to loopback endpoints."""
    if backend == "embedded":
        async with start_gateway(make_settings(tmp_path / "var", delivery=fast_delivery())) as gw:
            yield gw
        return
    async with provision_distributed() as services:
        settings = make_settings(
            tmp_path / "var", delivery=fast_delivery(), **services.settings_changes()
        )
        async with start_gateway(settings) as gw:
            yield gw


async def test_a_synchronous_replys_ids_stay_off_the_deliveries_after_it(
    delivering: Harness,
) -> None:
    """A brand endpoint answers a delivery with a synchronous reply, accepted in the delivery
    worker's task: that acceptance's lines carry the reply's envelope and task ids, and the
    lines the worker logs afterwards (the attempt it replied to, then a delivery on another
    task queued behind it) carry neither."""
    second_queued = asyncio.Event()
    replies: list[dict[str, Any]] = []
    staff, _ = await delivering.brand("acme.example")
    support = delivering.agent("support@acme.example")

    async def answer(_endpoint: Endpoint, received: Received) -> web.StreamResponse:
        if replies:  # the second delivery: a plain acknowledgement
            return web.Response(status=204)
        await asyncio.wait_for(second_queued.wait(), 5)
        incoming = received.json
        reply = support.envelope(
            incoming["envelope"]["from"],
            "Is the light blinking fast or slow?",
            act="ask",
            task=incoming["task"]["id"],
            reply_to=incoming["envelope"]["id"],
        )
        replies.append(reply)
        return web.json_response({"envelope": reply})

    endpoint = await Endpoint(respond=answer).start()
    try:
        await staff.register_brand_agent(
            support.address, support.key, description="Speakers", endpoint=endpoint.url
        )
        alice = await delivering.person("alice")
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            first = await alice.send("acme.example", "My light is flashing orange.")
            await endpoint.wait_for(1)
            # Queued behind the first delivery (one endpoint, one partition, in order): the
            # worker task that accepts the reply delivers this one next.
            second = await alice.send("acme.example", "And my order has not arrived.")
            assert second["task"] != first["task"]
            second_queued.set()

            def attempts() -> dict[str, dict[str, Any]]:
                return {entry["row"]: entry for entry in logs if entry["event"] == "outbox.attempt"}

            async def both_logged() -> bool:
                return len(attempts()) == 2

            await wait_until(both_logged, what="both attempts are logged")
    finally:
        await endpoint.stop()
    [reply] = replies
    [accepted] = [
        entry
        for entry in logs
        if entry["event"] == "envelope.accepted" and entry.get("envelope_id") == reply["id"]
    ]
    assert accepted["task_id"] == first["task"]
    replied_to, after = (attempts()[received.webhook_id] for received in endpoint.received)
    assert replied_to.get("envelope_id") != reply["id"]
    for key in ("envelope_id", "task_id", "request_id"):
        assert key not in after, f"{key}={after[key]} on a later delivery's line"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """structlog's configuration as it was before the test."""
    was_configured, saved = structlog.is_configured(), structlog.get_config()
    yield
    structlog.reset_defaults()
    if was_configured:
        structlog.configure(**saved)


def test_console_tracebacks_show_no_local_variables(capsys, restored_logging):
    """A crash logged in the console format prints its traceback without the frames' local
    variables (structlog's default console renderer, with rich installed, prints them, and
    they held the raw request body), both through the whole chain and when the renderer
    itself is handed the exception."""
    configure("console", "info")

    def handler(body: bytes) -> None:
        raise ValueError("boom")

    secret = " ".join(["card", "4111", "1111", "1111", "1111"])  # not in any source line
    try:
        handler(secret.encode())
    except ValueError:
        exc_info = sys.exc_info()
        structlog.get_logger("tests").exception("request.failed")
    through_chain = capsys.readouterr().err
    renderer = structlog.get_config()["processors"][-1]
    rendered = renderer(None, "error", {"event": "request.failed", "exc_info": exc_info})
    for output in (through_chain, rendered):
        assert "ValueError: boom" in output and "handler" in output, output
        assert secret not in output, output
